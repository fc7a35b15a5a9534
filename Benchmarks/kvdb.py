#!/usr/bin/env python3
"""Paginator benchmarks (TARGETS.md, issue 5): page(n) of 25 on a 10,000-item Redis list over
one connection, from a dropped service, beside a C loop on hiredis (LLEN+LRANGE, and LRANGE
alone) and redis-py with Django's Paginator; alternating, several rounds, medians."""
import json, os, shutil, statistics, subprocess, time
from foundation import Esbd, bench_arguments, build_c_anchor, run_json, write_report
from services import call, drop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "Benchmarks", "kvdb")
PORT = int(os.environ.get("ESB_REDIS_PORT", "6379"))

def fill_list(key, count):
    """Replaces `key` with the list 1..count."""
    subprocess.run(["redis-cli", "-p", str(PORT), "DEL", key], check=True, capture_output=True)
    for start in range(1, count + 1, 1000):
        subprocess.run(["redis-cli", "-p", str(PORT), "RPUSH", key] + [str(i) for i in range(start, min(start + 1000, count + 1))],
                       check=True, capture_output=True)

def paginating_server(bin_dir):
    """esbd with one Redis connection and the bench.paginate service dropped and deployed."""
    server = Esbd(bin_dir)
    server.start(extra=f"[kvdb]\nport = {PORT}\npool_size = 1\n")
    with open(f"{HERE}/Bench.swift") as f:
        drop(server, "bench_paginate.swift", f.read())
    while call(server, "/esb/api/services/bench.paginate", method="GET")[0] != 200:
        time.sleep(0.1)
    return server

def main():
    args = bench_arguments("kvdb.md", pages=20000)
    anchor = build_c_anchor(f"{HERE}/anchor.c", "hiredis")
    key = "esb.bench.paginate"
    fill_list(key, 10000)
    server = paginating_server(args.bin)

    def ours(fresh):
        status, body = call(server, "/esb/api/invoke/bench.paginate", json.dumps({"key": key, "pages": args.pages, "fresh": fresh}).encode())
        assert status == 200, body
        return json.loads(body)

    cases = {"ours_fresh": lambda: ours(True), "c_fresh": lambda: run_json([anchor, str(PORT), key, str(args.pages), "fresh"]),
             "ours_cached": lambda: ours(False), "c_cached": lambda: run_json([anchor, str(PORT), key, str(args.pages), "cached"]),
             "django": lambda: run_json(["python3", f"{HERE}/django_anchor.py", str(PORT), key, str(args.pages // 4)])}
    results = {name: [] for name in cases}
    ours(True)  # warm-up
    for _ in range(args.rounds):
        for name, run in cases.items():
            results[name].append(run()["rate"])
    server.stop()
    subprocess.run(["redis-cli", "-p", str(PORT), "DEL", key], capture_output=True)
    shutil.rmtree(os.path.dirname(anchor))

    med = {name: statistics.median(values) for name, values in results.items()}
    rows = [
        ("Paginator `page(n)`, fresh paginator per page", "ours_fresh", "C loop on hiredis: LLEN then LRANGE", "c_fresh", 0.85),
        ("Paginator, one paginator, many pages (count cached)", "ours_cached", "C loop on hiredis: LRANGE alone", "c_cached", 0.85),
        ("Paginator (fresh per page) vs the original approach", "ours_fresh", "redis-py + Django Paginator (lazy LLEN/LRANGE list)", "django", 2.0),
    ]
    lines = ["## Redis paginators (issue 5)", "",
             f"`python3 Benchmarks/kvdb.py --bin BIN --rounds {args.rounds} --pages {args.pages}` (run by `scripts/bench`): "
             f"pages of 25 from a 10,000-item list, one connection (`[kvdb] pool_size = 1`), {args.pages} pages per case "
             f"(Django: {args.pages // 4}), the five cases alternating, {args.rounds} rounds, medians. Ours is a dropped service "
             "using `ListPaginator` through `context.kvdb`.", "",
             "| what | ours pages/s | anchor | anchor pages/s | ratio | target |", "|---|---|---|---|---|---|"]
    for what, mine, anchor_name, theirs, target in rows:
        ratio = med[mine] / med[theirs]
        lines.append(f"| {what} | {med[mine]:.0f} | {anchor_name} | {med[theirs]:.0f} | {ratio:.2f}× | ≥ {target}× {'✓' if ratio >= target else '✗'} |")
    lines += ["", "Per round (pages/s): " + "; ".join(f"{name} " + ", ".join(f"{v:.0f}" for v in values) for name, values in results.items())]
    write_report(lines, args.output)

if __name__ == "__main__":
    main()
