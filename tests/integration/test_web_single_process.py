"""README's single-process recipe as written: `start_http_server` in a worker, no spool.

The page is scraped with urllib, read by our strict parser (exact values) and by promtool
(both formats' text: 0.0.4 and, when asked by ``Accept``, OpenMetrics).
"""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

from biometrics.prometheus import OPENMETRICS_CONTENT_TYPE, Sample, parse

from ..helpers import scrape, wait_for
from ._prometheus import PROMTOOL, free_port, needs_prometheus
from .apps.recipe import Recipe

JOBS = 250


def samples(page: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, s.labels): s.value
        for s in parse(page.encode().splitlines(keepends=True), strict=True)
        if isinstance(s, Sample)
    }


@needs_prometheus
def test_single_process_recipe_serves_exact_values_promtool_accepts(tmp_path: Path) -> None:
    port = free_port()
    recipe = Recipe("single-process", tmp_path, {"METRICS_PORT": str(port), "JOBS": str(JOBS)})
    try:
        recipe.start()
        recipe.wait_up(f"http://127.0.0.1:{port}/metrics")

        def done() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            recipe.alive()
            return samples(scrape(port))

        values = wait_for(
            done, "every job counted", accept=lambda v: v.get(("jobs_done_total", ())) == JOBS
        )
        assert values[("job_seconds_count", ())] == JOBS
        assert values[("job_seconds_bucket", (("le", "+Inf"),))] == JOBS
        assert values[("process_resident_memory_bytes", ())] > 0
        assert values[("process_start_time_seconds", ())] > 0
        page = scrape(port)
        assert PROMTOOL is not None
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=page, capture_output=True,
                               text=True, timeout=60, check=False)  # fmt: skip
        assert check.returncode in (0, 3), check.stderr  # 3: lint warnings only
        assert "error while linting" not in check.stderr
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0, text/plain;q=0.5"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.headers["Content-Type"] == OPENMETRICS_CONTENT_TYPE
            openmetrics = r.read().decode()
        assert openmetrics.endswith("# EOF\n")
        assert f"jobs_done_total {JOBS}\n" in openmetrics
    finally:
        recipe.stop()
