#!/usr/bin/env python3
"""Where an AMQP send's time goes (issue 20): context switches and CPU time of esbd while a
dropped service sends confirmed, persistent 256-byte messages through a pool of 4 (4 and 256
concurrent senders), beside the C program on librabbitmq with the same messages in flight
(4 connections, confirm each; window 64 each) and the same messages, counted with `perf stat`.
Usage: python3 Benchmarks/amqp_profile.py --bin BIN [--messages N]"""
import json, shutil, subprocess, time
from amqp import HERE, HOST, PORT, fresh_queue
from foundation import Esbd, bench_arguments, build_c_anchor, write_report
from kvdb_profile import EVENTS, counts
from services import call, drop

def main():
    args = bench_arguments("amqp-profile.md", messages=20000)
    anchor = build_c_anchor(f"{HERE}/anchor.c", "rabbitmq", "pthread")
    queue = "esb.bench.amqp.profile"
    server = Esbd(args.bin)
    server.start()
    call(server, "/esb/api/definitions/amqp", json.dumps(
        {"name": "bench", "host": HOST, "port": PORT, "username": "guest", "password": "guest"}).encode())
    call(server, "/esb/api/outgoing/amqp", json.dumps({"name": "bench", "def": "bench", "pool_size": 4}).encode())
    with open(f"{HERE}/Bench.swift") as f:
        drop(server, "bench_amqp.swift", f.read())
    while call(server, "/esb/api/services/bench.amqp", method="GET")[0] != 200:
        time.sleep(0.1)
    rows = ["| case | msg/s | context switches per message | CPU µs per message |", "|---|---|---|---|"]
    for senders, window in ((4, 1), (256, 64)):
        body = json.dumps({"total": args.messages, "concurrency": senders, "queue": queue, "outconn": "bench"}).encode()
        fresh_queue(queue)
        call(server, "/esb/api/invoke/bench.amqp", body)  # warm-up
        fresh_queue(queue)
        perf = subprocess.Popen(["perf", "stat", "-x,", "-e", EVENTS, "-p", str(server.proc.pid)], stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        status, out = call(server, "/esb/api/invoke/bench.amqp", body)
        perf.send_signal(2)
        ours = counts(perf.communicate()[1])
        result = json.loads(out)
        ours["rate"], ours["messages"] = result["rate"], result["messages"]
        fresh_queue(queue)
        run = subprocess.run(["perf", "stat", "-x,", "-e", EVENTS, anchor, HOST, str(PORT), queue, str(args.messages), "4", str(window), "esb"],
                             capture_output=True, text=True, check=True)
        theirs = counts(run.stderr)
        theirs["rate"], theirs["messages"] = json.loads(run.stdout)["rate"], args.messages
        for name, c in ((f"esbd, {senders} senders", ours), (f"C, 4 connections, window {window}", theirs)):
            rows.append(f"| {name} | {c['rate']:.0f} | {c['context-switches'] / c['messages']:.2f} | "
                        f"{c['task-clock'] * 1000 / c['messages']:.1f} |")
    server.stop()
    subprocess.run(["python3", "scripts/testkit/amqp_peer.py", "delete", queue], capture_output=True)
    shutil.rmtree(anchor.rsplit("/", 1)[0])
    write_report(["#### AMQP send profile", "",
                  f"`python3 Benchmarks/amqp_profile.py --bin BIN --messages {args.messages}` (run by `scripts/bench`): "
                  "`perf stat -e context-switches,cpu-migrations,task-clock` of esbd while its dropped service sends "
                  f"{args.messages} confirmed, persistent 256-byte messages through a pool of 4, and of the C program on "
                  "librabbitmq sending the same messages (mandatory, with esbd's two headers) with as many in flight. The broker's own work is in neither.", ""] + rows,
                 args.output)

if __name__ == "__main__":
    main()
