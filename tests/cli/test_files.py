"""``biometrics cat``, ``check`` and ``backfill``, run in-process; Ctrl-C in a subprocess."""

import array
import fcntl
import io
import signal
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from biometrics import Collector, Counter
from biometrics.cli import run
from biometrics.prometheus import Options, SegmentEmitter

from ..helpers import wait_for

T0 = 1_700_000_000_000


def emit_two_sources(spool: Path) -> None:
    """Sources ``a`` and ``b``, each counting 1 (2) twice, one second apart."""
    spool.mkdir()
    for name, n in (("a", 1), ("b", 2)):
        c = Collector()
        jobs = c.register(Counter("jobs.done_total"))
        with SegmentEmitter(Options(prefix=spool / f"{name}.")) as e:
            for step in range(2):
                jobs.count(n)
                c.emit(e, T0 + step * 1000)


def test_cat_merged_raw_and_openmetrics(tmp_path: Path) -> None:
    """cat sums the sources; --raw keeps every sample with its time; OpenMetrics has seconds."""
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


def test_check_exit_codes(tmp_path: Path) -> None:
    """check exits 0 on good segments, 1 listing file:line on a bad one."""
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
    """backfill writes OpenMetrics atomically and warns when sources share a series."""
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
    fixtures = str(Path(__file__).parent.parent / "fixtures")
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
    proc = subprocess.Popen([sys.executable, "-m", "biometrics", *argv, str(segment)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    try:
        waiting = array.array("i", [0])

        def output_waiting() -> int:
            assert proc.poll() is None, proc.returncode
            assert proc.stdout is not None
            fcntl.ioctl(proc.stdout.fileno(), termios.FIONREAD, waiting)
            return waiting[0]

        # Output has begun: the command is running, not starting.
        wait_for(output_waiting, f"{argv[0]}'s first output", timeout=60, every=0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 130
    assert err == f"biometrics {argv[0]}: interrupted\n"
