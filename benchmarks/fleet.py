"""Issue 16's workload: CPU of the real ``biometrics serve`` per fleet-minute, against
prometheus_client's multiprocess mode over the same fleet.

``python -m benchmarks.fleet [--quick]`` (``--quick``: N = 32 only).

A fleet of N processes, each with 500 counters and 50 latency histograms (default layout,
200 lognormal observations per histogram per emission), emitting every 10 s.  One
fleet-minute (6 emissions per process) is written up front with the real ``SegmentEmitter``,
each emission finishing its segment as ``emit_every`` does (simulated processes are distinct
prefixes, spread over a few worker processes), into a staging directory.  Then the real
``python -m biometrics serve`` starts on an empty spool; once ``/-/ready`` answers, its CPU
(utime + stime from ``/proc/PID/stat``) is read, the minute is renamed into the spool, and
after every segment has been consumed 4 scrapes (``GET /metrics``) are answered; CPU is read
again.  The scrapes come right after the ingest rather than one per 15 s: the same work.

Theirs: the same N pids' mmap files in ``PROMETHEUS_MULTIPROC_DIR`` (500 counters + 50
histograms each; one emission's 200 lognormal observations per histogram, since a
collect's cost does not depend on the values), then 4 x (``MultiProcessCollector`` collect +
``generate_latest``), timed with ``time.process_time`` in a fresh process, setup excluded.

"Quiet fleet": per emission only 10% of the counters click and 10% of the histograms observe;
we still re-emit every series (the same lines), prometheus_client still reads every file.
"""

from __future__ import annotations

import argparse
import http.client
import math
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import time

from benchmarks._machine import describe
from biometrics import Collector, Counter, Histogram
from biometrics.prometheus import Options, SegmentEmitter

COUNTERS = 500
HISTOGRAMS = 50
OBSERVATIONS = 200  # per histogram per emission
EMISSIONS = 6  # one minute at one emission per 10 s
INTERVAL_MS = 10_000
SCRAPES = 4
MU, SIGMA = math.log(0.05), 1.0  # lognormal latencies, median 50 ms

THEIRS = """
import math, os, random, sys, tempfile, time
n, scrapes, obs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
d = tempfile.mkdtemp()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = d
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector
rng = random.Random(16)
pool = [rng.lognormvariate(math.log(0.05), 1.0) for _ in range(4099)]
for pid in range(n):
    values.ValueClass = values.MultiProcessValue(lambda pid=pid: pid)
    reg = CollectorRegistry()
    for i in range(500):
        Counter(f"counter_{i}", "A counter.", registry=reg).inc(i + 1)
    for i in range(50):
        h = Histogram(f"histogram_{i}", "A latency histogram.", registry=reg)
        start = rng.randrange(len(pool) - obs)
        for x in pool[start:start + obs]:
            h.observe(x)
size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
start = time.process_time()
for _ in range(scrapes):
    reg = CollectorRegistry()
    MultiProcessCollector(reg, path=d)
    body = generate_latest(reg)
print(time.process_time() - start, len(body), size)
"""


def _write_sources(job: tuple[str, list[int], int, bool]) -> None:
    """Write one fleet-minute for the simulated processes ``pids`` (one prefix each)."""
    stage, pids, base_ms, quiet = job
    rng = random.Random(pids[0])
    pool = [rng.lognormvariate(MU, SIGMA) for _ in range(10_007)]
    for pid in pids:
        collector = Collector()
        counters = [
            collector.register(Counter(f"counter_{i}", help="A counter.")) for i in range(COUNTERS)
        ]
        histograms = [
            collector.register(Histogram(f"histogram_{i}", help="A latency histogram."))
            for i in range(HISTOGRAMS)
        ]
        emitter = SegmentEmitter(Options(prefix=os.path.join(stage, f"fleet.host.{pid}.")))
        for k in range(EMISSIONS):
            for i, c in enumerate(counters):
                if not quiet or i % 10 == k % 10:
                    c.click()
            for i, h in enumerate(histograms):
                if not quiet or i % 10 == k % 10:
                    start = rng.randrange(len(pool) - OBSERVATIONS)
                    for x in pool[start : start + OBSERVATIONS]:
                        h.observe(x)
            collector.emit(emitter, base_ms + k * INTERVAL_MS + pid % INTERVAL_MS)
            emitter.close()  # as emit_every's finish_each does after every emission


