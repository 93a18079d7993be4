"""kill -9 of the daemon at any moment loses nothing and double-counts nothing."""

import random
import time
from pathlib import Path

from ..helpers import wait_for
from ._serve import Serve, start_workers

WORKERS, PER_STEP, STEPS = 4, 3, 150


def test_kill9_repeatedly_then_exact_totals(tmp_path: Path) -> None:
    """Workers emit while the daemon is killed -9 five times; the final sums are exact."""
    spool, state = tmp_path / "spool", tmp_path / "state.json"
    spool.mkdir()
    workers = start_workers(spool, WORKERS, PER_STEP, STEPS)
    rng = random.Random(1)
    kills = 0
    serve = Serve(spool, state).start()
    try:
        while any(w.poll() is None for w in workers) and kills < 5:
            time.sleep(rng.uniform(0.05, 0.4))
            serve.kill()
            kills += 1
            serve = Serve(spool, state).start()
        for w in workers:
            assert w.wait(60) == 0
        expected = WORKERS * PER_STEP * STEPS
        wait_for(lambda: serve.value("jobs_done_total") == expected, "exact total", timeout=30)
        wait_for(lambda: not list(spool.glob("*.prom")), "spool drained", timeout=30)
        assert serve.value("work_seconds_count") == expected
        assert serve.value("work_size_count") == expected
        assert serve.value("biometrics_exporter_quarantined_segments_total") == 0
        serve.kill()
        serve = Serve(spool, state).start()  # once more, after the spool is empty
        wait_for(lambda: serve.value("jobs_done_total") == expected, "state reloaded", timeout=30)
    finally:
        for w in workers:
            w.kill()
        assert serve.stop() == 0
    assert kills == 5
