"""The CLI's process and file commands, run in-process."""

import array
import fcntl
import io
import os
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from biometrics import Collector, Counter
from biometrics.cli import run
from biometrics.prometheus import Emitter, Options, Sample, parse

T0 = 1_700_000_000_000


def values(spool: Path, name: str) -> list[float]:
    out: list[float] = []
    for path in sorted(spool.glob("*.prom")):
        with open(path, "rb") as f:
            out += [s.value for s in parse(f) if isinstance(s, Sample) and s.name == name]
    return out


def wrap(tmp_path: Path, *argv: str, poll: str = "0.05") -> int:
    prefix = str(tmp_path / "spool" / "wrapped.")
    (tmp_path / "spool").mkdir(exist_ok=True)
    return run(["with-system-metrics", "--poll-in-seconds", poll, "--prefix", prefix, "--",
                *argv], io.StringIO())  # fmt: skip


BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


def test_with_system_metrics_emits_monotonic_child_usage(tmp_path: Path) -> None:
    assert wrap(tmp_path, sys.executable, "-c", BURN) == 0
    spool = tmp_path / "spool"
    utime = values(spool, "biometrics_sys_utime_total")
    stime = values(spool, "biometrics_sys_stime_total")
    assert len(utime) >= 3, "sampled while running, then once at exit"
    assert utime == sorted(utime), "never decreasing"
    assert utime[-1] + stime[-1] >= 280_000  # 0.3 s of CPU in µs, from getrusage at exit
    assert values(spool, "biometrics_sys_minflt_total")[-1] > 0
    assert values(spool, "biometrics_sys_errors_total")[-1] == 0


def test_exit_code_and_signal_are_passed_back(tmp_path: Path) -> None:
    assert wrap(tmp_path, sys.executable, "-c", "raise SystemExit(3)") == 3
    kill = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert wrap(tmp_path, sys.executable, "-c", kill) == 128 + signal.SIGKILL


