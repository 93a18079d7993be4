"""The README's gunicorn recipe under real gunicorn: 4 workers recycled every 50 requests, the
exporter a thread of the master, every request counted exactly, the state written at SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..helpers import answers_ready, get_text, readme_recipe, series_value, wait_for
from ._prometheus import free_port
from ._serve import Serve

REQUESTS = 400
WORKERS = 4
MAX_REQUESTS = 50


def recipe_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment the recipe documents, on free ports, everything under ``tmp_path``."""
    env = {**os.environ, **extra, "HOME": str(tmp_path)}  # gunicorn's control socket: here
    env.pop("XDG_RUNTIME_DIR", None)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def children(pid: int) -> dict[int, int]:
    """Every process whose parent is ``pid`` or one of its descendants: pid -> parent pid."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue  # gone meanwhile
            parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    found: dict[int, int] = {}
    frontier = [pid]
    while frontier:  # bounded: each pid is visited once
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                found[child] = parent
                frontier.append(child)
    return found


def listener_inode(port: int) -> str:
    """The socket inode listening on 127.0.0.1:``port`` (from /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
            return fields[9]
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def holds_socket(pid: int, inode: str) -> bool:
    """Whether process ``pid`` has the socket ``inode`` open."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        names = os.listdir(fds)
    except FileNotFoundError:
        return False  # the process is gone
    for fd in names:
        try:
            if os.readlink(fds / fd) == f"socket:[{inode}]":
                return True
        except FileNotFoundError:
            continue  # closed meanwhile
    return False


def test_master_exporter_counts_recycled_workers_exactly(tmp_path: Path) -> None:
    """400 requests over 4 workers recycled every 50: the master's /metrics shows exactly the
    requests sent, from one process tree (the master, its 4 workers, nothing else); after
    SIGTERM the master's state holds the same total and no segment is left."""
    blocks = readme_recipe("gunicorn")
    (tmp_path / "app.py").write_text(blocks["app.py"])
    spool = tmp_path / "spool"  # not made here: the hooks make it
    port, metrics = free_port(), free_port()
    env = recipe_env(tmp_path, PORT=str(port), BIOMETRICS_SPOOL=str(spool),
                     BIOMETRICS_LISTEN=f"127.0.0.1:{metrics}", BIOMETRICS_INTERVAL="0.2",
                     GUNICORN_CMD_ARGS=f"--max-requests {MAX_REQUESTS} --max-requests-jitter 0 "
                     "--log-level warning")  # fmt: skip
    master = subprocess.Popen(["sh", "-c", "exec " + blocks["run"].strip()], cwd=tmp_path,
                              env=env)  # fmt: skip
    sent = 0
    try:

        def up() -> bool:
            nonlocal sent
            assert master.poll() is None, "gunicorn exited"
            try:
                get_text(f"http://127.0.0.1:{port}/warmup")
            except (urllib.error.URLError, ConnectionError):
                return False
            sent += 1
            return True

        wait_for(up, "gunicorn to answer", timeout=30)
        wait_for(lambda: answers_ready(f"http://127.0.0.1:{metrics}/-/ready"), "the exporter")
        with ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(lambda i: get_text(f"http://127.0.0.1:{port}/r/{i}"),
                                   range(REQUESTS)))  # fmt: skip
        sent += len(bodies)
        assert bodies == ["ok\n"] * REQUESTS

        def page() -> str:
            return get_text(f"http://127.0.0.1:{metrics}/metrics")

        wait_for(lambda: series_value(page(), "app_requests_total"), "every request counted",
                 accept=lambda value: value == sent, timeout=30)  # fmt: skip
        # every lifetime that reached 50 requests was recycled: at least 5 of them here
        recycled = -(-(sent - WORKERS * (MAX_REQUESTS - 1)) // MAX_REQUESTS)
        sources = series_value(page(), "biometrics_exporter_sources")
        assert sources is not None and sources >= 1 + WORKERS + recycled, (sources, recycled)
        # a worker that just served its 50th request may still be handing over to its successor
        tree = wait_for(
            lambda: children(master.pid),
            "exactly the workers, children of the master",
            accept=lambda t: len(t) == WORKERS and set(t.values()) == {master.pid},
        )
        assert holds_socket(master.pid, listener_inode(metrics)), "the master serves /metrics"
        assert not any(holds_socket(pid, listener_inode(metrics)) for pid in tree)
        master.send_signal(signal.SIGTERM)
        assert master.wait(60) == 0
    finally:
        if master.poll() is None:
            master.kill()
            master.wait(10)
    assert not list(spool.glob("gunicorn.*.prom")), "every final segment was consumed"
    serve = Serve(spool, spool / ".biometrics" / "state.json").start()  # the state, reloaded
    try:
        wait_for(lambda: answers_ready(f"http://127.0.0.1:{serve.port}/-/ready"), "the state")
        assert serve.value("app_requests_total") == sent
    finally:
        assert serve.stop() == 0
