#!/usr/bin/env python3
"""Services benchmarks (TARGETS.md, issue 3): drop → invocable (warm and cold) against a bare
swiftc compile of the same file; 100 files at once; restart with 100 services against none;
RSS per service; HTTP channel → esb.helpers.echo against a minimal Hummingbird echo app."""
import argparse, base64, json, os, shutil, statistics, subprocess, tempfile, time, urllib.request
from foundation import Esbd, Anchor, wrk, rss_kb, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def service_source(index, salt):
    return f"""import ESBService

struct Bench{index}: Service {{
    static let name = "bench.svc{index}"
    func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {{
        .text("{salt} {index} \\(request.text)")
    }}
}}
"""

def call(server, path, body=b"", method="POST"):
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=body, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(b"admin:bench").decode())
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()

def drop(server, name, text):
    pickup = f"{server.dir}/pickup"
    os.makedirs(pickup, exist_ok=True)
    temporary = f"{server.dir}/.{name}.tmp"
    with open(temporary, "w") as f:
        f.write(text)
    os.rename(temporary, f"{pickup}/{name}")

def drop_to_live(server, index, salt):
    started = time.monotonic()
    drop(server, f"bench{index}.swift", service_source(index, salt))
    while call(server, f"/esb/api/invoke/bench.svc{index}")[0] != 200:
        time.sleep(0.005)
    return time.monotonic() - started

def all_live(server, names):
    """When every one of `names` is deployed: one listing every 50 ms (polling each service
    would take a share of the 2 cores from the compiles it measures), then each invoked once."""
    while True:
        listed = {service["name"] for service in json.loads(call(server, "/esb/api/services", method="GET")[1])}
        if listed.issuperset(names):
            done = time.monotonic()
            break
        time.sleep(0.05)
    for name in names:
        status, body = call(server, f"/esb/api/invoke/{name}")
        assert status == 200, (name, status, body)
    return done

