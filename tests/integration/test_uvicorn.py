"""The README's uvicorn recipe under real uvicorn --workers 3 beside `biometrics serve`: every
request counted, exactly, once uvicorn has stopped (each worker's last emission included)."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..helpers import answers_ready, get_text, readme_recipe, series_value, wait_for
from ._prometheus import free_port
from .test_gunicorn_config import children, recipe_env

REQUESTS = 300
WORKERS = 3


def start(block: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """One recipe command, exec'd by sh (so its pid is the command's)."""
    return subprocess.Popen(["sh", "-c", "exec " + block.strip()], cwd=cwd, env=env)


def test_workers_final_emissions_reach_serve_exactly(tmp_path: Path) -> None:
    """Requests over 3 spawned workers (interval 10 s, so the last ones are counted only by the
    final emissions): after SIGTERM to uvicorn, serve's page shows exactly the requests sent,
    from 3 sources, and the spool holds no segment of theirs."""
    blocks = readme_recipe("uvicorn")
    (tmp_path / "app.py").write_text(blocks["app.py"])
    spool = tmp_path / "spool"
    port, metrics = free_port(), free_port()
    env = recipe_env(tmp_path, PORT=str(port), METRICS_PORT=str(metrics),
                     BIOMETRICS_SPOOL=str(spool))  # fmt: skip
    serve = start(blocks["serve"], tmp_path, env)
    app: subprocess.Popen[bytes] | None = None
    sent = 0
    try:
        wait_for(lambda: answers_ready(f"http://127.0.0.1:{metrics}/-/ready"), "serve", timeout=30)
        app = start(blocks["run"], tmp_path, env)

        def up() -> bool:
            nonlocal sent
            assert app is not None and app.poll() is None, "uvicorn exited"
            try:
                get_text(f"http://127.0.0.1:{port}/warmup")
            except (urllib.error.URLError, ConnectionError):
                return False
            sent += 1
            return True

        wait_for(up, "uvicorn to answer", timeout=30)
        wait_for(lambda: len(children(app.pid)) >= WORKERS, "the workers", timeout=30)
        with ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(lambda i: get_text(f"http://127.0.0.1:{port}/r/{i}"),
                                   range(REQUESTS)))  # fmt: skip
        sent += len(bodies)
        assert bodies == ["ok\n"] * REQUESTS
        app.send_signal(signal.SIGTERM)
        assert app.wait(60) == 0

        def page() -> str:
            return get_text(f"http://127.0.0.1:{metrics}/metrics")

        wait_for(lambda: series_value(page(), "app_requests_total"), "the final emissions",
                 accept=lambda value: value == sent, timeout=30)  # fmt: skip
        assert series_value(page(), "biometrics_exporter_sources") == WORKERS
        wait_for(lambda: not list(spool.glob("uvicorn.*.prom")), "every segment consumed")
        assert series_value(page(), "app_requests_total") == sent
    finally:
        for proc in (app, serve):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                if proc.wait(30) is None:  # pragma: no cover - wait raises on timeout
                    proc.kill()
    assert serve.returncode == 0
    assert os.path.exists(spool / ".biometrics" / "state.json")
