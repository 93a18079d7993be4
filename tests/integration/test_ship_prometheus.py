"""`biometrics ship` to the real Prometheus remote-write receiver: every sample, exactly."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..helpers import spool_samples, wait_for
from ._prometheus import Prometheus, needs_prometheus

pytestmark = needs_prometheus

HISTORY = """
import sys
from biometrics import Collector, Counter, Gauge, Histogram
from biometrics.prometheus import Options, SegmentEmitter
spool, name, start, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = Collector()
jobs = c.register(Counter("jobs.done_total", help="Jobs done."))
queue = c.register(Gauge("queue.depth"))
work = c.register(Histogram("work.seconds", help="Work time."))
with SegmentEmitter(Options(prefix=f"{spool}/{name}.", flush_interval=60)) as e:
    for step in range(steps):
        jobs.count(step % 7 + 1)
        queue.set(step * 0.5)
        work.observe(0.001 * (step + 1))
        c.emit(e, start + step * 10_000)
"""
WORKERS, STEPS = 3, 90  # 15 minutes of history, 10 s apart, per process


def write_history(spool: Path, first: int, start_ms: int) -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", HISTORY, str(spool), f"w{i}", str(start_ms), str(STEPS)]
        )
        for i in range(first, first + WORKERS)
    ]
    for w in workers:
        assert w.wait(60) == 0


def expected(spool: Path) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    """Every sample in the spool now, keyed as Prometheus will return it."""
    out: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
    for path, samples in spool_samples(spool).items():
        source = path.name.split(".")[0]
        for item in samples:
            key = tuple(sorted({**dict(item.labels), "__name__": item.name,
                                "source": source, "site": "lab"}.items()))  # fmt: skip
            assert item.timestamp_ms is not None
            out.setdefault(key, []).append((item.timestamp_ms, item.value))
    return out


def staged(
    stage: Path, spool: Path, first: int, start_ms: int
) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    """History written aside and read, then moved into a spool the shipper is draining."""
    stage.mkdir()
    write_history(stage, first, start_ms)
    want = expected(stage)
    for path in sorted(stage.glob("*.prom")):
        path.rename(spool / path.name)
    return want


def stored(
    prometheus: Prometheus, at_ms: int
) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    """Raw samples of every series with a ``source`` label, over the last hour before ``at``."""
    data = prometheus.query_data('{source=~"w.+"}[1h]', at=at_ms / 1000)
    assert data["resultType"] == "matrix"
    return {
        tuple(sorted(series["metric"].items())): [
            (round(float(t) * 1000), float(v)) for t, v in series["values"]
        ]
        for series in data["result"]
    }


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    server = Prometheus(
        tmp_path,
        "global:\n  scrape_interval: 1h\nstorage:\n  tsdb:\n    out_of_order_time_window: 2h\n",
        "--web.enable-remote-write-receiver",
    )
    try:
        yield server.start()
    finally:
        server.stop()


class Shipper:
    def __init__(self, spool: Path, url: str, log: Path) -> None:
        self.log = log
        argv = [sys.executable, "-m", "biometrics", "ship", str(spool), "--url", url,
                "--source-label", "source", "--label", "site=lab", "--poll-interval", "20ms",
                "--max-samples-per-request", "500", "--max-backoff", "200ms",
                "--log-level", "info"]  # fmt: skip
        with log.open("wb") as err:
            self.proc = subprocess.Popen(argv, stderr=err)

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(30)


def test_every_sample_arrives_at_its_original_time(tmp_path: Path, prometheus: Prometheus) -> None:
    """Three processes' 15 minutes of history, shipped: Prometheus holds exactly those samples."""
    spool = tmp_path / "spool"
    spool.mkdir()
    now = time.time_ns() // 1_000_000
    write_history(spool, 0, now - 20 * 60_000)
    want = expected(spool)
    assert len(want) >= 3 * WORKERS
    shipper = Shipper(spool, f"{prometheus.url}/api/v1/write", tmp_path / "ship.log")
    try:
        wait_for(lambda: not list(spool.glob("*.prom")), "spool shipped", timeout=60)
    finally:
        assert shipper.stop() == 0
    assert stored(prometheus, now) == want
    assert not (spool / "quarantine").exists()


def test_prometheus_down_mid_shipping_loses_nothing(tmp_path: Path, prometheus: Prometheus) -> None:
    """History shipped, Prometheus stopped, more history kept in the spool, Prometheus back:
    every sample of both halves is there, once."""
    spool = tmp_path / "spool"
    spool.mkdir()
    now = time.time_ns() // 1_000_000
    log = tmp_path / "ship.log"
    shipper = Shipper(spool, f"{prometheus.url}/api/v1/write", log)
    try:
        want = staged(tmp_path / "first", spool, 0, now - 40 * 60_000)
        wait_for(lambda: not list(spool.glob("*.prom")), "first half shipped", timeout=60)
        prometheus.stop()
        second = staged(tmp_path / "second", spool, 3, now - 20 * 60_000)
        waiting = sorted(spool.glob("*.prom"))
        wait_for(
            lambda: "remote write failed; retrying" in log.read_text(), "a failed try", timeout=30
        )
        assert sorted(spool.glob("*.prom")) == waiting  # nothing leaves until acknowledged
        prometheus.start()
        wait_for(lambda: not list(spool.glob("*.prom")), "second half shipped", timeout=60)
    finally:
        assert shipper.stop() == 0
    assert "remote write recovered" in log.read_text()
    assert stored(prometheus, now) == want | second
