"""``biometrics with-system-metrics``: the command's usage, exit code and signals."""

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from biometrics.cli import run

from ..helpers import spool_values, wait_for


def wrap(tmp_path: Path, *argv: str, poll: str = "0.05") -> int:
    """``with-system-metrics`` of ``argv``, writing into ``tmp_path/spool``."""
    prefix = str(tmp_path / "spool" / "wrapped.")
    (tmp_path / "spool").mkdir(exist_ok=True)
    return run(["with-system-metrics", "--poll-in-seconds", poll, "--prefix", prefix, "--",
                *argv], io.StringIO())  # fmt: skip


BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


def test_with_system_metrics_emits_monotonic_child_usage(tmp_path: Path) -> None:
    """The command's CPU and faults are sampled while it runs and at exit, never decreasing."""
    assert wrap(tmp_path, sys.executable, "-c", BURN) == 0
    spool = tmp_path / "spool"
    utime = spool_values(spool, "biometrics_sys_utime_total")
    stime = spool_values(spool, "biometrics_sys_stime_total")
    assert len(utime) >= 3, "sampled while running, then once at exit"
    assert utime == sorted(utime), "never decreasing"
    assert utime[-1] + stime[-1] >= 280_000  # 0.3 s of CPU in µs, from getrusage at exit
    assert spool_values(spool, "biometrics_sys_minflt_total")[-1] > 0
    assert spool_values(spool, "biometrics_sys_errors_total")[-1] == 0


def test_exit_code_and_signal_are_passed_back(tmp_path: Path) -> None:
    """The exit code is the command's, or 128+signal when a signal killed it."""
    assert wrap(tmp_path, sys.executable, "-c", "raise SystemExit(3)") == 3
    kill = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert wrap(tmp_path, sys.executable, "-c", kill) == 128 + signal.SIGKILL


def test_sigterm_is_forwarded_to_the_command(tmp_path: Path) -> None:
    """SIGTERM to us reaches the command (128+15), and our handler is removed afterwards."""
    ready = tmp_path / "ready"
    script = f"import pathlib, time\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(60)"

    def signal_us() -> None:
        try:
            wait_for(ready.exists, "the command to start", timeout=30)
        finally:  # signalled even then: a hung command must not hang the test
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    sender = threading.Thread(target=signal_us)
    sender.start()
    started = time.monotonic()
    code = wrap(tmp_path, sys.executable, "-c", script)
    sender.join()
    assert code == 128 + signal.SIGTERM
    assert time.monotonic() - started < 30
    assert signal.getsignal(signal.SIGTERM) == before, "our handler is removed again"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--poll-in-seconds", "0", "--", "true"], "must be > 0"),
        (["--poll-in-seconds", "-1", "--", "true"], "must be > 0"),
        (["--"], "no command given"),
        ([], "no command given"),
    ],
)
def test_bad_invocations_exit_2_with_a_message(
    tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No command or a poll interval <= 0: a usage error (2) that says what was wrong."""
    prefix = str(tmp_path / "w.")
    assert run(["with-system-metrics", "--prefix", prefix, *argv], io.StringIO()) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "code", "message"),
    [
        ("nosuchcmd-biometrics", 127, "nosuchcmd-biometrics: command not found"),
        ("/nonexistent/command", 127, "/nonexistent/command: No such file or directory"),
        ("{tmp}/plain.txt", 126, "{tmp}/plain.txt: Permission denied"),
        ("{tmp}", 126, "{tmp}: Permission denied"),
    ],
)
def test_a_command_that_cannot_run_exits_127_or_126_like_env(
    tmp_path: Path, command: str, code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """127 when not found, 126 when found but not executable, as env, nice and timeout do."""
    (tmp_path / "plain.txt").write_text("not a program\n")
    command, message = (
        command.replace("{tmp}", str(tmp_path)),
        message.replace("{tmp}", str(tmp_path)),
    )
    prefix = str(tmp_path / "w.")
    assert run(["with-system-metrics", "--prefix", prefix, "--", command], io.StringIO()) == code
    assert capsys.readouterr().err == f"biometrics with-system-metrics: {message}\n"


def test_each_run_is_its_own_source(tmp_path: Path) -> None:
    """The run's pid is appended to ``--prefix``: two runs of one job never share a source,
    so overlapping runs are summed, not read as restarts of each other."""
    (tmp_path / "spool").mkdir()
    prefix = str(tmp_path / "spool" / "wrapped.")
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "biometrics", "with-system-metrics", "--prefix", prefix,
             "--", sys.executable, "-c", "pass"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    names = {p.name.rsplit(".", 2)[0] for p in (tmp_path / "spool").glob("wrapped.*.prom")}
    assert len(names) == 2 and all(n.split(".")[1].isdigit() for n in names), names
