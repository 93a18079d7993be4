"""``with-system-metrics`` as a batch-job wrapper: the job's name, result series and spool."""

import io
import stat
from pathlib import Path

import pytest

from biometrics.cli import run
from biometrics.cli.wrap import job_name

from ..helpers import page_value, series_value


def page(spool: Path) -> str:
    out = io.StringIO()
    assert run(["cat", str(spool)], out) == 0
    return out.getvalue()


def test_the_job_is_named_by_the_prefix_or_the_command() -> None:
    """``/var/spool/biometrics/backup.`` names job ``backup``; no prefix: the command's name."""
    assert job_name("/var/spool/biometrics/backup.", ["tar"]) == "backup"
    assert job_name("spool/nightly-report", ["x"]) == "nightly-report"
    assert job_name(None, ["/usr/local/bin/backup.sh", "-v"]) == "backup.sh"
    assert job_name("spool/", ["/bin/true"]) == "true"


def test_three_runs_of_a_job_through_the_cli(tmp_path: Path) -> None:
    """true, sh -c 'exit 3', sleep 0.2 under one prefix (the spool made by the first run):
    each exit code returned, and the merged page shows the newest run (sleep: 0, >= 0.2 s),
    2 successes and 1 failure."""
    spool = tmp_path / "spool"
    prefix = ["with-system-metrics", "--poll-in-seconds", "0.05", "--prefix", f"{spool}/backup."]
    assert run([*prefix, "--", "true"], io.StringIO()) == 0
    assert run([*prefix, "--", "sh", "-c", "exit 3"], io.StringIO()) == 3
    assert run([*prefix, "--", "sleep", "0.2"], io.StringIO()) == 0
    text = page(spool)
    assert page_value(text, 'biometrics_job_last_exit_code{job_name="backup"}') == 0
    assert 0.2 <= page_value(text, 'biometrics_job_duration_seconds{job_name="backup"}') < 30
    assert page_value(text, 'biometrics_job_runs_total{job_name="backup",result="success"}') == 2
    assert page_value(text, 'biometrics_job_runs_total{job_name="backup",result="failure"}') == 1
    assert series_value(text, 'biometrics_job_last_success_timestamp_seconds{job_name="backup"}')


def test_job_and_mode_options(tmp_path: Path) -> None:
    """``--job`` names the series; ``--mode 664`` makes group-writable segments in a setgid,
    group-writable spool (made by the wrapper)."""
    spool = tmp_path / "shared"
    argv = ["with-system-metrics", "--prefix", f"{spool}/x.", "--job", "report", "--mode", "664"]
    assert run([*argv, "--", "false"], io.StringIO()) == 1
    assert stat.S_IMODE(spool.stat().st_mode) == 0o2775
    segments = list(spool.glob("x.*.prom"))
    assert segments and {stat.S_IMODE(p.stat().st_mode) for p in segments} == {0o664}
    assert page_value(page(spool), 'biometrics_job_last_exit_code{job_name="report"}') == 1


def test_a_command_not_found_is_reported_as_a_failed_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 127 as before, and the run is on the page: exit code 127, one failure."""
    spool = tmp_path / "spool"
    argv = ["with-system-metrics", "--prefix", f"{spool}/job.", "--", "nosuchcmd-biometrics"]
    assert run(argv, io.StringIO()) == 127
    assert "command not found" in capsys.readouterr().err
    text = page(spool)
    assert page_value(text, 'biometrics_job_last_exit_code{job_name="job"}') == 127
    assert page_value(text, 'biometrics_job_runs_total{job_name="job",result="failure"}') == 1


@pytest.mark.parametrize("mode", ["9", "abc", "17777"])
def test_a_bad_mode_is_a_usage_error(
    tmp_path: Path, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not octal, or beyond 7777: exit 2 naming the value, nothing run."""
    argv = ["with-system-metrics", "--prefix", f"{tmp_path}/j.", "--mode", mode, "--", "true"]
    with pytest.raises(SystemExit) as exited:
        run(argv, io.StringIO())
    assert exited.value.code == 2
    assert repr(mode) in capsys.readouterr().err
    assert not list(tmp_path.glob("j.*"))
