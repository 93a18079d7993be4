"""What the CLI tests share: a daemon run in a thread, its port, one-line stderr."""

import io
import re
import subprocess
import threading

import pytest

from biometrics.cli import run

from ..helpers import wait_for


def run_in_thread(
    argv: list[str],
) -> tuple[threading.Thread, threading.Event, io.StringIO, list[int]]:
    """Start a long-running command; returns once it printed the port it serves on."""
    out, stop, codes = io.StringIO(), threading.Event(), []
    thread = threading.Thread(target=lambda: codes.append(run(argv, out, stop=stop)))
    thread.start()

    def serving() -> bool:
        assert thread.is_alive(), out.getvalue()
        return "serving http://" in out.getvalue()

    wait_for(serving, f"{argv[0]} to print where it serves", timeout=30)
    return thread, stop, out, codes


def port_of(out: io.StringIO) -> int:
    """The port a command printed it serves on."""
    match = re.search(r"serving http://127.0.0.1:(\d+)/metrics", out.getvalue())
    assert match is not None
    return int(match[1])


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """What a command printed on stderr, asserted to be one line."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def wait_for_line(stream: object, marker: str, proc: subprocess.Popen[str]) -> str:
    """Lines of ``stream`` until one holds ``marker``; the process is killed after 60 s, so
    a hang ends the read (with EOF) instead of the test run."""
    killer = threading.Timer(60, proc.kill)
    killer.start()
    try:
        seen = ""
        while marker not in seen:
            line = stream.readline()  # type: ignore[attr-defined]
            assert line, f"no {marker!r} before the end of output: {seen!r}"
            seen += line
        return seen
    finally:
        killer.cancel()
