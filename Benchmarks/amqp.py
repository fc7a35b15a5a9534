#!/usr/bin/env python3
"""AMQP send benchmarks (TARGETS.md, issue 4): a service's confirmed, persistent 256-byte
sends through a pool of 4, with 4 and with 256 concurrent senders, beside a C program on
librabbitmq (4 connections, confirm each; and a window of 256 per connection) and pika
BlockingConnection with confirm_delivery(), alternating, several rounds, medians."""
import json, os, shutil, statistics, subprocess, time
from foundation import Esbd, bench_arguments, build_c_anchor, run_json, write_report
from services import call, drop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "Benchmarks", "amqp")
PEER = os.path.join(ROOT, "scripts", "testkit", "amqp_peer.py")
HOST, PORT = os.environ.get("ESB_AMQP_HOST", "127.0.0.1"), int(os.environ.get("ESB_AMQP_PORT", "5672"))

def fresh_queue(name):
    subprocess.run(["python3", PEER, "delete", name], capture_output=True)
    subprocess.run(["python3", PEER, "declare", name], check=True, capture_output=True)

def main():
    args = bench_arguments("amqp.md", messages=10000)
    anchor = build_c_anchor(f"{HERE}/anchor.c", "rabbitmq", "pthread")
    queue = "esb.bench.amqp"
    server = Esbd(args.bin)
    server.start()
    status, body = call(server, "/esb/api/definitions/amqp", json.dumps(
        {"name": "bench", "host": HOST, "port": PORT, "username": "guest", "password": "guest"}).encode())
    assert status == 201, body
    status, body = call(server, "/esb/api/outgoing/amqp", json.dumps({"name": "bench", "def": "bench", "pool_size": 4}).encode())
    assert status == 201, body
    with open(f"{HERE}/Bench.swift") as f:
        drop(server, "bench_amqp.swift", f.read())
    while call(server, "/esb/api/services/bench.amqp", method="GET")[0] != 200:
        time.sleep(0.1)

    def ours(concurrency):
        fresh_queue(queue)
        status, body = call(server, "/esb/api/invoke/bench.amqp", json.dumps(
            {"total": args.messages, "concurrency": concurrency, "queue": queue, "outconn": "bench"}).encode())
        assert status == 200, body
        return json.loads(body)

    def c_anchor(window, same_messages=True):
        """`same_messages`: what esbd publishes (mandatory, x-esb-cid and x-esb-msg-id headers)."""
        fresh_queue(queue)
        return run_json([anchor, HOST, str(PORT), queue, str(args.messages), "4", str(window)] + (["esb"] if same_messages else []))

    def pika_anchor(senders):
        fresh_queue(queue)
        return run_json(["python3", f"{HERE}/pika_anchor.py", HOST, str(PORT), queue, str(args.messages // 4), str(senders)])

    # TARGETS.md's anchors (bare messages; a window of 256 per connection), and issue 20's
    # reading of them: the same messages as esbd's, as many in flight (256 = 4 × 64).
    cases = {"ours4": lambda: ours(4), "c_each": lambda: c_anchor(1, same_messages=False),
             "c_each_same": lambda: c_anchor(1), "ours256": lambda: ours(256),
             "c_window": lambda: c_anchor(256, same_messages=False), "c_same": lambda: c_anchor(64),
             "pika4": lambda: pika_anchor(4), "pika256": lambda: pika_anchor(256)}
    results = {name: [] for name in cases}
    ours(64)  # warm-up: connections up, code paths hot
    for round_number in range(args.rounds):
        for name, run in cases.items():
            results[name].append(run())
    server.stop()
    subprocess.run(["python3", PEER, "delete", queue], capture_output=True)
    shutil.rmtree(os.path.dirname(anchor))

    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    rows = [
        ("AMQP send, persistent, confirmed, 256 B, 4 concurrent senders, pool 4", "ours4",
         "C librabbitmq, 4 connections, confirm each (TARGETS.md)", "c_each", (0.9, "")),
        ("the same, against the same messages", "ours4",
         "the C program sending esbd's messages (mandatory, x-esb-cid, x-esb-msg-id), confirm each", "c_each_same", (0.9, " (issue 20)")),
        ("AMQP send, 256 concurrent senders, pool 4", "ours256",
         "C librabbitmq, 4 connections, window 256 each: 1,024 in flight (TARGETS.md)", "c_window", (0.8, "")),
        ("the same, against the same messages in flight", "ours256",
         "the C program sending esbd's messages, window 64 each: 256 in flight, as ours", "c_same", (0.8, " (issue 20)")),
        ("AMQP send (4 senders) vs pika", "ours4", "pika BlockingConnection + confirm_delivery(), 4 threads", "pika4", (1.2, "")),
        ("AMQP send (256 senders) vs pika", "ours256", "pika, 256 threads, a connection each", "pika256", (10.0, "")),
    ]
    lines = ["## AMQP send (issue 4)", "",
             f"`python3 Benchmarks/amqp.py --bin BIN --rounds {args.rounds} --messages {args.messages}` (run by `scripts/bench`): "
             f"{args.messages} messages per case (pika: {args.messages // 4}), the eight cases alternating, {args.rounds} rounds, medians. "
             "Ours is a dropped service calling `context.outgoing.amqp.send` (the whole path: merge, header, pool, confirm). "
             "The C program runs as TARGETS.md names it (bare persistent messages; confirm each, or a window of 256 per "
             "connection), and as issue 20 reads it: sending esbd's messages (mandatory, with the `x-esb-cid` header the "
             "contract requires and `x-esb-msg-id` to match returns: about a third more work for the broker per message) "
             "with as many in flight as ours. pika sends bare messages.", "",
             "| what | ours msg/s | ours p99 ms | anchor | anchor msg/s | anchor p99 ms | ratio | target |",
             "|---|---|---|---|---|---|---|---|"]
    for what, mine, anchor_name, theirs, target in rows:
        ratio = med(mine, "rate") / med(theirs, "rate")
        verdict = f"≥ {target[0]}×{target[1]} " + ("✓" if ratio >= target[0] else "✗")
        lines.append(f"| {what} | {med(mine, 'rate'):.0f} | {med(mine, 'p99_ms'):.1f} | {anchor_name} | {med(theirs, 'rate'):.0f} | "
                     f"{med(theirs, 'p99_ms'):.1f} | {ratio:.2f}× | {verdict} |")
    lines.append("")
    lines.append("Per round (msg/s): " + "; ".join(f"{name} " + ", ".join(f"{r['rate']:.0f}" for r in results[name]) for name in cases))
    write_report(lines, args.output)

if __name__ == "__main__":
    main()