def bare_compile(bin_dir, cache, index, salt):
    """The anchor: swiftc alone on the same file (with the entry point esbd appends), same flags."""
    work = tempfile.mkdtemp(prefix="esb-swiftc-")
    source = f"{work}/bench{index}.swift"
    with open(source, "w") as f:
        f.write(service_source(index, salt) + f"""
@_cdecl("esb_plugin_main")
public func __esbPluginMain() -> UnsafeMutableRawPointer {{ ServicePlugin(services: [Bench{index}.self]).retainedPointer() }}
""")
    # esbd links with lld when the toolchain ships it (SwiftCompiler.linkerArguments): so does the anchor.
    lld = ["-use-ld=lld"] if os.access(os.path.join(os.path.dirname(os.path.realpath(shutil.which("swiftc"))), "ld.lld"), os.X_OK) else []
    started = time.monotonic()
    subprocess.run(["swiftc", "-emit-library", "-parse-as-library", "-module-name", f"Anchor{index}_{salt}", "-swift-version", "6",
                    "-Onone", "-I", f"{bin_dir}/Modules", "-L", bin_dir, "-lESBService", "-module-cache-path", cache,
                    "-o", f"{work}/lib.so", source] + lld, check=True, capture_output=True)
    elapsed = time.monotonic() - started
    shutil.rmtree(work)
    return elapsed

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--output", default=os.path.join(ROOT, "docs", "benchmarks", "services.md"))
    args = parser.parse_args()
    rows = []

    # Drop → invocable, cold (fresh work_dir: empty module cache) and warm, beside bare swiftc.
    salt = int(time.time())
    cold, warm, anchor_cold, anchor_warm = [], [], [], []
    for round_number in range(args.rounds):
        server = Esbd(args.bin)
        server.start()
        cold.append(drop_to_live(server, 1000 + round_number, salt))
        for index in range(3):
            warm.append(drop_to_live(server, 2000 + round_number * 10 + index, salt))
        server.stop()
        cache = tempfile.mkdtemp(prefix="esb-anchor-cache-")
        anchor_cold.append(bare_compile(args.bin, cache, 1000 + round_number, salt))
        for index in range(3):
            anchor_warm.append(bare_compile(args.bin, cache, 2000 + round_number * 10 + index, salt))
        print(f"round {round_number + 1}: drop→live cold {cold[-1]:.2f}s warm {warm[-1]:.2f}s | swiftc cold {anchor_cold[-1]:.2f}s warm {anchor_warm[-1]:.2f}s", flush=True)
    median = statistics.median
    rows.append(("Hot deploy, warm: drop → invocable (s)", median(warm), median(anchor_warm),
                 f"{median(warm) / median(anchor_warm):.2f} ×", "≤ 1.3 × anchor; ≤ 0.5 s"))
    rows.append(("Hot deploy, cold: drop → invocable (s)", median(cold), median(anchor_cold),
                 f"{median(cold) / median(anchor_cold):.2f} ×", "—"))

    # 100 files at once, then restart with 100 services against a start with none.
    server = Esbd(args.bin)
    server.start()
    baseline_rss = rss_kb(server.proc.pid)
    started = time.monotonic()
    for index in range(100):
        drop(server, f"many{index}.swift", service_source(5000 + index, salt))
    hundred = all_live(server, [f"bench.svc{5000 + i}" for i in range(100)]) - started
    time.sleep(1)
    loaded_rss = rss_kb(server.proc.pid)
    server.stop()
    rows.append(("100 service files dropped at once: all invocable (s)", hundred, None, "", "≤ 20 s"))
    rows.append(("RSS per deployed service (KiB)", (loaded_rss - baseline_rss) / 100, None, "", "≤ 200 KB"))
    restart_full, restart_empty = [], []
    empty = Esbd(args.bin)
    for _ in range(args.rounds):
        restart_full.append(server.start())
        server.stop()
        restart_empty.append(empty.start())
        empty.stop()
    rows.append(("Restart → READY=1 with 100 services (ms)", median(restart_full) * 1000, median(restart_empty) * 1000,
                 f"+{(median(restart_full) - median(restart_empty)) * 1000:.0f} ms", "≤ +1000 ms"))

    # HTTP channel → esb.helpers.echo against the Hummingbird echo app.
    script = tempfile.mktemp(suffix=".lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = \'{"order": 42, "lines": [1, 2, 3]}\'\nwrk.headers["Content-Type"] = "application/json"\n')
    echo = Esbd(args.bin)
    anchor = Anchor(args.bin)
    channel_rps, channel_p99, anchor_rps, anchor_p99 = [], [], [], []
    for round_number in range(args.rounds):
        echo.start()
        status, body = call(echo, "/esb/api/channels/http", json.dumps(
            {"name": "echo", "url_path": "/echo", "method": "POST", "service": "esb.helpers.echo"}).encode())
        assert status in (201, 409), body
        time.sleep(0.5)
        r, p, errors = wrk(echo.port, args.seconds, "/echo", script)
        assert errors == 0, f"{errors} non-2xx"
        echo.stop()
        channel_rps.append(r); channel_p99.append(p)
        anchor.start()
        r, p, errors = wrk(anchor.port, args.seconds, "/echo", script)
        anchor.stop()
        anchor_rps.append(r); anchor_p99.append(p)
        print(f"round {round_number + 1}: channel {channel_rps[-1]:.0f} req/s p99 {channel_p99[-1]:.2f} ms | anchor {anchor_rps[-1]:.0f} req/s p99 {anchor_p99[-1]:.2f} ms", flush=True)
    rows.append(("HTTP channel → esb.helpers.echo, wrk -t2 -c64 POST (req/s)", median(channel_rps), median(anchor_rps),
                 f"{median(channel_rps) / median(anchor_rps):.2f} ×", "≥ 0.8 × anchor"))
    rows.append(("HTTP channel → echo p99 (ms)", median(channel_p99), median(anchor_p99),
                 f"{median(channel_p99) / median(anchor_p99):.2f} ×", "≤ 2 × anchor"))

    lines = ["| what | SwiftESB (median) | anchor (median) | ratio | target |", "|---|---|---|---|---|"]
    for name, value, anchor_value, ratio, target in rows:
        anchor_text = f"{anchor_value:.2f}" if anchor_value is not None else "—"
        lines.append(f"| {name} | {value:.2f} | {anchor_text} | {ratio} | {target} |")
    table = "\n".join(lines)
    print(table)
    with open(args.output, "w") as f:
        f.write(f"""## Services (issue 3)

Command: `scripts/bench` (runs `Benchmarks/services.py --rounds {args.rounds} --seconds {args.seconds}`).
Anchors: a bare `swiftc -emit-library` of the same file with the same flags and its own
module cache (cold: empty cache; warm: cache filled by earlier compiles), alternated with
esbd's drop → invocable (polling `POST /esb/api/invoke` every 5 ms; for 100 files, one service listing every 50 ms, then each invoked); `Benchmarks/HummingbirdAnchor`
echoing POST bodies for the channel row. Warm drops are the 2nd–4th drop after a start.

{table}

Notes:
- 100 files at once: each file is a separate, CPU-bound `swiftc` run; files deploy concurrently,
  one more than the cores (a compile is three processes in turn: frontend, autolink, linker). A
  warm compile measured step by step (`swiftc -###`, each step timed): frontend 0.14 s, autolink
  0.04 s, link 0.15 s with gold, 0.08 s with lld, so esbd links with lld when the toolchain ships
  it. The floor is then about 100 × 0.28 s / 2 cores ≈ 14 s plus the first, cold compiles (the
  module cache starts empty here). The benchmark polls one listing every 50 ms (it used to invoke
  every pending service every 50 ms, which took a share of the 2 cores from the compiles it timed).
- HTTP channel → echo: the anchor writes the body straight back. A channel request also resolves
  the channel, checks the JSON body (`data_format = json`), builds the `ServiceRequest` (headers,
  query, path parameters), runs the service and records per-route and per-service metrics.
  `perf record -g` of esbd under this load, at the start of the "prove it" issue (0.58 ×): 30 % of
  its samples in the scheduler and futex wake-ups, from two hops per request between Swift's
  cooperative pool (where Hummingbird's request tasks ran) and the service threads;
  `JSONSerialization` (building objects only to check the body) 6.7 %; correlation ids (three
  `getrandom` calls each) 2.7 %. Changes, each measured over 5 alternating rounds of this row:
  request tasks prefer the service executor, which grows past blocked services (no pool hop),
  the body is checked by a scanner that builds nothing, and cids come from a scrambled counter:
  about 0.73 ×. Running everything on Swift's cooperative pool instead measured about 1.0 ×, so the
  executor's own hand-off was the rest: it now wakes one parked worker by name outside its lock,
  and a running worker takes the next job with no wake-up: 0.85–0.89 ×. The anchor itself varies
  20–30k req/s between rounds here.
""")
    print(f"wrote {args.output}")

if __name__ == "__main__":
    main()
