"""The real Prometheus (Debian package) scrapes `biometrics serve` and sees the merged values."""

import json
import os
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._serve import Serve, start_workers, wait_for

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    (PROMETHEUS is None or PROMTOOL is None) and not os.environ.get("BIOMETRICS_REQUIRE_PROMTOOL"),
    reason="prometheus missing: scripts/test installs Debian's prometheus",
)
WORKERS, PER_STEP, STEPS = 3, 5, 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    spool = tmp_path / "spool"
    spool.mkdir()
    server = Serve(spool, tmp_path / "state.json").start()
    yield server
    assert server.stop() == 0


@pytest.fixture
def prometheus(tmp_path: Path, serve: Serve) -> Iterator[int]:
    assert PROMETHEUS is not None
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: biometrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{serve.port}']\n"
    )
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    try:
        wait_for(lambda: _ready(port), 60, "prometheus ready")
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def query(port: int, promql: str) -> float | None:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as r:
        result = json.load(r)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_sees_exact_merged_values(serve: Serve, prometheus: int) -> None:
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
            lambda q=promql, e=expected: query(prometheus, q) == e, 60, f"{promql} == {expected}"
        )
    scrapes = query(prometheus, "scrape_samples_scraped")
    assert scrapes is not None and scrapes > 0


def test_promtool_finds_no_error_in_the_page(serve: Serve) -> None:
    """promtool check metrics: no parse error (lint remarks about names are not errors)."""
    workers = start_workers(serve.spool, 2, 1, 3)
    for w in workers:
        assert w.wait(60) == 0
    wait_for(lambda: serve.value("jobs_done_total") == 6, 30, "ingest")
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=serve.metrics(),
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode in (0, 3), result.stderr
    assert "error while linting" not in result.stderr
    assert "parsing error" not in result.stderr