def test_sigterm_is_forwarded_to_the_command(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = f"import pathlib, time\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(60)"

    def signal_us() -> None:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
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
    prefix = str(tmp_path / "w.")
    assert run(["with-system-metrics", "--prefix", prefix, *argv], io.StringIO()) == 2
    assert message in capsys.readouterr().err


def emit_two_sources(spool: Path) -> None:
    spool.mkdir()
    for name, n in (("a", 1), ("b", 2)):
        c = Collector()
        jobs = c.register(Counter("jobs.done_total"))
        with Emitter(Options(prefix=spool / f"{name}.")) as e:
            for step in range(2):
                jobs.count(n)
                c.emit(e, T0 + step * 1000)


def test_cat_merged_raw_and_openmetrics(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    emit_two_sources(spool)
    out = io.StringIO()
    assert run(["cat", str(spool)], out) == 0
    assert "jobs_done_total 6\n" in out.getvalue()
    out = io.StringIO()
    assert run(["cat", "--raw", "--source-label", "src", str(spool)], out) == 0
    assert f'jobs_done_total{{src="b"}} 4 {T0 + 1000}\n' in out.getvalue()
    out = io.StringIO()
    assert run(["cat", "--raw", "--openmetrics", str(spool / f"a.{T0}.prom")], out) == 0
    assert f"jobs_done_total 2 {(T0 + 1000) // 1000}\n" in out.getvalue()
    assert out.getvalue().endswith("# EOF\n")


@pytest.mark.parametrize(
    "argv", [["cat"], ["cat", "--raw"], ["check"], ["backfill", "--out", "x.om"]]
)
def test_a_missing_path_is_an_error_naming_it(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo must fail a CI check (exit 2), not pass it on nothing; the path is named."""
    gone = f"{tmp_path / 'gone'}/"
    assert run([*argv, gone], io.StringIO()) == 2
    assert capsys.readouterr().err == f"biometrics {argv[0]}: {gone}: no such file or directory\n"


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


def test_check_exit_codes(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    emit_two_sources(spool)
    out = io.StringIO()
    assert run(["check", str(spool)], out) == 0
    assert out.getvalue() == ""
    (spool / f"c.{T0}.prom").write_text('ok 1\nbad{x="1" 2\n')
    assert run(["check", str(spool)], out) == 1
    assert out.getvalue().startswith(f"{spool / f'c.{T0}.prom'}:2: ")


def test_backfill_writes_openmetrics_in_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = tmp_path / "spool"
    emit_two_sources(spool)
    target = tmp_path / "out.om"
    assert run(["backfill", str(spool), "--out", str(target)], io.StringIO()) == 0
    err = capsys.readouterr().err
    assert "more than one source" in err and "--source-label" in err
    assert "samples in" in err
    assert run(["backfill", str(spool), "--out", str(target), "--source-label", "src"],
               io.StringIO()) == 0  # fmt: skip
    text = target.read_text()
    assert text.endswith("# EOF\n")
    assert f'jobs_done_total{{src="a"}} 1 {T0 // 1000}\n' in text
    assert "more than one source" not in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".backfill")] == []


def test_tools_read_the_rust_crates_files() -> None:
    """The Rust crate's counter ``x`` comes out as the OpenMetrics counter ``x``, ``x_total``."""
    fixtures = str(Path(__file__).parent / "fixtures")
    out = io.StringIO()
    assert run(["check", fixtures], out) == 0
    out = io.StringIO()
    assert run(["cat", "--raw", "--openmetrics", fixtures], out) == 0
    assert "# TYPE biometrics_collector_emit_counter counter\n" in out.getvalue()
    assert "biometrics_collector_emit_counter_total 4 1726547193\n" in out.getvalue()
    assert out.getvalue().endswith("# EOF\n")


def test_cat_refuses_source_label_without_raw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The merged page has no sources: an option that would be ignored is refused instead."""
    spool = tmp_path / "spool"
    emit_two_sources(spool)
    out = io.StringIO()
    assert run(["cat", "--source-label", "src", str(spool)], out) == 2
    err = capsys.readouterr().err
    assert "--source-label only applies to --raw" in err and len(err.splitlines()) == 1
    assert out.getvalue() == ""


def test_backfill_out_dash_writes_to_standard_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out -`` is stdout, as for every Unix tool; no file named ``-`` appears."""
    spool = tmp_path / "spool"
    emit_two_sources(spool)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert run(["backfill", str(spool), "--out", "-", "--source-label", "src"], out) == 0
    assert f'jobs_done_total{{src="a"}} 1 {T0 // 1000}\n' in out.getvalue()
    assert out.getvalue().endswith("# EOF\n")
    assert not (tmp_path / "-").exists()
    assert "written to standard output" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["cat"], ["cat", "--raw"], ["check"], ["backfill", "--out", "-"]])
def test_ctrl_c_ends_the_file_tools_with_one_line_and_exit_130(
    tmp_path: Path, argv: list[str]
) -> None:
    """A tool stuck writing into a pipe nobody reads is interrupted: one line, no traceback.

    Its output (over 500 KiB) cannot fit the pipe, so it cannot finish before the signal.
    """
    segment = tmp_path / f"w.{T0}.prom"
    bad = "bad{" if argv == ["check"] else ""  # check prints problems, the others samples
    segment.write_text("".join(f'{bad}m_total{{i="{i}"}} 1 {T0}\n' for i in range(20_000)))
    proc = subprocess.Popen([sys.executable, "-m", "biometrics.cli", *argv, str(segment)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    try:
        waiting = array.array("i", [0])
        deadline = time.monotonic() + 60
        while waiting[0] == 0:  # output has begun: the command is running, not starting
            assert proc.poll() is None and time.monotonic() < deadline, proc.returncode
            time.sleep(0.01)
            fcntl.ioctl(proc.stdout.fileno(), termios.FIONREAD, waiting)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 130
    assert err == f"biometrics {argv[0]}: interrupted\n"
