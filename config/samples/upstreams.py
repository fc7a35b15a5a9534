#!/usr/bin/env python3
"""Two stand-ins for public APIs, for the sample integration (README: "A complete sample").

  JSON, exchange rates:  GET http://127.0.0.1:8701/rates/{base}   -> {"base", "date", "rates": {...}}
  XML, stock quotes:     GET http://127.0.0.1:8702/quote?symbol=S -> <quote symbol=..><name/><price currency=..></quote>

Usage: python3 config/samples/upstreams.py [JSON_PORT [XML_PORT]]  (Ctrl-C stops both).
Prints "ready" once both listen."""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape, quoteattr

JSON_PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8701
XML_PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 8702
RATES = {"USD": {"EUR": 0.9231, "GBP": 0.7874, "JPY": 151.42, "CHF": 0.8812, "USD": 1.0}}
QUOTES = {"ACME": ("Acme Corporation", "123.45"), "GLOBEX": ("Globex Inc.", "87.10"), "INITECH": ("Initech LLC", "12.05")}

class Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

class Rates(Base):
    def do_GET(self):
        parts = urlsplit(self.path).path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "rates" and parts[1].upper() in RATES:
            base = parts[1].upper()
            self.answer(200, json.dumps({"base": base, "date": "2026-11-27", "rates": RATES[base]}), "application/json")
        else:
            self.answer(404, json.dumps({"error": f"no rates for {self.path}"}), "application/json")

class Quotes(Base):
    def do_GET(self):
        url = urlsplit(self.path)
        symbol = parse_qs(url.query).get("symbol", [""])[0].upper()
        if url.path != "/quote" or symbol not in QUOTES:
            self.answer(404, f"<error>unknown symbol {escape(symbol)}</error>", "application/xml")
            return
        name, price = QUOTES[symbol]
        self.answer(200, f"<quote symbol={quoteattr(symbol)}><name>{escape(name)}</name>"
                         f"<price currency=\"USD\">{price}</price><time>2026-11-27T16:00:00Z</time></quote>", "application/xml")

servers = [ThreadingHTTPServer(("127.0.0.1", JSON_PORT), Rates), ThreadingHTTPServer(("127.0.0.1", XML_PORT), Quotes)]
for server in servers:
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
try:
    threading.Event().wait()
except KeyboardInterrupt:
    pass
