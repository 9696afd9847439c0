#!/usr/bin/env python3
"""Query latency of a running weft over data in object storage, cold or warm (BENCHMARKS.md,
"Object storage"). Load it first with `weft bench --target-grpc … --target-http …`.

    scripts/bench-storage.py --mode cold --remote 46 --restart-cmd ./restart-weft.sh  # cache 0
    scripts/bench-storage.py --mode warm --remote 46                                  # cache 0
    scripts/bench-storage.py --mode warm                                              # all local

Waits until nothing waits for upload and at least --remote partitions are kept only in object
storage, then times trace by ID for 30 traces (exemplars of /api/v1/spans/stats) and a newest-100
log search for a common word over 27 hours (5 runs), reading weft's storage counters around each
query. `cold` runs --restart-cmd (which must restart weft with the same settings) before each
query and waits for it to settle, so that no split is open and nothing read is in memory;
`warm` runs each set twice in a row. Trace IDs are kept in --ids so that a later run (warm, or
local) asks for the same traces.
"""
import argparse
import json
import random
import subprocess
import sys
import time
import urllib.parse
import urllib.request


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", default="127.0.0.1:18080")
    ap.add_argument("--mode", choices=["cold", "warm"], required=True)
    ap.add_argument("--remote", type=int, default=0, help="remote partitions to wait for")
    ap.add_argument("--ids", default="trace-ids.json")
    ap.add_argument("--restart-cmd", help="cold: a shell command that restarts weft")
    args = ap.parse_args()
    base = f"http://{args.http}"

    def get(path, **query):
        url = base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=300) as response:
            body = response.read()
        return (time.perf_counter() - started) * 1000, json.loads(body)

    def counters():
        with urllib.request.urlopen(base + "/metrics") as response:
            lines = response.read().decode().splitlines()
        return {k: float(v) for k, v in (l.split(" ") for l in lines if l.startswith("weft_storage_"))}

    def pct(values, p):
        values = sorted(values)
        return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]

    def settle():
        deadline = time.time() + 600
        while True:
            try:
                c = counters()
            except OSError:
                c = None
            if c is not None and c.get("weft_storage_pending_uploads", 0) == 0 \
                    and c.get("weft_storage_remote_partitions", 0) >= args.remote:
                return
            if time.time() > deadline:
                sys.exit(f"not settled: {c}")
            time.sleep(0.5)

    if args.mode == "cold" and not args.restart_cmd:
        sys.exit("--mode cold needs --restart-cmd")
    settle()

    start = str(int((time.time() - 27 * 3600) * 1e9))
    try:
        with open(args.ids) as f:
            ids = json.load(f)
    except FileNotFoundError:
        _, stats = get("/api/v1/spans/stats", start=start, group_by="name")
        ids = [e["trace_id"] for g in stats["groups"] for e in g["exemplars"]]
        random.Random(7).shuffle(ids)
        ids = ids[:30]
        with open(args.ids, "w") as f:
            json.dump(ids, f)
    # The bench's freshness probes are the newest records, and each is one of a kind.
    _, recent = get("/api/v1/logs", limit=1, q="NOT probe*")
    word = recent["logs"][0]["body"].split()[0]

    sets = [
        ("trace by ID", len(ids), lambda i: get("/api/v1/traces/" + ids[i])),
        ("log search, newest 100, common word, 27 h", 5,
         lambda i: get("/api/v1/logs", q=word, limit=100, start=start)),
    ]
    print("| mode, pass | query | p50 ms | p99 ms | requests per query | MB read per query |")
    print("|---|---|---|---|---|---|")

    def delta(before, after, *names):
        return sum(after.get(n, 0) - before.get(n, 0) for n in names)

    for name, runs, query in sets:
        for run in range(2 if args.mode == "warm" else 1):
            latencies, requests, read = [], 0, 0
            for i in range(runs):
                if args.mode == "cold":
                    subprocess.run(args.restart_cmd, shell=True, check=True)
                    settle()
                before = counters()
                latencies.append(query(i)[0])
                after = counters()
                requests += delta(before, after, "weft_storage_fetches_total", "weft_storage_reads_total")
                read += delta(before, after, "weft_storage_fetched_bytes_total", "weft_storage_read_bytes_total")
            print(f"| {args.mode} {run + 1} | {name} | {pct(latencies, 50):.1f} | {pct(latencies, 99):.1f} "
                  f"| {requests / runs:.2f} | {read / runs / 1e6:.2f} |")


if __name__ == "__main__":
    main()
