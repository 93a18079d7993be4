"""``biometrics top`` in a real terminal (tmux), and the README's ``top`` recipe as written."""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..helpers import readme_recipe, wait_for
from ._serve import Serve

TMUX = "/usr/bin/tmux"
COUNTER = re.compile(r"^  jobs_done_total +(\d[\d.e+]*) +(\d+) *$", re.MULTILINE)


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """The recipe's writer.py emitting every 0.2 s into ``tmp_path/spool``; its environment."""
    spool = tmp_path / "spool"
    blocks = readme_recipe("top")
    (tmp_path / "writer.py").write_text(blocks["writer.py"])
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "BIOMETRICS_SPOOL": str(spool), "BIOMETRICS_INTERVAL": "0.2",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "writer.py"], cwd=tmp_path, env=env)
    try:
        wait_for(lambda: spool.is_dir() and any(spool.glob("worker.*.prom")), "a first segment")
        yield spool, env
    finally:
        proc.terminate()
        proc.wait(30)


def test_live_view_in_tmux_updates_and_quits_on_q(
    tmp_path: Path, writer: tuple[Path, dict[str, str]]
) -> None:
    """The screen shows the writer's counter, its rate moves on, the source is live; q ends
    the view with exit 0 (the recipe's own command, in a 120x40 terminal)."""
    _, env = writer
    watch = readme_recipe("top")["watch"].strip()
    done = tmp_path / "exit"
    tmux = [TMUX, "-L", f"biometrics-top-{os.getpid()}-{tmp_path.name}", "-f", "/dev/null"]
    command = f"{watch}; echo $? > {done}"
    subprocess.run([*tmux, "new-session", "-d", "-x", "120", "-y", "40", "-s", "top",
                    "sh", "-c", command], env=env, cwd=tmp_path, check=True,
                   timeout=30)  # fmt: skip
    try:

        def screen() -> str:
            argv = [*tmux, "capture-pane", "-p", "-t", "top"]
            shown = subprocess.run(argv, env=env, check=False, capture_output=True, text=True,
                                   timeout=10)  # fmt: skip
            return shown.stdout

        def counter(text: str) -> tuple[float, int] | None:
            match = COUNTER.search(text)
            return None if match is None else (float(match[1]), int(match[2]))

        first = wait_for(lambda: counter(screen()), "a rate for jobs_done_total",
                         accept=lambda c: c is not None and c[0] > 0, timeout=30)  # fmt: skip
        assert first is not None
        later = wait_for(lambda: counter(screen()), "the rate and total to move on",
                         accept=lambda c: c is not None and c[1] > first[1] and c != first,
                         timeout=30)  # fmt: skip
        assert later is not None and later[0] > 0
        text = screen()
        assert re.search(r"^  worker\.\S+ +\d+\.\ds +\d+ +live *$", text, re.MULTILINE), text
        assert text.startswith(f"biometrics top {env['BIOMETRICS_SPOOL']}  ")
        assert len(text.splitlines()) <= 40 and max(map(len, text.splitlines())) <= 120
        subprocess.run([*tmux, "send-keys", "-t", "top", "q"], env=env, check=True, timeout=10)
        wait_for(lambda: done.exists() and done.read_text(), "top to exit after q", timeout=30)
        assert done.read_text() == "0\n"
    finally:
        subprocess.run([*tmux, "kill-server"], env=env, capture_output=True, timeout=10,
                       check=False)  # fmt: skip


def test_recipe_once_against_the_spool_and_serve(
    tmp_path: Path, writer: tuple[Path, dict[str, str]]
) -> None:
    """The recipe's plain-text commands: the spool's frame has the counter with a rate, with
    serve consuming the same spool meanwhile; serve's page gives the same counter."""
    spool, env = writer
    serve = Serve(spool, tmp_path / "state.json").start()
    try:
        wait_for(lambda: serve.value("jobs_done_total"), "serve to show the counter")
        once = readme_recipe("top")["once"]
        done = subprocess.run(["sh", "-ec", once], env={**env, "PORT": str(serve.port)},
                              cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              check=False)  # fmt: skip
    finally:
        serve.stop()
    assert done.returncode == 0, done.stderr
    lines = COUNTER.findall(done.stdout)
    assert len(lines) == 2 and all(float(rate) > 0 for rate, _ in lines), done.stdout
    assert f"biometrics top http://127.0.0.1:{serve.port}/metrics  " in done.stdout
