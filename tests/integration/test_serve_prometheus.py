"""The real Prometheus (Debian package) scrapes `biometrics serve` and sees the merged values."""

import subprocess
from collections.abc import Iterator
from functools import partial
from operator import eq
from pathlib import Path

import pytest

from ..helpers import wait_for
from ._prometheus import PROMTOOL, Prometheus, needs_prometheus
from ._serve import Serve, start_workers

pytestmark = needs_prometheus
WORKERS, PER_STEP, STEPS = 3, 5, 20


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    spool = tmp_path / "spool"
    spool.mkdir()
    server = Serve(spool, tmp_path / "state.json").start()
    yield server
    assert server.stop() == 0


@pytest.fixture
def prometheus(tmp_path: Path, serve: Serve) -> Iterator[Prometheus]:
    server = Prometheus(
        tmp_path,
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: biometrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{serve.port}']\n",
    )
    try:
        yield server.start()
    finally:
        server.stop()


def test_prometheus_sees_exact_merged_values(serve: Serve, prometheus: Prometheus) -> None:
    """Several processes emit; Prometheus's query API shows their exact sums."""
    workers = start_workers(serve.spool, WORKERS, PER_STEP, STEPS)
    for w in workers:
        assert w.wait(60) == 0
    total = WORKERS * PER_STEP * STEPS
    checks = {
        "jobs_done_total": total,
        "work_seconds_count": total,
        'work_seconds_bucket{le="0.5"}': total,
        "work_seconds_sum": total * 0.5,
        "work_size_count": total,
        "work_size_mean": 2.0,
        'up{job="biometrics"}': 1,
    }
    for promql, expected in checks.items():
        wait_for(
            partial(prometheus.query, promql),
            f"{promql} == {expected}",
            accept=partial(eq, expected),
            timeout=60,
        )
    scrapes = prometheus.query("scrape_samples_scraped")
    assert scrapes is not None and scrapes > 0


def test_promtool_finds_no_error_in_the_page(serve: Serve) -> None:
    """promtool check metrics: no parse error (lint remarks about names are not errors)."""
    workers = start_workers(serve.spool, 2, 1, 3)
    for w in workers:
        assert w.wait(60) == 0
    wait_for(lambda: serve.value("jobs_done_total") == 6, "ingest", timeout=30)
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=serve.metrics(),
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode in (0, 3), result.stderr
    assert "error while linting" not in result.stderr
    assert "parsing error" not in result.stderr
