"""``supervise(job=...)``: a run's exit code, duration and last success, as serve merges them."""

import sys
import time
from pathlib import Path

import pytest

from biometrics.exporter.store import Store
from biometrics.prometheus import Options, Parse, source_of
from biometrics.runtime import supervise
from biometrics.runtime.supervise import JobResult, JobRun, exit_code_for, job_sensors
from biometrics.system import SystemSensors

from ..helpers import page_value, series_value, spool_samples

JOB = '{job_name="nightly"}'


def run_job(spool: Path, *argv: str, at_ms: int | None = None, poll: float = 0.05) -> int:
    """One run of ``argv`` as job ``nightly``, a source of its own (as the CLI's pid makes it).

    ``at_ms`` fixes every stamp of the run (the clock), so runs have a known order.
    """
    runs = len({p.name.split(".")[1] for p in spool.glob("nightly.*.prom")})
    options = Options(prefix=spool / f"nightly.{runs}.")
    clock = None if at_ms is None else (lambda: at_ms)
    if clock is None:
        return supervise(list(argv), poll_seconds=poll, options=options, job="nightly")
    return supervise(list(argv), poll_seconds=poll, options=options, job="nightly", clock=clock)


def merged(spool: Path, forget: tuple[int, int] | None = None) -> str:
    """The page ``serve`` shows for the spool's segments; ``forget``: (now_ms, after_ms)."""
    store = Store()
    for path in sorted(spool.glob("*.prom")):
        found = source_of(path.name)
        assert found is not None
        with path.open("rb") as f:
            store.ingest_segment(found[0], Parse(f, path=str(path)), found[1])
    if forget is not None:
        store.forget_stale(*forget)
    return store.render()


def job_lines(page: str) -> list[str]:
    return [line for line in page.splitlines() if line.startswith("biometrics_job_")]


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["true"], 0),
        (["false"], 1),
        (["sh", "-c", "exit 3"], 3),
        (["sh", "-c", "kill -9 $$"], 128 + 9),
    ],
)
def test_a_run_reports_its_exit_code_and_result(tmp_path: Path, argv: list[str], code: int) -> None:
    """The exit code (128+N for a signal) and one run counted under its result, the other 0."""
    assert run_job(tmp_path, *argv, at_ms=1_700_000_000_000) == code
    page = merged(tmp_path)
    assert page_value(page, f"biometrics_job_last_exit_code{JOB}") == code
    success = page_value(page, 'biometrics_job_runs_total{job_name="nightly",result="success"}')
    failure = page_value(page, 'biometrics_job_runs_total{job_name="nightly",result="failure"}')
    assert (success, failure) == ((1, 0) if code == 0 else (0, 1))
    last_success = series_value(page, f"biometrics_job_last_success_timestamp_seconds{JOB}")
    assert last_success == (1_700_000_000.0 if code == 0 else None)
    assert "# TYPE biometrics_job_duration_seconds gauge" in page


def test_duration_is_the_wall_time_of_the_run(tmp_path: Path) -> None:
    """A 0.3 s sleep lasts at least 0.3 s and (generously) under 10 s."""
    began = time.monotonic()
    assert run_job(tmp_path, "sleep", "0.3") == 0
    took = time.monotonic() - began
    duration = page_value(merged(tmp_path), f"biometrics_job_duration_seconds{JOB}")
    assert 0.3 <= duration <= took < 10


def test_the_result_is_in_the_last_emission_only(tmp_path: Path) -> None:
    """While the command runs only its usage is emitted: a run in progress never changes what
    the page says about the last finished one."""
    assert run_job(tmp_path, "sleep", "0.4", poll=0.05) == 0
    samples = [s for found in spool_samples(tmp_path).values() for s in found]
    stamps = sorted({s.timestamp_ms for s in samples if s.timestamp_ms is not None})
    assert len(stamps) >= 3, "emitted while running, then at the end"
    job = {s.timestamp_ms for s in samples if s.name.startswith("biometrics_job_")}
    assert job == {stamps[-1]}


def test_a_command_that_cannot_start_is_a_failed_run_with_127(tmp_path: Path) -> None:
    """Not found: OSError as before, and the run is on the page as failed, exit code 127."""
    with pytest.raises(OSError) as raised:
        run_job(tmp_path, str(tmp_path / "no-such-command"), at_ms=1_000)
    assert exit_code_for(raised.value) == 127
    page = merged(tmp_path)
    assert page_value(page, f"biometrics_job_last_exit_code{JOB}") == 127
    assert page_value(page, 'biometrics_job_runs_total{job_name="nightly",result="failure"}') == 1


