#!/usr/bin/env python3
"""AMQP consume benchmark (TARGETS.md, issue 21): an AMQP channel (4 consumers, prefetch 50)
taking persistent 256-byte messages off a preloaded queue into a no-op service and acking
each, beside a C program on librabbitmq with the same consumers and prefetch, and a pika
BlockingConnection consumer (1 consumer, same prefetch); alternating, several rounds, medians.
Ours is timed from the channel's activation to its acked counter (esb_amqp_channel_acked_total,
polled every 20 ms) reaching the total; the anchors time themselves from their first consume."""
import json, os, re, shutil, statistics, subprocess, time, urllib.request
from foundation import Esbd, bench_arguments, build_c_anchor, run_json, write_report
from services import call, drop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "Benchmarks", "amqp_consume")
PEER = os.path.join(ROOT, "scripts", "testkit", "amqp_peer.py")
HOST, PORT = os.environ.get("ESB_AMQP_HOST", "127.0.0.1"), int(os.environ.get("ESB_AMQP_PORT", "5672"))
CONSUMERS, PREFETCH = 4, 50

def main():
    args = bench_arguments("amqp-consume.md", messages=20000)
    publisher = build_c_anchor(os.path.join(ROOT, "Benchmarks", "amqp", "anchor.c"), "rabbitmq", "pthread")
    consumer = build_c_anchor(f"{HERE}/anchor.c", "rabbitmq", "pthread")
    queue = "esb.bench.consume"

    def preload():
        subprocess.run(["python3", PEER, "delete", queue], capture_output=True)
        subprocess.run(["python3", PEER, "declare", queue], check=True, capture_output=True)
        run_json([publisher, HOST, str(PORT), queue, str(args.messages), "4", "256"])

    server = Esbd(args.bin)
    server.start()
    status, body = call(server, "/esb/api/definitions/amqp", json.dumps(
        {"name": "bench", "host": HOST, "port": PORT, "username": "guest", "password": "guest"}).encode())
    assert status == 201, body
    with open(f"{HERE}/Noop.swift") as f:
        drop(server, "bench_noop.swift", f.read())
    while call(server, "/esb/api/services/bench.noop", method="GET")[0] != 200:
        time.sleep(0.1)
    status, body = call(server, "/esb/api/channels/amqp", json.dumps(
        {"name": "bench", "def": "bench", "queue": queue, "service": "bench.noop", "consumers": CONSUMERS,
         "prefetch": PREFETCH, "is_active": False}).encode())
    assert status == 201, body

    def acked():
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as response:
            text = response.read().decode()
        match = re.search(r'esb_amqp_channel_acked_total\{channel="bench"\} (\d+)', text)
        return int(match.group(1)) if match else 0

    def ours():
        preload()
        before = acked()
        started = time.monotonic()
        status, body = call(server, "/esb/api/channels/amqp/bench", json.dumps({"is_active": True}).encode(), method="PUT")
        assert status == 200, body
        while acked() < before + args.messages:
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        status, body = call(server, "/esb/api/channels/amqp/bench", json.dumps({"is_active": False}).encode(), method="PUT")
        assert status == 200, body
        return {"rate": args.messages / elapsed}

    def c_anchor():
        preload()
        return run_json([consumer, HOST, str(PORT), queue, str(args.messages), str(CONSUMERS), str(PREFETCH)])

    def pika_anchor():
        preload()
        return run_json(["python3", f"{HERE}/pika_anchor.py", HOST, str(PORT), queue, str(args.messages), str(PREFETCH)])

    cases = {"ours": ours, "c": c_anchor, "pika": pika_anchor}
    results = {name: [] for name in cases}
    ours()  # warm-up
    for _ in range(args.rounds):
        for name, run in cases.items():
            results[name].append(run())
    server.stop()
    subprocess.run(["python3", PEER, "delete", queue], capture_output=True)
    shutil.rmtree(os.path.dirname(publisher))
    shutil.rmtree(os.path.dirname(consumer))

    def med(name):
        return statistics.median(r["rate"] for r in results[name])

    c_ratio, pika_ratio = med("ours") / med("c"), med("ours") / med("pika")
    pika_vs_c = med("pika") / med("c")
    lines = ["## AMQP consume (issue 21)", "",
             f"`python3 Benchmarks/amqp_consume.py --bin BIN --rounds {args.rounds} --messages {args.messages}` (run by "
             f"`scripts/bench`): {args.messages} persistent 256-byte messages preloaded per case, the three cases alternating, "
             f"{args.rounds} rounds, medians. Ours: an AMQP channel with {CONSUMERS} consumers and prefetch {PREFETCH} invoking a "
             "no-op service per delivery and acking after it returned (the whole path: librabbitmq read on the consumer's "
             "thread, hand-off to the service executor, header conversion, the invocation, the settlement back to the owner "
             "thread, basic.ack); timed from the PUT that activates the channel, so it includes connecting.", "",
             "| what | ours msg/s | anchor | anchor msg/s | ratio | target |", "|---|---|---|---|---|---|",
             f"| consume → no-op service → ack, {CONSUMERS} consumers, prefetch {PREFETCH} | {med('ours'):.0f} | C librabbitmq, "
             f"{CONSUMERS} connections, same prefetch, ack each | {med('c'):.0f} | {c_ratio:.2f}× | ≥ 0.8× "
             + ("✓" if c_ratio >= 0.8 else "✗") + " |",
             f"| the same vs pika | {med('ours'):.0f} | pika BlockingConnection, 1 consumer, prefetch {PREFETCH} | "
             f"{med('pika'):.0f} | {pika_ratio:.2f}× | ≥ 5×, or ≥ 0.9× C where the broker bounds both "
             + ("✓" if pika_ratio >= 5 or c_ratio >= 0.9 else "✗") + f" (pika is {pika_vs_c:.2f}× C) |", "",
             "Per round (msg/s): " + "; ".join(f"{name} " + ", ".join(f"{r['rate']:.0f}" for r in results[name]) for name in cases)]
    write_report(lines, args.output)

if __name__ == "__main__":
    main()
