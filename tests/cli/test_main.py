"""``biometrics.cli``'s run and main: version, help, usage errors, Ctrl-C, one table."""

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from biometrics import __version__
from biometrics.cli import main, run

from ._helpers import wait_for_line


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version and exits 0."""
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"biometrics {__version__}"


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """--help and no arguments both describe the tool."""
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "demo" in capsys.readouterr().out
    out = io.StringIO()
    assert run([], out) == 0
    assert "usage: biometrics" in out.getvalue()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "x", "--forget-after", "soon"], "is not a duration"),
        (["serve", "x", "--forget-after", "0s"], "is too short"),
        (["serve", "x", "--forget-after", "15s"], "is too short"),
        (["serve", "x", "--listen", "nowhere"], "has no port"),
        (["serve", "x", "--gauge", "temp=avg"], "is not PATTERN=MODE"),
        (["ship", "x", "--url", "http://h/", "--label", "novalue"], "is not NAME=VALUE"),
        (["ship", "x"], "the following arguments are required: --url"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], message: str,
                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """Malformed options are usage errors that say what was wrong, in one line."""
    with pytest.raises(SystemExit) as info:
        run(argv, io.StringIO())
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("command", ["serve", "demo", "ship"])
def test_ctrl_c_ends_daemons_with_one_line_and_exit_130(tmp_path: Path, command: str) -> None:
    """SIGINT to the process group, as a terminal sends it: a clean stop, no traceback, 130."""
    argv = [sys.executable, "-m", "biometrics", command]
    if command == "serve":
        argv += [str(tmp_path), "--listen", "127.0.0.1:0", "--log-level", "error"]
    elif command == "demo":
        argv += ["--workers", "2", "--listen", "127.0.0.1:0", "--log-level", "error"]
    else:
        argv += [str(tmp_path), "--url", "http://127.0.0.1:1/", "--log-level", "info"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        if command == "ship":
            before = wait_for_line(proc.stderr, "event=shipping", proc)
        else:
            before = ""
            wait_for_line(proc.stdout, "serving http://", proc)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    err = before + err
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == f"biometrics {command}: interrupted"
