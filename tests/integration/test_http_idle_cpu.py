"""An idle `biometrics serve` must not burn CPU: it sleeps until a socket or a deadline wakes it.

The regression this guards against: waitress turned a 0.2 s loop timeout into 0 and spun a
whole core.  CPU time is read from /proc for the real process, all threads included.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

WINDOW = 3.0  # seconds measured
LIMIT = 3.0  # percent of one core; the goal is <= 1%, the rest is CI noise margin


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (every thread) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_idle_serve_uses_under_3_percent_of_a_core(tmp_path: Path) -> None:
    """Empty spool, no scrapes, default --poll-interval (100 ms): measured < 3% (goal 1%)."""
    spool = tmp_path / "spool"
    spool.mkdir()
    argv = [sys.executable, "-m", "biometrics.cli", "serve", str(spool)]
    argv += ["--listen", "127.0.0.1:0", "--state", str(tmp_path / "state.json")]
    argv += ["--log-level", "warning"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r":(\d+)/metrics", line)
        assert match is not None, f"serve printed {line!r}"
        port = int(match[1])
        deadline = time.monotonic() + 10
        while not ready(port):
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.05)
        time.sleep(0.3)  # let start-up work (imports, first passes) finish
        cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(WINDOW)
        cpu1, wall1 = cpu_seconds(proc.pid), time.monotonic()
        percent = 100 * (cpu1 - cpu0) / (wall1 - wall0)
        print(f"idle serve: {percent:.2f}% of a core over {wall1 - wall0:.1f}s")
        assert percent < LIMIT, f"idle serve used {percent:.1f}% of a core"
        assert proc.poll() is None
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
