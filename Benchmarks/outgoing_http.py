#!/usr/bin/env python3
"""Outgoing HTTP (issue 8): wrk against an HTTP channel whose service calls an upstream through
an outgoing HTTP connection (channel -> service -> outgoing HTTP -> upstream and back), beside
wrk against the same upstream directly. The upstream is the Hummingbird anchor app (GET
/esb/ping), so the difference is what the extra hop through esbd costs. Alternating rounds,
medians."""
import json, statistics, time
from foundation import Anchor, Esbd, bench_arguments, wrk, write_report
from services import call, drop

HERE = __file__.rsplit("/", 1)[0] + "/outgoing_http"

def main():
    args = bench_arguments("outgoing-http.md", seconds=10)
    upstream = Anchor(args.bin)
    upstream.start()
    server = Esbd(args.bin)
    server.start()
    objects = [("outgoing/http", {"name": "bench.upstream", "address": f"http://127.0.0.1:{upstream.port}", "url_path": "/esb/ping",
                                  "pool_size": 64}),
               ("channels/http", {"name": "bench.proxy", "url_path": "/bench/proxy", "service": "bench.proxy", "method": "GET"})]
    for path, body in objects:
        status, answer = call(server, f"/esb/api/{path}", json.dumps(body).encode())
        assert status == 201, answer
    with open(f"{HERE}/Bench.swift") as f:
        drop(server, "bench_proxy.swift", f.read())
    while call(server, "/esb/api/services/bench.proxy", method="GET")[0] != 200:
        time.sleep(0.1)
    wrk(server.port, 2, path="/bench/proxy")  # warm-up: connections, caches
    ours, direct = [], []
    for _ in range(args.rounds):
        ours.append(wrk(server.port, args.seconds, path="/bench/proxy"))
        direct.append(wrk(upstream.port, args.seconds))
    server.stop()
    upstream.stop()

    def med(results, index):
        return statistics.median(r[index] for r in results)
    errors = sum(r[2] for r in ours)
    rows = ["## Outgoing HTTP (issue 8)", "",
            f"`python3 Benchmarks/outgoing_http.py --bin BIN --rounds {args.rounds} --seconds {args.seconds}` (run by `scripts/bench`): "
            "`wrk -t2 -c64` for the given seconds per round, the two cases alternating, medians. The upstream is the "
            "Hummingbird anchor app answering `GET /esb/ping`. \"Through SwiftESB\" is an HTTP channel whose dropped service "
            "calls that upstream through an outgoing HTTP connection (`pool_size` 64, keep-alive) and returns its body.", "",
            "| what | req/s | p99 | anchor | req/s | p99 | ratio |", "|---|---|---|---|---|---|---|",
            f"| channel → service → outgoing HTTP → upstream | {med(ours, 0):,.0f} | {med(ours, 1):.1f} ms | the upstream called directly "
            f"| {med(direct, 0):,.0f} | {med(direct, 1):.1f} ms | {med(ours, 0) / med(direct, 0):.2f}× |", "",
            f"Non-2xx answers through SwiftESB: {errors}. Per round (req/s): through SwiftESB "
            + ", ".join(f"{r[0]:,.0f}" for r in ours) + "; direct " + ", ".join(f"{r[0]:,.0f}" for r in direct) + ".",
            "", "Both the load generator, esbd and the upstream share the same 2 cores: a request through SwiftESB costs "
            "two HTTP exchanges plus a service invocation, so about half the direct rate is the ceiling here."]
    write_report(rows, args.output)

if __name__ == "__main__":
    main()
