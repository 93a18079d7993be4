"""The example app under real gunicorn, 4 forked workers (--preload): every request is counted."""

import os
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ..helpers import get_text, wait_for
from ._prometheus import free_port
from ._serve import Serve

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REQUESTS = 400


def get(port: int, path: str) -> str:
    """What the app answers to GET ``path``."""
    return get_text(f"http://127.0.0.1:{port}{path}")


def test_merged_counts_equal_requests_sent(tmp_path: Path) -> None:
    """Requests spread over several forked workers, none answered by the master: serve's merged
    counter equals the requests sent, periodically and again after the workers' final emission.
    """
    pytest.importorskip("gunicorn")
    spool = tmp_path / "spool"
    spool.mkdir()
    serve = Serve(spool, tmp_path / "state.json").start()
    port = free_port()
    env = {**os.environ, "BIOMETRICS_SPOOL": str(spool), "BIOMETRICS_INTERVAL": "0.2"}
    argv = [sys.executable, "-m", "gunicorn", "--preload", "--workers", "4",
            "--bind", f"127.0.0.1:{port}", "--chdir", str(EXAMPLES), "--log-level", "warning",
            "gunicorn_app:app"]  # fmt: skip
    app = subprocess.Popen(argv, env=env, cwd=tmp_path)
    sent = 0
    try:

        def up() -> bool:
            nonlocal sent
            try:
                get(port, "/warmup")
            except (urllib.error.URLError, ConnectionError):
                return False
            sent += 1
            return True

        wait_for(up, "gunicorn to answer", timeout=30)
        with ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(lambda i: get(port, f"/r/{i}"), range(REQUESTS)))
        sent += len(bodies)
        pids = {body.split()[-1] for body in bodies}
        assert len(pids) >= 2, "requests were spread over several forked workers"
        assert str(app.pid) not in pids
        wait_for(
            lambda: serve.value("app_requests_total") == sent, "periodic emissions", timeout=30
        )
        app.terminate()  # workers exit through atexit: their last emission
        assert app.wait(30) == 0
        wait_for(
            lambda: serve.value("app_request_seconds_count") == sent, "final emissions", timeout=30
        )
        assert serve.value("app_requests_total") == sent
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)
        assert serve.stop() == 0