def _generate(stage: str, n: int, quiet: bool) -> tuple[int, int, int]:
    """Write the fleet-minute into ``stage``; (segments, bytes, lines)."""
    base_ms = int(time.time() * 1000) - EMISSIONS * INTERVAL_MS
    workers = max(1, min(4, os.cpu_count() or 1))
    jobs = [(stage, list(range(w, n, workers)), base_ms, quiet) for w in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_write_sources, jobs)
    names = [f for f in os.listdir(stage) if f.endswith(".prom")]
    size = lines = 0
    for name in names:
        with open(os.path.join(stage, name), "rb") as f:
            data = f.read()
        size += len(data)
        lines += data.count(b"\n")
    return len(names), size, lines


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after "pid (comm)": state is fields[0], utime is field 14 -> index 11, stime index 12
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ours(n: int, quiet: bool) -> dict[str, float]:
    """Serve's CPU seconds to ingest one fleet-minute and answer 4 scrapes."""
    with tempfile.TemporaryDirectory() as root:
        stage, spool = os.path.join(root, "stage"), os.path.join(root, "spool")
        os.mkdir(stage)
        os.mkdir(spool)
        start = time.perf_counter()
        segments, size, lines = _generate(stage, n, quiet)
        generate = time.perf_counter() - start
        port = _free_port()
        command = [sys.executable, "-m", "biometrics", "serve", spool, "--listen",
                   f"127.0.0.1:{port}", "--state", os.path.join(root, "state.json")]  # fmt: skip
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if _get(port, "/-/ready")[0] == 200:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"serve did not get ready: {proc.stderr!r}")
                time.sleep(0.05)
            before = _cpu_seconds(proc.pid)
            wall = time.perf_counter()
            for name in sorted(os.listdir(stage)):
                os.rename(os.path.join(stage, name), os.path.join(spool, name))
            deadline = time.monotonic() + 1200
            while any(f.endswith(".prom") for f in os.listdir(spool)):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("serve did not consume the spool")
                time.sleep(0.05)
            ingest_wall = time.perf_counter() - wall
            ingested = _cpu_seconds(proc.pid)
            page = b""
            for _ in range(SCRAPES):
                status, page = _get(port, "/metrics")
                assert status == 200, status
            after = _cpu_seconds(proc.pid)
            quarantine = os.path.join(spool, "quarantine")
            assert not os.path.isdir(quarantine) or not os.listdir(quarantine), "quarantined"
            expected = n * (EMISSIONS if not quiet else 1)  # counter_0: clicks per process
            assert f"counter_0_total {expected}\n".encode() in page, "counter_0 sum wrong"
        finally:
            proc.terminate()
            proc.wait(30)
    return {
        "cpu": after - before,
        "ingest_cpu": ingested - before,
        "scrape_cpu": after - ingested,
        "ingest_wall": ingest_wall,
        "segments": segments,
        "bytes": size,
        "lines": lines,
        "page": len(page),
        "generate": generate,
    }


def _theirs(n: int) -> tuple[float, int, int]:
    out = subprocess.run([sys.executable, "-c", THEIRS, str(n), str(SCRAPES), str(OBSERVATIONS)],
                         check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
    return float(out[0]), int(out[1]), int(out[2])


def run(*, quick: bool = False) -> None:
    """Print the fleet-minute CPU table."""
    sizes = (32,) if quick else (32, 256)
    rows = []
    for n in sizes:
        theirs, their_page, their_files = _theirs(n)
        for quiet in (False, True):
            ours = _ours(n, quiet)
            rows.append((n, quiet, ours, theirs, their_page, their_files))
            print(f"# N={n} {'quiet' if quiet else 'full'}: {ours}", file=sys.stderr)
    print(f"\n### CPU-seconds per fleet-minute: N processes x ({COUNTERS} counters + "
          f"{HISTOGRAMS} histograms), {EMISSIONS} emissions each, {SCRAPES} scrapes\n")  # fmt: skip
    print("| N | workload | ours: serve CPU-s (ingest + 4 scrapes) | theirs: mp collect + "
          "generate_latest x4 | ratio | segment bytes / fleet-minute | lines | "
          "ours: ingest CPU-s / µs per line | ours: 4 scrapes |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for n, quiet, ours, theirs, _, _ in rows:
        per_line = ours["ingest_cpu"] / ours["lines"] * 1e6
        print(f"| {n} | {'quiet (10% change)' if quiet else 'full change'} | "
              f"{ours['cpu']:.2f} | {theirs:.2f} | {ours['cpu'] / theirs:.1f}x | "
              f"{ours['bytes'] / 1e6:.1f} MB ({ours['segments']:.0f} segments) | "
              f"{ours['lines']:,.0f} | {ours['ingest_cpu']:.2f} / {per_line:.1f} | "
              f"{ours['scrape_cpu']:.2f} |")  # fmt: skip
    print("\nQuiet fleet: we re-emit every series each emission today, so its segments hold "
          "the same lines as the full-change fleet; prometheus_client's cost does not depend on "
          "what changed.")  # fmt: skip
    for n, _, ours, _, their_page, their_files in rows[::2]:
        print(f"N={n}: our page {ours['page'] / 1e3:.0f} KB, theirs {their_page / 1e3:.0f} KB; "
              f"their mmap files {their_files / 1e6:.1f} MB; ingest wall "
              f"{ours['ingest_wall']:.1f} s")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet")
    parser.add_argument("--quick", action="store_true", help="N = 32 only")
    args = parser.parse_args()
    print(describe())
    run(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
