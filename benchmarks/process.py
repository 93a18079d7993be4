"""Process integration: multi-process hot paths, background emission, the bridge, fork, tools.

prometheus_client's answer to many processes is its multiprocess mode (an mmap file per process
and metric type, written on every ``inc``/``observe``); ours is a plain in-memory sensor plus a
background emission.  Both are measured here in the same run.
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import prometheus_client as pc
from prometheus_client import values

import biometrics
from biometrics.files import merged_page, timeline
from biometrics.prometheus import Options, SegmentEmitter
from biometrics.runtime import Emission, PrometheusClientBridge

CALLS = 100_000


def _median(fn: Callable[[], object], repeats: int, number: int = 1) -> float:
    return statistics.median(timeit.repeat(fn, number=number, repeat=repeats)) / number


def _hot_paths(repeats: int, spool: str) -> list[tuple[str, float, float]]:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = spool
    saved = values.ValueClass
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    try:
        registry = pc.CollectorRegistry()
        their_counter = pc.Counter("mp_c", "c", registry=registry)
        their_hist = pc.Histogram("mp_h", "h", registry=registry)
    finally:
        values.ValueClass = saved
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    ours_counter, ours_hist = biometrics.Counter("c"), biometrics.Histogram("h")
    xs = [0.001 * (i % 1000) for i in range(CALLS)]

    def loop0(op: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            for _ in xs:
                op()

        return run

    def loop1(op: Callable[[float], object]) -> Callable[[], None]:
        def run() -> None:
            for x in xs:
                op(x)

        return run

    def per_op(fn: Callable[[], None]) -> float:
        return _median(fn, repeats) / CALLS * 1e9

    return [
        ("Counter.click() vs multiprocess Counter.inc() (ns)",
         per_op(loop0(ours_counter.click)), per_op(loop0(their_counter.inc))),
        ("Histogram.observe(x) vs multiprocess Histogram.observe(x) (ns)",
         per_op(loop1(ours_hist.observe)), per_op(loop1(their_hist.observe))),
    ]  # fmt: skip


def _registry_of(n: int) -> pc.CollectorRegistry:
    registry = pc.CollectorRegistry()
    counter = pc.Counter("requests", "Requests.", ["route"], registry=registry)
    for i in range(n):
        counter.labels(f"/r{i}").inc(i)
    return registry


def _emission_and_bridge(repeats: int, spool: Path) -> list[tuple[str, float, float]]:
    collector = biometrics.Collector()
    for i in range(1000):
        collector.register(biometrics.Counter("requests", labels={"route": f"/r{i}"})).count(i)
    emission = Emission(3600, collector=collector, options=Options(prefix=spool / "emit."))
    ms = _median(emission.emit, repeats, 5) * 1e3
    emission.stop()
    registry = _registry_of(1000)
    bridge = PrometheusClientBridge(registry)
    with SegmentEmitter(Options(prefix=spool / "bridge.")) as e:
        clock = iter(range(1_700_000_000_000, 1_800_000_000_000))
        bridged = _median(lambda: bridge.emit(e, next(clock)), repeats, 5) * 1e3
    latest = _median(lambda: pc.generate_latest(registry), repeats, 5) * 1e3
    return [
        ("one emit_every emission, 1,000 counters + system sensors (ms) vs their "
         "generate_latest of 1,000 counters", ms, latest),
        ("bridge: emit a 1,000-series prometheus_client registry (ms) vs its "
         "generate_latest", bridged, latest),
    ]  # fmt: skip


def _fork(repeats: int) -> tuple[float, float]:
    def fork_once() -> None:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

    bare = _median(fork_once, repeats, 5) * 1e6
    collector = biometrics.Collector()
    for i in range(1000):
        collector.register(biometrics.Counter("c", labels={"i": str(i)}))
    with tempfile.TemporaryDirectory() as spool:
        emission = Emission(3600, collector=collector, options=Options(prefix=f"{spool}/f."))
        emission.start()
        hooked = _median(fork_once, repeats, 5) * 1e6
        emission.stop()
    return bare, hooked


def _tools(spool: Path) -> tuple[int, float, float]:
    collector = biometrics.Collector()
    counters = [
        collector.register(biometrics.Counter("c", labels={"i": str(i)})) for i in range(500)
    ]
    emits = 400
    for source in range(5):
        with SegmentEmitter(Options(prefix=spool / f"src{source}.", segment_size=2**20)) as e:
            for step in range(emits):
                for c in counters:
                    c.click()
                collector.emit(e, 1_700_000_000_000 + step * 1000)
    samples = 5 * emits * (500 + 10)
    start = time.perf_counter()
    io.StringIO().write(timeline([spool]).render(openmetrics=True))
    backfill = samples / (time.perf_counter() - start)
    start = time.perf_counter()
    merged_page([spool])
    cat = samples / (time.perf_counter() - start)
    return samples, backfill, cat


def run(*, quick: bool = False) -> None:
    repeats = 3 if quick else 9
    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp)
        rows = _hot_paths(repeats, str(spool))
        rows += _emission_and_bridge(repeats, spool)
        bare, hooked = _fork(repeats)
        for p in spool.iterdir():
            p.unlink()
        samples, backfill, cat = _tools(spool)
    print(f"\n### Process integration (median of {repeats})\n")
    print("| measure | biometrics | prometheus_client | ratio |")
    print("|---|---:|---:|---:|")
    for name, ours, theirs in rows:
        print(f"| {name} | {ours:.3g} | {theirs:.3g} | {ours / theirs:.2f}x |")
    print(f"\nfork + child exit + wait: {bare:.0f} µs bare, {hooked:.0f} µs with an emission of "
          f"1,000 counters running (+{hooked - bare:.0f} µs for the at-fork baseline)")  # fmt: skip
    print(f"\ntools over {samples:,} samples in 5 sources: backfill (timeline + OpenMetrics) "
          f"{backfill:,.0f} samples/s; cat merged page {cat:,.0f} samples/s")  # fmt: skip