def test_three_runs_merge_as_the_pushgateway_would_show_them(tmp_path: Path) -> None:
    """Runs at t = 1000, 2000, 3000 s: success, success, exit 2.  The page: the newest exit code
    and duration, the newest success's time, runs added up.  Forgetting the two older sources
    keeps their counts (a live source remains) but takes the last success with them; forgetting
    all takes every job series: the reason the alert in README's cron recipe also looks back
    over a range and for absence."""
    assert run_job(tmp_path, "true", at_ms=1_000_000) == 0
    assert run_job(tmp_path, "true", at_ms=2_000_000) == 0
    assert run_job(tmp_path, "sh", "-c", "exit 2", at_ms=3_000_000) == 2
    page = merged(tmp_path)
    assert page_value(page, f"biometrics_job_last_exit_code{JOB}") == 2
    assert page_value(page, f"biometrics_job_last_success_timestamp_seconds{JOB}") == 2000
    assert page_value(page, 'biometrics_job_runs_total{job_name="nightly",result="success"}') == 2
    assert page_value(page, 'biometrics_job_runs_total{job_name="nightly",result="failure"}') == 1
    assert len(job_lines(page)) == 5

    later = merged(tmp_path, forget=(3_500_000, 1_000_000))  # sources 1 and 2 forgotten
    assert series_value(later, f"biometrics_job_last_success_timestamp_seconds{JOB}") is None
    assert page_value(later, f"biometrics_job_last_exit_code{JOB}") == 2
    assert page_value(later, 'biometrics_job_runs_total{job_name="nightly",result="success"}') == 2

    assert job_lines(merged(tmp_path, forget=(10_000_000, 1_000_000))) == []


def test_job_sensors_declare_how_runs_merge() -> None:
    """Exit code and duration: the newest run; last success: the max; runs: counters."""
    run = JobRun("j", 0, 1_000, 4_000, 3.0)
    assert run.result is JobResult.SUCCESS
    declared = {s.label: getattr(s, "merge", "counter") for s in job_sensors(run)}
    assert declared == {
        "biometrics.job.last_exit_code": "latest",
        "biometrics.job.duration.seconds": "latest",
        "biometrics.job.runs": "counter",
        "biometrics.job.last_success_timestamp.seconds": "max",
    }
    assert JobRun("j", 1, 0, 0, 0.0).result is JobResult.FAILURE
    assert len(job_sensors(JobRun("j", 1, 0, 0, 0.0))) == 4, "no last success for a failure"


def test_without_a_job_no_job_series(tmp_path: Path) -> None:
    """Plain ``supervise`` (no ``job``) writes usage only, as before."""
    assert supervise(["true"], options=Options(prefix=tmp_path / "plain."), poll_seconds=0.05) == 0
    assert job_lines(merged(tmp_path)) == []
    assert "biometrics_sys_utime_total" in merged(tmp_path)


def test_a_missing_spool_is_created_and_an_unusable_one_keeps_the_exit_code(
    tmp_path: Path,
) -> None:
    """The spool is made when missing; when it cannot be (a file is in the way) the command
    still runs and its code comes back."""
    spool = tmp_path / "new" / "spool"
    assert run_job_in(spool, "sh", "-c", "exit 4") == 4
    assert spool.is_dir()
    assert page_value(merged(spool), f"biometrics_job_last_exit_code{JOB}") == 4
    (tmp_path / "file").write_text("x\n")
    assert run_job_in(tmp_path / "file" / "spool", "sh", "-c", "exit 5") == 5


def run_job_in(spool: Path, *argv: str) -> int:
    return supervise(list(argv), poll_seconds=5, options=Options(prefix=spool / "nightly.1."),
                     job="nightly")  # fmt: skip


def test_python_is_a_command_too(tmp_path: Path) -> None:
    """The interpreter's own exit status passes through (a sanity check of argv handling)."""
    assert run_job(tmp_path, sys.executable, "-c", "raise SystemExit(7)") == 7


def test_a_failing_metrics_step_never_changes_the_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Usage that cannot be recorded (here: every update raises) loses metrics, never the
    command's exit code (before: the error escaped after the command ran, the CLI then
    reported it as "command not found" or a traceback)."""

    def broken(self: SystemSensors, values: object) -> None:
        raise OSError(5, "injected: usage not recorded")

    monkeypatch.setattr(SystemSensors, "update", broken)
    assert run_job(tmp_path, "sh", "-c", "exit 3") == 3
    assert page_value(merged(tmp_path), f"biometrics_job_last_exit_code{JOB}") == 3
