#!/usr/bin/env python3
"""Where a paginator's time goes (issue 9): context switches, CPU migrations and CPU time of
esbd serving 20,000 pages through a dropped ListPaginator service, beside the C loop on hiredis,
counted with `perf stat`. Usage: python3 Benchmarks/kvdb_profile.py --bin BIN [--pages N]"""
import json, subprocess, time
from foundation import bench_arguments, build_c_anchor, write_report
from kvdb import HERE, PORT, fill_list, paginating_server
from services import call
EVENTS = "context-switches,cpu-migrations,task-clock"

def counts(stderr):
    values = {}
    for line in stderr.strip().splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[0].replace(".", "").isdigit():
            values[fields[2]] = float(fields[0])
    return values

def main():
    args = bench_arguments("kvdb-profile.md", pages=20000)
    key = "esb.bench.profile"
    fill_list(key, 1000)
    anchor = build_c_anchor(f"{HERE}/anchor.c", "hiredis")
    server = paginating_server(args.bin)
    rows = ["| case | pages/s | context switches per page | CPU µs per page | CPU migrations |", "|---|---|---|---|---|"]
    for mode in ("cached", "fresh"):
        body = json.dumps({"key": key, "pages": args.pages, "fresh": mode == "fresh"}).encode()
        call(server, "/esb/api/invoke/bench.paginate", body)  # warm-up
        perf = subprocess.Popen(["perf", "stat", "-x,", "-e", EVENTS, "-p", str(server.proc.pid)], stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        status, out = call(server, "/esb/api/invoke/bench.paginate", body)
        perf.send_signal(2)
        ours = counts(perf.communicate()[1])
        ours["rate"] = json.loads(out)["rate"]
        run = subprocess.run(["perf", "stat", "-x,", "-e", EVENTS, anchor, str(PORT), key, str(args.pages), mode], capture_output=True, text=True, check=True)
        theirs = counts(run.stderr)
        theirs["rate"] = json.loads(run.stdout)["rate"]
        for name, c in ((f"esbd, {mode}", ours), (f"C loop, {mode}", theirs)):
            rows.append(f"| {name} | {c['rate']:.0f} | {c['context-switches'] / args.pages:.1f} | "
                        f"{c['task-clock'] * 1000 / args.pages:.0f} | {c['cpu-migrations']:.0f} |")
    server.stop()
    subprocess.run(["redis-cli", "-p", str(PORT), "DEL", key], capture_output=True)
    write_report(["#### Paginator profile", "",
                  f"`python3 Benchmarks/kvdb_profile.py --bin BIN --pages {args.pages}` (run by `scripts/bench`): "
                  "`perf stat -e context-switches,cpu-migrations,task-clock` of esbd while its dropped service reads "
                  f"{args.pages} pages of 25 from a 1,000-item list, and of the C loop on hiredis doing the same.", ""] + rows,
                 args.output)

if __name__ == "__main__":
    main()
