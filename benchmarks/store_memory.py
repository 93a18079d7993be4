"""Exporter memory and scrape time per series: ``.venv/bin/python benchmarks/store_memory.py``.

For each size N: N counter series from 10 sources (each source its own N/10 label sets, the
layout of a fleet of shards) are written as segments, then, in a fresh interpreter, ingested by
an ``Exporter`` (journal, fsync and all), scraped, changed by 1%, scraped again, and
checkpointed; a second fresh interpreter restarts from that snapshot and scrapes.  RSS is the
process's own (``/proc/self/status``), so it includes what the allocator keeps after parsing,
as a container memory limit does.  Bytes per source-series: "ingested" after ingest, "scraped"
after the first scrape too (each series' cached lines and the cached page).  "longest lock
wait": the longest another thread waited for the store lock (or the GIL) during the first
scrape, what an ingest pass would wait.  "restart": loading the snapshot (``Exporter.open``).

``--series 100000 1000000`` picks the sizes (default 100k, 500k, 1M), ``--shared`` makes every
source write the same N/10 series instead (N source-series, N/10 merged series).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, os, sys, threading, time
from dataclasses import fields
from biometrics.exporter import Exporter, ExporterOptions

spool, state, n, phase = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def rss(field="VmRSS:"):
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith(field)) * 1024

known = {f.name for f in fields(ExporterOptions)}  # so the script also runs on older commits
wanted = dict(spool=spool, state=state, max_series=2 * n, max_series_per_source=n)
options = ExporterOptions(**{k: v for k, v in wanted.items() if k in known})

def timed_page(x):
    done, gaps = threading.Event(), [0.0]
    def probe():
        last = time.perf_counter()
        while not done.is_set():  # bounded: the scrape sets done
            x.store.series_count()  # takes the store lock, as an ingest pass would
            now = time.perf_counter()
            gaps[0] = max(gaps[0], now - last)
            last = now
            time.sleep(0.001)
    t = threading.Thread(target=probe)
    t.start()
    start = time.perf_counter()
    page = x.page()
    took = time.perf_counter() - start
    done.set()
    t.join()
    return took, gaps[0], len(page)

out = {"base": rss()}
x = Exporter(options)
start = time.perf_counter()
x.open()
out["open"] = time.perf_counter() - start
out["loaded"] = rss()
if phase == "ingest":
    start = time.perf_counter()
    for _ in range(10_000):  # bounded: each pass takes a batch of the finite spool
        if not x.ingest_pass(now_ms=2_000_000_000_000) and not os.listdir(spool):
            break
    out["ingest"] = time.perf_counter() - start
    out["ingested"] = rss()
out["entries"] = x.store.entries
out["first"], out["held"], out["page"] = timed_page(x)
out["rendered"] = rss()
start = time.perf_counter()
x.page()
out["repeat"] = time.perf_counter() - start
if phase == "ingest":
    with open(sys.argv[5]) as f:
        for name, text in json.load(f):
            with open(os.path.join(spool, name), "w") as seg:
                seg.write(text)
    x.ingest_pass(now_ms=2_000_000_000_000)
    out["changed"], out["changed_held"], _ = timed_page(x)
    out["peak_before_checkpoint"] = rss("VmHWM:")
    start = time.perf_counter()
    x.checkpoint()
    out["checkpoint"] = time.perf_counter() - start
    out["snapshot"] = os.path.getsize(state)
out["peak"] = rss("VmHWM:")
x.durable.close()
print(json.dumps(out))
"""


def _segment(source: int, items: range, value: int, ts: int, shared: bool) -> str:
    shard = "" if shared else f',shard="{source}"'
    head = "# HELP requests_total Requests.\n# TYPE requests_total counter\n"
    body = "".join(f'requests_total{{item="{i}"{shard}}} {value} {ts}\n' for i in items)
    return head + body


def _run(n: int, sources: int, shared: bool) -> tuple[dict[str, float], dict[str, float]]:
    per = n // sources
    with tempfile.TemporaryDirectory() as tmp:
        spool, state = os.path.join(tmp, "spool"), os.path.join(tmp, "state", "s.json")
        os.makedirs(spool)
        ts = 1_700_000_000_000
        for s in range(sources):
            with open(os.path.join(spool, f"web.host.{s}.{ts}.prom"), "w") as f:
                f.write(_segment(s, range(per), 1, ts, shared))
        # The change: 1% of each source's series move on, one segment per source.
        later = [(f"web.host.{s}.{ts + 60_000}.prom",
                  _segment(s, range(0, per, 100), 2, ts + 60_000, shared))
                 for s in range(sources)]  # fmt: skip
        change = os.path.join(tmp, "change.json")
        with open(change, "w") as f:
            json.dump(later, f)
        del later
        runs = []
        for phase in ("ingest", "restart"):
            done = subprocess.run([sys.executable, "-c", CHILD, spool, state, str(n), phase,
                                   change], check=True, capture_output=True, text=True)  # fmt: skip
            runs.append(json.loads(done.stdout))
    return runs[0], runs[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, nargs="+", default=[100_000, 500_000, 1_000_000])
    parser.add_argument("--sources", type=int, default=10)
    parser.add_argument("--shared", action="store_true", help="every source writes one set")
    args = parser.parse_args()
    layout = "one label set" if args.shared else "own label sets"
    print(f"### Exporter memory and scrape time: counters from {args.sources} sources "
          f"({layout}), Python {sys.version.split()[0]}, {os.cpu_count()} cpus\n")  # fmt: skip
    print("| source-series | bytes/series ingested, scraped | peak RSS | ingest | first scrape "
          "(longest lock wait) | repeat | after 1% change | checkpoint (snapshot) | restart | "
          "restart peak RSS |")  # fmt: skip
    print("|" + "---:|" * 10)
    for n in args.series:
        a, b = _run(n, args.sources, args.shared)
        ingested = (a["ingested"] - a["loaded"]) / a["entries"]
        scraped = (a["rendered"] - a["loaded"]) / a["entries"]
        mb = 1 << 20
        print(f"| {a['entries']:,} | {ingested:,.0f}, {scraped:,.0f} | {a['peak'] / mb:,.0f} MB | "
              f"{a['ingest']:.1f} s | {a['first']:.2f} s ({a['held']:.2f} s) | "
              f"{a['repeat'] * 1e3:.1f} ms | {a['changed']:.2f} s | {a['checkpoint']:.1f} s "
              f"({a['snapshot'] / mb:.0f} MB) | {b['open']:.1f} s | {b['peak'] / mb:,.0f} MB |",
              flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    status = main()
    print(f"\n({time.perf_counter() - started:.0f} s)")
    sys.exit(status)
