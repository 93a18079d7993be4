"""Issue 16's workload: CPU of the real ``biometrics serve`` per fleet-minute, in steady state,
against prometheus_client's multiprocess mode over the same fleet.

``python -m benchmarks.fleet [--quick] [--finish-each]`` (``--quick``: N = 32 only).

A fleet of N processes, each with 500 counters and 50 latency histograms (default layout,
200 lognormal observations per histogram per emission), emitting every 10 s.  Three
fleet-minutes (18 emissions per process) are written up front with the real
``SegmentEmitter`` as ``emit_every`` writes them: by default one segment per minute per
process (later emissions carry only what changed, each ends with its ``# EMITTED`` marker);
with ``--finish-each``, one finished segment per emission (``emit_every(finish_each=True)``).
Simulated processes are distinct prefixes, spread over a few worker processes.  Then the real
``python -m biometrics serve`` starts on an empty spool; once ``/-/ready`` answers, the first
two minutes are renamed into the spool one after the other and consumed (warm-up: in the first
every source and series is new to serve, in the second serve first meets each source's lines
again and learns them), each one's CPU (utime + stime from ``/proc/PID/stat``) shown; then the
third minute is renamed in, consumed, and 4 scrapes (``GET /metrics``) answered: steady state,
one minute of a running fleet.  The scrapes come right after the ingest rather than one per
15 s: the same work.

Theirs: the same N pids' mmap files in ``PROMETHEUS_MULTIPROC_DIR`` (500 counters + 50
histograms each; one emission's 200 lognormal observations per histogram, since a
collect's cost does not depend on the values), then 4 x (``MultiProcessCollector`` collect +
``generate_latest``), timed with ``time.process_time`` in a fresh process, setup excluded.

"Quiet fleet": per emission only 10% of the counters click and 10% of the histograms observe;
prometheus_client still reads every file at every scrape.
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
from dataclasses import dataclass, field

from benchmarks._machine import describe
from biometrics import Collector, Counter, Histogram
from biometrics.prometheus import Options, SegmentEmitter, source_of

COUNTERS = 500
HISTOGRAMS = 50
OBSERVATIONS = 200  # per histogram per emission
EMISSIONS = 6  # one minute at one emission per 10 s
MINUTES = 3  # two warm-up minutes (new series, then first sight of known lines), then one measured
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


def _write_sources(job: tuple[str, list[int], int, bool, bool]) -> None:
    """Write the fleet-minutes of the simulated processes ``pids`` (one prefix each)."""
    stage, pids, base_ms, quiet, finish_each = job
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
        for k in range(MINUTES * EMISSIONS):
            for i, c in enumerate(counters):
                if not quiet or i % 10 == k % 10:
                    c.click()
            for i, h in enumerate(histograms):
                if not quiet or i % 10 == k % 10:
                    start = rng.randrange(len(pool) - OBSERVATIONS)
                    for x in pool[start : start + OBSERVATIONS]:
                        h.observe(x)
            now = base_ms + k * INTERVAL_MS + pid % INTERVAL_MS
            collector.emit(emitter, now)
            if finish_each or k % EMISSIONS == EMISSIONS - 1:
                emitter.close()  # finish_each: every emission; else the minute's rotation


def _generate(stage: str, n: int, quiet: bool, finish_each: bool) -> list[_Minute]:
    """Write the fleet-minutes into ``stage``; each minute's files, bytes and lines."""
    base_ms = int(time.time() * 1000) - MINUTES * EMISSIONS * INTERVAL_MS
    workers = max(1, min(4, os.cpu_count() or 1))
    jobs = [(stage, list(range(w, n, workers)), base_ms, quiet, finish_each)
            for w in range(workers)]  # fmt: skip
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_write_sources, jobs)
    minutes = [_Minute() for _ in range(MINUTES)]
    for name in os.listdir(stage):
        named = source_of(name)
        if named is None:
            continue
        with open(os.path.join(stage, name), "rb") as f:
            data = f.read()
        minute = minutes[min(MINUTES - 1, (named[1] - base_ms) // (EMISSIONS * INTERVAL_MS))]
        minute.names.append(name)
        minute.bytes += len(data)
        minute.lines += data.count(b"\n")
    return minutes


@dataclass(slots=True)
class _Minute:
    """One fleet-minute's segment files."""

    names: list[str] = field(default_factory=list)
    bytes: int = 0
    lines: int = 0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after "pid (comm)": state is fields[0], utime is field 14 -> index 11, stime index 12
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


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


def _move_in(stage: str, spool: str, minute: _Minute, proc: subprocess.Popen[bytes]) -> float:
    """Rename one minute's segments into the spool; wall seconds until serve consumed them."""
    wall = time.perf_counter()
    for name in sorted(minute.names):
        os.rename(os.path.join(stage, name), os.path.join(spool, name))
    deadline = time.monotonic() + 1200
    while any(f.endswith(".prom") for f in os.listdir(spool)):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("serve did not consume the spool")
        time.sleep(0.05)
    return time.perf_counter() - wall


def _ours(n: int, quiet: bool, finish_each: bool) -> dict[str, float]:
    """Serve's CPU seconds for two warm-up minutes, then for one minute plus 4 scrapes."""
    with tempfile.TemporaryDirectory() as root:
        stage, spool = os.path.join(root, "stage"), os.path.join(root, "spool")
        os.mkdir(stage)
        os.mkdir(spool)
        start = time.perf_counter()
        *warm, minute = _generate(stage, n, quiet, finish_each)
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
            warm_cpu = []
            for warm_minute in warm:
                cold = _cpu_seconds(proc.pid)
                _move_in(stage, spool, warm_minute, proc)
                warm_cpu.append(_cpu_seconds(proc.pid) - cold)
            before = _cpu_seconds(proc.pid)
            rss_warm = _rss_mb(proc.pid)
            ingest_wall = _move_in(stage, spool, minute, proc)
            ingested = _cpu_seconds(proc.pid)
            page = b""
            for _ in range(SCRAPES):
                status, page = _get(port, "/metrics")
                assert status == 200, status
            after = _cpu_seconds(proc.pid)
            rss_after = _rss_mb(proc.pid)
            quarantine = os.path.join(spool, "quarantine")
            assert not os.path.isdir(quarantine) or not os.listdir(quarantine), "quarantined"
            emissions = range(MINUTES * EMISSIONS)
            expected = n * sum(1 for k in emissions if not quiet or k % 10 == 0)  # counter_0
            assert f"counter_0_total {expected}\n".encode() in page, "counter_0 sum wrong"
        finally:
            proc.terminate()
            proc.wait(30)
    return {
        "cpu": after - before,
        "warm_cpu": warm_cpu[0],
        "warm2_cpu": warm_cpu[1],
        "ingest_cpu": ingested - before,
        "scrape_cpu": after - ingested,
        "ingest_wall": ingest_wall,
        "segments": len(minute.names),
        "bytes": minute.bytes,
        "lines": minute.lines,
        "page": len(page),
        "generate": generate,
        "rss_warm": rss_warm,
        "rss_after": rss_after,
    }


def _theirs(n: int) -> tuple[float, int, int]:
    out = subprocess.run([sys.executable, "-c", THEIRS, str(n), str(SCRAPES), str(OBSERVATIONS)],
                         check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
    return float(out[0]), int(out[1]), int(out[2])


def run(*, quick: bool = False, finish_each: bool = False) -> None:
    """Print the fleet-minute CPU table."""
    sizes = (32,) if quick else (32, 256)
    rows = []
    for n in sizes:
        theirs, their_page, their_files = _theirs(n)
        for quiet in (False, True):
            ours = _ours(n, quiet, finish_each)
            rows.append((n, quiet, ours, theirs, their_page, their_files))
            print(f"# N={n} {'quiet' if quiet else 'full'}: {ours}", file=sys.stderr)
    mode = "one finished segment per emission" if finish_each else "one segment a minute"
    print(f"\n### CPU-seconds per fleet-minute, steady state ({mode}): N processes x "
          f"({COUNTERS} counters + {HISTOGRAMS} histograms), {EMISSIONS} emissions each, "
          f"{SCRAPES} scrapes\n")  # fmt: skip
    print("| N | workload | ours: serve CPU-s (ingest + 4 scrapes) | theirs: mp collect + "
          "generate_latest x4 | ratio | segment bytes / fleet-minute | lines | "
          "ours: ingest CPU-s / µs per line | ours: 4 scrapes | "
          "ours: warm-up minutes 1, 2 |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, quiet, ours, theirs, _, _ in rows:
        per_line = ours["ingest_cpu"] / ours["lines"] * 1e6
        print(f"| {n} | {'quiet (10% change)' if quiet else 'full change'} | "
              f"{ours['cpu']:.2f} | {theirs:.2f} | {ours['cpu'] / theirs:.2f}x | "
              f"{ours['bytes'] / 1e6:.1f} MB ({ours['segments']:.0f} segments) | "
              f"{ours['lines']:,.0f} | {ours['ingest_cpu']:.2f} / {per_line:.2f} | "
              f"{ours['scrape_cpu']:.2f} | {ours['warm_cpu']:.2f}, "
              f"{ours['warm2_cpu']:.2f} |")  # fmt: skip
    for n, _, ours, _, their_page, their_files in rows[::2]:
        print(f"N={n}: our page {ours['page'] / 1e3:.0f} KB, theirs {their_page / 1e3:.0f} KB; "
              f"their mmap files {their_files / 1e6:.1f} MB; ingest wall "
              f"{ours['ingest_wall']:.1f} s; serve RSS {ours['rss_warm']:.0f} MB after the "
              f"warm-up minute, {ours['rss_after']:.0f} MB after the next")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet")
    parser.add_argument("--quick", action="store_true", help="N = 32 only")
    parser.add_argument(
        "--finish-each", action="store_true", help="one finished segment per emission"
    )
    args = parser.parse_args()
    print(describe())
    run(quick=args.quick, finish_each=args.finish_each)
    return 0


if __name__ == "__main__":
    sys.exit(main())
