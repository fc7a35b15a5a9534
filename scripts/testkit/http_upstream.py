#!/usr/bin/env python3
"""An upstream HTTP API for testing outgoing HTTP connections. Prints "ready" once it listens.

Usage: http_upstream.py PORT NAME [USER PASSWORD]
  ANY /echo/...        JSON: method, path, query, headers (lower-case), body
  ANY /xml/echo/...    the same as XML (<echo method= path=><query name=>…<header name=>…<body>…)
  GET /slow?ms=N       answers after N ms
  ANY /status/CODE     answers CODE with "upstream says CODE"
  GET /auth            200 with the user when basic auth matches USER:PASSWORD, else 401
  GET /name            {"server": NAME}
  GET /redirect        302 to /echo/redirected
  GET /xxe?file=PATH   XML declaring an external entity for PATH (outgoing XML must refuse it)"""
import base64, json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape, quoteattr

PORT, NAME = int(sys.argv[1]), sys.argv[2]
USER, PASSWORD = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else (None, None)

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real API

    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        if url.path.startswith("/echo"):
            self.answer(200, json.dumps({"method": self.command, "path": url.path, "query": query, "headers": headers, "body": body}))
        elif url.path.startswith("/xml/echo"):
            parts = [f"<query name={quoteattr(k)}>{escape(v)}</query>" for k, v in sorted(query.items())]
            parts += [f"<header name={quoteattr(k)}>{escape(v)}</header>" for k, v in sorted(headers.items())]
            parts.append(f"<body>{escape(body)}</body>")
            self.answer(200, f"<echo method={quoteattr(self.command)} path={quoteattr(url.path)}>{''.join(parts)}</echo>", "application/xml")
        elif url.path == "/slow":
            time.sleep(int(query.get("ms", "1000")) / 1000)
            self.answer(200, json.dumps({"slept": int(query.get("ms", "1000"))}))
        elif url.path.startswith("/status/"):
            code = int(url.path.rsplit("/", 1)[1])
            self.answer(code, f"upstream says {code}", "text/plain")
        elif url.path == "/auth":
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if USER is None or headers.get("authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="upstream"')
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.answer(200, json.dumps({"user": USER}))
        elif url.path == "/name":
            self.answer(200, json.dumps({"server": NAME}))
        elif url.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/echo/redirected")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/xxe":
            target = query.get("file", "/etc/hostname")
            self.answer(200, f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{target}">]><r>&x;</r>', "application/xml")
        else:
            self.answer(404, "no such path", "text/plain")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
