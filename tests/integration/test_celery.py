"""Real Celery prefork workers on a real redis: every task's count reaches the merged page.

The pool's children leave by ``os._exit`` (no atexit), both when recycled
(``--max-tasks-per-child``) and at a warm shutdown; the README recipe's ``instrument()`` makes
each write its last counts and ``# END`` on the way out.  The last test disconnects that one
hook and shows what it is worth: the children's counts are lost.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from biometrics.files import merged_page

from ..helpers import answers_ready, page_value, readme_recipe, scrape, series_value, wait_for
from ._prometheus import free_port

TASKS = 300
PER_CHILD = 10
WORKER_SECONDS = 120.0
"""Bound on one worker's run (start, TASKS tasks, warm shutdown): a few seconds normally."""
NO_FINAL_HOOK = """
from celery import signals

signals.worker_process_shutdown.disconnect(
    dispatch_uid="biometrics.integrations.celery.worker_process_shutdown"
)
"""


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[str]:
    """A throw-away redis-server on a free loopback port: its URL (no database number)."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is missing: apt-get install -y redis-server"
    port = free_port()
    workdir = tmp_path / "redis"
    workdir.mkdir()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--dir", str(workdir), "--logfile", str(workdir / "redis.log")]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=workdir)
    try:
        wait_for(lambda: proc.poll() is None and redis_answers(port), "redis to answer PING")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def environment(spool: Path, redis_url: str, **more: str) -> dict[str, str]:
    """What the recipe reads: the spool, the broker and the result backend."""
    return {
        **os.environ,
        "BIOMETRICS_SPOOL": str(spool),
        "CELERY_BROKER_URL": f"{redis_url}/0",
        "CELERY_RESULT_BACKEND": f"{redis_url}/1",
        **more,
    }


def start(command: str, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """One of the recipe's one-line commands, exec'd by bash: the pid is the command's own."""
    assert "\n" not in command.strip(), command
    with log.open("wb") as out:
        return subprocess.Popen(
            ["bash", "-c", f"exec {command.strip()}"],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def run_tasks(redis_url: str, count: int) -> list[int]:
    """Send ``count`` ``app.click`` tasks as a client does and wait for every result."""
    client = Celery("client", broker=f"{redis_url}/0", backend=f"{redis_url}/1",
                    set_as_current=False)  # fmt: skip
    try:
        results = [client.send_task("app.click", args=(i,)) for i in range(count)]
        return [int(r.get(timeout=WORKER_SECONDS)) for r in results]
    finally:
        client.close()


def shut_down(
    worker: subprocess.Popen[bytes], log: Path, how: signal.Signals = signal.SIGTERM
) -> None:
    """``how`` to the main process, as a supervisor sends it (SIGTERM: a warm shutdown, SIGQUIT:
    a cold one); it must exit cleanly.
    """
    worker.send_signal(how)
    try:
        code = worker.wait(WORKER_SECONDS)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(10)
        raise
    assert code == 0, log.read_text()[-3000:]


def run_worker(
    tmp_path: Path,
    redis_url: str,
    command: str,
    *,
    app: str | None = None,
    how: signal.Signals = signal.SIGTERM,
) -> tuple[Path, int]:
    """The recipe's app (or ``app``) under ``command``; TASKS tasks; shut down by ``how``.

    Returns the spool and the worker's main pid.
    """
    blocks = readme_recipe("celery")
    spool = tmp_path / "spool"
    spool.mkdir()
    (tmp_path / "app.py").write_text(app if app is not None else blocks["app.py"])
    log = tmp_path / "worker.log"
    worker = start(command, tmp_path, environment(spool, redis_url), log)
    try:
        assert run_tasks(redis_url, TASKS) == list(range(TASKS))
        shut_down(worker, log, how)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    return spool, worker.pid


def sources(spool: Path) -> dict[str, list[Path]]:
    """Each writer's segments (``celery.<host>.<pid>.``), oldest first."""
    found: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(spool.glob("*.prom"), key=lambda p: int(p.name.split(".")[-2])):
        found[path.name.rsplit(".", 2)[0]].append(path)
    return dict(found)


def merged(spool: Path) -> str:
    page, problems = merged_page([spool])
    assert problems == []
    return page


def test_recipe_counts_every_task_across_recycled_children(tmp_path: Path, redis: str) -> None:
    """The README recipe as written: prefork, 2 children, each recycled after 10 tasks.

    Every child that ran tasks left by ``os._exit``; ``serve`` still shows all TASKS clicks,
    once each, and every source ended (no live-only gauge of a running process is left).
    """
    blocks = readme_recipe("celery")
    assert "--max-tasks-per-child 10" in blocks["worker"]
    spool = tmp_path / "spool"
    spool.mkdir()
    (tmp_path / "app.py").write_text(blocks["app.py"])
    port = free_port()
    env = environment(spool, redis, PORT=str(port))
    serve = start(blocks["serve"], tmp_path, env, tmp_path / "serve.log")
    worker_log = tmp_path / "worker.log"
    worker = start(blocks["worker"], tmp_path, env, worker_log)
    try:
        wait_for(lambda: answers_ready(f"http://127.0.0.1:{port}/-/ready"), "serve to be ready")
        assert run_tasks(redis, TASKS) == list(range(TASKS))
        shut_down(worker, worker_log)
        page = wait_for(
            lambda: scrape(port),
            f"{TASKS} clicks on serve's page",
            accept=lambda text: series_value(text, "app_clicks_total") == TASKS,
            timeout=30,
        )
        assert page_value(page, 'celery_tasks_total{state="SUCCESS",task="app.click"}') == TASKS
        assert page_value(page, 'celery_task_runtime_seconds_count{task="app.click"}') == TASKS
        assert series_value(page, 'celery_tasks_total{state="FAILURE",task="app.click"}') is None
        # The main process and at least TASKS / PER_CHILD children wrote (each ran <= 10).
        assert page_value(page, "biometrics_exporter_sources") >= 1 + TASKS // PER_CHILD
        assert series_value(page, "process_threads") is None, "every source wrote # END"
        assert "biometrics_celery_hook_failure_total" not in page
    finally:
        for proc in (worker, serve):
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGQUIT], ids=["warm", "cold"])
def test_children_alive_until_pool_shutdown_write_their_counts(
    tmp_path: Path, redis: str, how: signal.Signals
) -> None:
    """No recycling: the two children live from start to the warm (or cold) shutdown, then
    leave by ``os._exit``; each one's last segment ends with ``# END`` and holds its counts.
    """
    worker = readme_recipe("celery")["worker"].replace(f"--max-tasks-per-child {PER_CHILD}", "")
    assert "max-tasks" not in worker
    spool, main_pid = run_worker(tmp_path, redis, worker, how=how)
    page = merged(spool)
    assert page_value(page, "app_clicks_total") == TASKS
    assert page_value(page, 'celery_tasks_total{state="SUCCESS",task="app.click"}') == TASKS
    writers = sources(spool)
    assert len(writers) == 3, sorted(writers)  # the main process and its two children
    assert any(name.endswith(f".{main_pid}") for name in writers)
    for name, segments in writers.items():
        assert segments[-1].read_text().rstrip().endswith("# END"), name


def test_without_the_shutdown_hook_the_children_counts_are_lost(tmp_path: Path, redis: str) -> None:
    """The same recipe with ``worker_process_shutdown`` disconnected: the children's counts
    since their last interval (10 s, longer than any child here lives) never reach the page.
    """
    app = readme_recipe("celery")["app.py"] + NO_FINAL_HOOK
    spool, main_pid = run_worker(tmp_path, redis, readme_recipe("celery")["worker"], app=app)
    counted = series_value(merged(spool), "app_clicks_total") or 0
    print(f"without the hook: {counted:g} of {TASKS} clicks reached the page")
    assert counted < TASKS
    writers = sources(spool)
    assert any(name.endswith(f".{main_pid}") for name in writers), "the main process ended"
