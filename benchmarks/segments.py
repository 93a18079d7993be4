"""Segment emission and parsing against prometheus_client, in the same process.

Emission: 1,000 counters and 100 histograms written to a segment (our SegmentEmitter, to a real
file) against ``generate_latest`` of the equivalent prometheus_client registry (to memory).
Parsing: one ~50 MB segment through our parser against ``text_string_to_metric_families``
on the same text, every sample consumed by both; peak traced memory of ours reported.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable

import prometheus_client as pc
from prometheus_client.parser import text_string_to_metric_families

from biometrics import Collector, Counter, Histogram
from biometrics.prometheus import Options, Sample, SegmentEmitter, parse


def _median(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _emission(repeats: int, spool: str) -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(-5.0, 1.5) for _ in range(200)]
    registry = pc.CollectorRegistry()
    collector = Collector()
    for i in range(1000):
        pc.Counter(f"counter_{i}", "A counter.", registry=registry).inc(i)
        collector.register(Counter(f"counter.{i}", help="A counter.")).count(i)
    for i in range(100):
        theirs = pc.Histogram(f"histogram_{i}", "A histogram.", registry=registry)
        ours = collector.register(Histogram(f"histogram.{i}", help="A histogram."))
        for x in values:
            theirs.observe(x)
            ours.observe(x)
    emitter = SegmentEmitter(
        Options(prefix=os.path.join(spool, "bench."), flush_interval=3600.0, changes_only=False)
    )  # full rendering, every emission
    now = [1_000]

    def ours_emit() -> None:
        now[0] += 1
        collector.emit(emitter, now[0])

    a = _median(ours_emit, repeats)
    b = _median(lambda: pc.generate_latest(registry), repeats)
    emitter.close()
    buckets = sum(len(h.read().buckets) for h in collector.sensors() if isinstance(h, Histogram))
    print(f"\n### Emitting 1,000 counters + 100 histograms (median of {repeats})\n")
    print(f"Our histograms list {buckets / 100:.0f} buckets each, +Inf included (the default "
          "layout, empty buckets too);")  # fmt: skip
    print("prometheus_client's list its 15 default buckets, +Inf included.\n")
    print("| operation | biometrics | prometheus_client | ratio | target |")
    print("|---|---:|---:|---:|---|")
    verdict = "met" if a / b <= 0.3 else "MISSED"
    print(f"| Collector.emit to a segment vs generate_latest | {a * 1e3:.2f} ms | {b * 1e3:.2f} ms "
          f"| {a / b:.2f}x | <= 0.3x: {verdict} |")  # fmt: skip


def _segment_text(target_bytes: int) -> bytes:
    lines = []
    size = 0
    i = 0
    while size < target_bytes:
        ts = 1_726_547_192_000 + i * 1000
        block = (
            f'# TYPE http_requests counter\nhttp_requests{{route="/api/{i % 50}",code="200"}} '
            f"{i} {ts}\n# TYPE http_latency histogram\n"
            f'http_latency_bucket{{le="0.0042"}} {i} {ts}\nhttp_latency_bucket{{le="+Inf"}} '
            f"{2 * i} {ts}\nhttp_latency_sum {i * 0.37!r} {ts}\nhttp_latency_count {2 * i} {ts}\n"
            f"# TYPE temperature gauge\ntemperature {i * 0.5 - 3.25!r} {ts}\n"
        )
        lines.append(block)
        size += len(block)
        i += 1
    return "".join(lines).encode()


def _parsing(repeats: int, spool: str, megabytes: int) -> None:
    text = _segment_text(megabytes * 1_000_000)
    path = os.path.join(spool, f"parse.{len(text)}.prom")
    with open(path, "wb") as f:
        f.write(text)
    decoded = text.decode()

    def ours() -> int:
        with open(path, "rb") as f:
            return sum(1 for item in parse(f) if isinstance(item, Sample))

    def theirs() -> int:
        return sum(len(family.samples) for family in text_string_to_metric_families(decoded))

    n_ours, n_theirs = ours(), theirs()
    a = _median(ours, repeats)
    b = _median(theirs, max(1, repeats // 2))
    tracemalloc.start()
    ours()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    mb = len(text) / 1e6
    print(f"\n### Parsing a {mb:.0f} MB segment ({n_ours:,} samples; median of {repeats})\n")
    print("| parser | time | MB/s | samples/s | peak memory |")
    print("|---|---:|---:|---:|---:|")
    print(f"| biometrics.prometheus.parse (from file) | {a:.2f} s | {mb / a:.1f} | "
          f"{n_ours / a:,.0f} | {peak / 1e6:.2f} MB |")  # fmt: skip
    print(f"| prometheus_client text_string_to_metric_families | {b:.2f} s | {mb / b:.1f} | "
          f"{n_theirs / b:,.0f} | (whole text in memory) |")  # fmt: skip
    verdict = "met" if b / a >= 5 else "MISSED"
    print(f"\nSpeed-up: {b / a:.1f}x (target >= 5x: {verdict}).")


def run(*, quick: bool = False) -> None:
    with tempfile.TemporaryDirectory() as spool:
        _emission(5 if quick else 21, spool)
        _parsing(1 if quick else 3, spool, 5 if quick else 50)
