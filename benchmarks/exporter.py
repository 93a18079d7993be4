"""The exporter against prometheus_client's multiprocess mode, same workload, same run.

Workload (as in docs/research): N processes, each with the same 500 counters and 50
histograms (20 observations spread over 1 ms..10 s).  Ours: N segment files ingested by the
exporter, then one HTTP GET /metrics against a live server.  Theirs: N pids' mmap files, then
``MultiProcessCollector`` collect + ``generate_latest`` in process (no HTTP: flattering to them).
Also: ingest throughput, and RSS with 100,000 series in the store (in a fresh interpreter).
"""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time

from biometrics import Collector, Counter, Histogram
from biometrics.exporter import Exporter, ExporterOptions, Server, make_app
from biometrics.prometheus import Options, SegmentEmitter

OBSERVATIONS = [0.001 * 1.6**k for k in range(20)]

THEIRS = """
import os, sys, tempfile, time, statistics
n, repeats = int(sys.argv[1]), int(sys.argv[2])
d = tempfile.mkdtemp()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = d
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector
obs = [0.001 * 1.6**k for k in range(20)]
for pid in range(n):
    values.ValueClass = values.MultiProcessValue(lambda pid=pid: pid)
    reg = CollectorRegistry()
    for i in range(500):
        Counter(f"counter_{i}", "A counter.", registry=reg).inc(i)
    for i in range(50):
        h = Histogram(f"histogram_{i}", "A histogram.", registry=reg)
        for x in obs:
            h.observe(x)
times = []
for _ in range(repeats):
    start = time.perf_counter()
    reg = CollectorRegistry()
    MultiProcessCollector(reg, path=d)
    body = generate_latest(reg)
    times.append(time.perf_counter() - start)
print(statistics.median(times), len(body))
"""

RSS = """
import os, sys, tempfile, time
from biometrics import Collector, Counter
from biometrics.exporter import Exporter, ExporterOptions
from biometrics.prometheus import SegmentEmitter, Options
sources, per = int(sys.argv[1]), int(sys.argv[2])
spool = tempfile.mkdtemp()
for s in range(sources):
    c = Collector()
    for i in range(per):
        c.register(Counter("requests_total", labels={"shard": str(s), "item": str(i)})).click()
    with SegmentEmitter(Options(prefix=f"{spool}/w{s}.")) as e:
        c.emit(e, 1000)
    del c
def rss(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field)) / 1024
base = rss("VmRSS:")
x = Exporter(ExporterOptions(spool=spool))
x.open()
while x.ingest_pass(now_ms=2000):
    pass
ingested = rss("VmRSS:")
page = x.page()
start = time.perf_counter()
x.checkpoint()
snap = time.perf_counter() - start
print(x.store.entries, base, ingested, rss("VmRSS:"), rss("VmHWM:"), len(page), snap,
      os.path.getsize(x.durable.path))
"""


def _segments(spool: str, n: int) -> int:
    collector = Collector()
    for i in range(500):
        collector.register(Counter(f"counter_{i}", help="A counter.")).count(i)
    for i in range(50):
        h = collector.register(Histogram(f"histogram_{i}", help="A histogram."))
        for x in OBSERVATIONS:
            h.observe(x)
    total = 0
    for pid in range(n):
        with SegmentEmitter(Options(prefix=os.path.join(spool, f"bench.host.{pid}."))) as e:
            collector.emit(e, 1_000 + pid)
            assert e.path is not None
            total += os.path.getsize(e.path)
    return total


def _get(port: int) -> tuple[float, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    start = time.perf_counter()
    conn.request("GET", "/metrics")
    body = conn.getresponse().read()
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, len(body)


def _ours(n: int, repeats: int) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory() as spool:
        size = _segments(spool, n)
        exporter = Exporter(ExporterOptions(spool=spool))
        exporter.open()
        start = time.perf_counter()
        while exporter.ingest_pass(now_ms=10_000):
            pass
        ingest = time.perf_counter() - start
        server = Server(make_app(exporter), "127.0.0.1", 0).start()
        try:
            cold, length = _get(server.port)
            warm = statistics.median(_get(server.port)[0] for _ in range(repeats))
        finally:
            server.stop()
            exporter.close()
    return cold, warm, size / ingest / 1e6, length


def _theirs(n: int, repeats: int) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", THEIRS, str(n), str(repeats)], check=True,
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    return float(out[0]), int(out[1])


def run(*, quick: bool = False) -> None:
    """Print the scrape, ingest and memory tables."""
    repeats = 5 if quick else 21
    print(f"\n### One /metrics answer: N processes x (500 counters + 50 histograms) "
          f"(median of {repeats})\n")  # fmt: skip
    print("| N | ours, first GET after ingest | ours, repeat GET | prometheus_client mp "
          "collect+generate_latest | ratio (first GET) | ingest MB/s |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for n in (32, 256):
        cold, warm, mbs, length = _ours(n, repeats)
        theirs, their_length = _theirs(n, max(3, repeats // 4))
        print(f"| {n} | {cold * 1e3:.2f} ms ({length / 1e3:.0f} KB) | {warm * 1e3:.2f} ms | "
              f"{theirs * 1e3:.1f} ms ({their_length / 1e3:.0f} KB) | {cold / theirs:.3f}x | "
              f"{mbs:.1f} |")  # fmt: skip
    sources, per = (10, 1_000) if quick else (10, 10_000)
    out = subprocess.run([sys.executable, "-c", RSS, str(sources), str(per)], check=True,
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    entries, base, ingested, rendered, peak, page, snap, snap_size = map(float, out)
    print(f"\n### Memory with {entries:,.0f} series in the store ({sources} sources)\n")
    print("| interpreter + library | after ingest | after first render | peak (VmHWM) | "
          "page | snapshot write |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {base:.0f} MB | {ingested:.0f} MB | {rendered:.0f} MB | {peak:.0f} MB | "
          f"{page / 1e6:.1f} MB | {snap:.2f} s ({snap_size / 1e6:.1f} MB) |")  # fmt: skip
