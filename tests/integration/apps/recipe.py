"""A README recipe written into a directory and its ``run`` block started, as a user would.

The ``run`` block runs under ``sh`` in a session of its own, so stopping it stops everything it
started (the server, and ``biometrics serve`` when the recipe puts it in the background).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.error
from pathlib import Path

from ...helpers import get_text, readme_recipe, scrape, series_value, wait_for


class Recipe:
    """README recipe ``name`` in ``directory``, with ``env`` added to the environment."""

    def __init__(self, name: str, directory: Path, env: dict[str, str]) -> None:
        self.blocks = readme_recipe(name)
        self.directory = directory
        for block, code in self.blocks.items():
            if block != "run":
                (directory / block).write_text(code)
        (directory / "run.sh").write_text(self.blocks["run"])
        bin_dir = os.path.dirname(sys.executable)
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env}
        self.log = directory / "run.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Recipe:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["sh", "run.sh"], cwd=self.directory, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    def alive(self) -> None:
        """Fail at once, with the log, if the recipe's shell has ended."""
        assert self.proc is not None
        assert self.proc.poll() is None, self.log.read_text()[-3000:]

    def answers(self, url: str) -> bool:
        """Whether ``url`` answers 200 now."""
        self.alive()
        try:
            get_text(url, timeout=5)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
        return True

    def wait_up(self, url: str) -> None:
        wait_for(lambda: self.answers(url), f"{url} to answer", timeout=60, every=0.1)

    def stop(self) -> None:
        """SIGTERM to everything the recipe started, SIGKILL if it lingers."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass
        with contextlib.suppress(ProcessLookupError):  # a background `serve` may outlive it
            os.killpg(self.proc.pid, signal.SIGKILL)


def get_status(url: str) -> int:
    """The status GET ``url`` answers (errors included)."""
    try:
        get_text(url)
    except urllib.error.HTTPError as e:
        return e.code
    return 200


def page_values(port: int, series: list[str]) -> dict[str, float | None]:
    """Each of ``series`` on the /metrics page of 127.0.0.1:``port`` (None where absent)."""
    page = scrape(port)
    return {s: series_value(page, s) for s in series}
