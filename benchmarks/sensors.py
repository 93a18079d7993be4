"""Hot-path cost of our sensors against prometheus_client's, measured in the same process.

Each operation runs over the same pre-generated values (lognormal latencies, median ~7 ms, so
prometheus_client's default buckets are all exercised).  The cost of the bare loop is measured
too and subtracted, so the numbers are the cost of the call itself.  timeit disables the GC.
"""

from __future__ import annotations

import random
import statistics
import timeit
from collections.abc import Callable

import prometheus_client as pc

import biometrics

VALUES = 100_000


def _per_op(loop: Callable[[], None], repeats: int) -> float:
    times = timeit.repeat(loop, number=1, repeat=repeats)
    return statistics.median(times) / VALUES * 1e9


def _looper(op: Callable[[float], object], xs: list[float]) -> Callable[[], None]:
    def loop() -> None:
        for x in xs:
            op(x)

    return loop


def _looper0(op: Callable[[], object], xs: list[float]) -> Callable[[], None]:
    def loop() -> None:
        for _ in xs:
            op()

    return loop


def run(*, quick: bool = False) -> None:
    repeats = 5 if quick else 21
    rng = random.Random(7)
    xs = [rng.lognormvariate(-5.0, 1.5) for _ in range(VALUES)]
    registry = pc.CollectorRegistry()
    theirs_counter = pc.Counter("c", "c", registry=registry)
    theirs_gauge = pc.Gauge("g", "g", registry=registry)
    theirs_hist = pc.Histogram("h", "h", registry=registry)
    theirs_summary = pc.Summary("s", "s", registry=registry)
    ours_counter = biometrics.Counter("c")
    ours_gauge = biometrics.Gauge("g")
    ours_hist = biometrics.Histogram("h")
    ours_moments = biometrics.Moments("m")

    def bare() -> None:
        for _ in xs:
            pass

    baseline = _per_op(bare, repeats)
    rows = [
        ("Counter.click() vs Counter.inc()", _looper0(ours_counter.click, xs),
         _looper0(theirs_counter.inc, xs), 0.25),
        ("Gauge.set(x) vs Gauge.set(x)", _looper(ours_gauge.set, xs),
         _looper(theirs_gauge.set, xs), None),
        ("Histogram.observe(x) vs Histogram.observe(x)", _looper(ours_hist.observe, xs),
         _looper(theirs_hist.observe, xs), 0.5),
        ("Moments.add(x) vs Summary.observe(x)", _looper(ours_moments.add, xs),
         _looper(theirs_summary.observe, xs), None),
    ]  # fmt: skip
    print(f"\n### Sensor hot paths (ns per call, median of {repeats} x {VALUES:,} calls, ")
    print(f"bare loop of {baseline:.1f} ns subtracted)\n")
    print("| operation | biometrics | prometheus_client | ratio | target |")
    print("|---|---:|---:|---:|---|")
    for name, ours, theirs, target in rows:
        a = _per_op(ours, repeats) - baseline
        b = _per_op(theirs, repeats) - baseline
        ratio = a / b
        met = target is not None and ratio <= target
        verdict = "" if target is None else f"<= {target}x: {'met' if met else 'MISSED'}"
        print(f"| {name} | {a:.0f} | {b:.0f} | {ratio:.2f}x | {verdict} |")
    assert ours_hist.read().count + ours_hist.read().exceeds_max > 0
