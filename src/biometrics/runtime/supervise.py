"""Run a command and emit its ``biometrics.sys.*`` usage: the seed's ``with-system-metrics``.

``getrusage(RUSAGE_CHILDREN)`` only covers children that have been waited for, so while the
command runs its usage is read from ``/proc/<pid>`` (Linux; the command and the children *it*
has waited for), and the exact figure is taken from ``getrusage`` once it has exited.  Both are
deltas from a baseline taken before the start; the counters only ever go up.

A batch job (``job=``) also reports how the run ended, in the last emission only, so a run in
progress never changes what the page says about the last one: the Pushgateway pattern without
a Pushgateway.  Every run is a source of its own (its pid is in the prefix), so the gauges
declare how ``serve`` merges runs: exit code and duration the newest run's (``latest``), the
last success the newest success's (``max``: a failed run does not write it at all), and the
run counters add up across runs.  Nothing about metrics can change the command's exit code.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

from .. import _clock
from ..collector import Collector
from ..prometheus.segment_emitter import Options, SegmentEmitter
from ..sensors import Counter, Gauge, Sensor
from ..system import SystemSensors, proc_usage, rusage_values
from .spool import ensure_spool, spool_mode_for, spool_of

__all__ = ["JobResult", "JobRun", "exit_code_for", "job_sensors", "supervise"]

_FORWARDED = (signal.SIGINT, signal.SIGTERM)


class JobResult(enum.Enum):
    """How a run ended, as the ``result`` label of ``biometrics_job_runs_total`` says it."""

    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class JobRun:
    """One finished run of a batch job: what its last emission reports."""

    job: str
    exit_code: int
    """The command's code, 128 + the signal that killed it, or 127/126 if it could not run."""
    started_ms: int
    ended_ms: int
    duration_seconds: float
    """Wall time from just before the start to the exit (a monotonic clock, not the stamps)."""

    @property
    def result(self) -> JobResult:
        """Success is exit code 0, as cron, systemd and every shell take it."""
        return JobResult.SUCCESS if self.exit_code == 0 else JobResult.FAILURE


def job_sensors(run: JobRun) -> list[Sensor]:
    """The series a finished run writes, labelled ``job_name``, with their merge declarations.

    ``biometrics_job_last_success_timestamp_seconds`` only when the run succeeded, and both
    ``result`` children of ``biometrics_job_runs_total`` always (0 or 1), so a first failure
    is an increase Prometheus can see, not a new series.
    """
    name = {"job_name": run.job}
    exit_code = Gauge(
        "biometrics.job.last_exit_code",
        labels=name,
        merge="latest",
        help="Exit code of the newest finished run (128+N: killed by signal N).",
    )
    duration = Gauge("biometrics.job.duration.seconds", labels=name, merge="latest",
                     help="Wall time of the newest finished run.")  # fmt: skip
    exit_code.set(run.exit_code)
    duration.set(run.duration_seconds)
    sensors: list[Sensor] = [exit_code, duration]
    for result in JobResult:
        runs = Counter("biometrics.job.runs", labels={**name, "result": result.value},
                       help="Finished runs, by result (success: exit code 0).")  # fmt: skip
        runs.count(1 if run.result is result else 0)
        sensors.append(runs)
    if run.result is JobResult.SUCCESS:
        last = Gauge("biometrics.job.last_success_timestamp.seconds", labels=name, merge="max",
                     help="When the newest successful run ended, in Unix seconds.")  # fmt: skip
        last.set(run.ended_ms / 1000)
        sensors.append(last)
    return sensors


def exit_code_for(error: OSError) -> int:
    """The exit code for a command that could not be run, as ``env``, ``nice``, ``timeout``.

    127 when it is not found, 126 when it is found but cannot be executed.
    """
    return 127 if error.errno in (errno.ENOENT, errno.ENOTDIR) else 126


def _children() -> dict[str, int]:
    return rusage_values(resource.getrusage(resource.RUSAGE_CHILDREN))


def supervise(
    command: Sequence[str],
    *,
    poll_seconds: float = 1.0,
    options: Options | None = None,
    clock: Callable[[], int] = _clock.now_ms,
    started: Callable[[subprocess.Popen[bytes]], None] | None = None,
    job: str | None = None,
) -> int:
    """Run ``command``, emitting its usage every ``poll_seconds`` and once when it exits.

    Returns its exit code, or 128 + the signal that killed it.  SIGINT and SIGTERM received
    meanwhile (in the main thread) are passed on to it.  Raises ``OSError`` when it cannot be
    started (with ``job``, after emitting that run as failed with :func:`exit_code_for`).
    ``started`` is called with the running process (for tests and embedding).  With ``job``
    the last emission also carries :func:`job_sensors` of the run.  A missing spool is created
    (:func:`~biometrics.runtime.spool.ensure_spool`); failing to write metrics never
    changes the exit code.
    """
    options = options or Options()
    collector = Collector()
    sensors = SystemSensors().register(collector)
    baseline = _children()
    forwarder = _Forwarder()
    emitter = _open_emitter(options, collector)
    started_ms, began = clock(), time.monotonic()

    def emit(usage: dict[str, int], code: int | None = None) -> None:
        """One emission, whatever fails in it dropped (a full disk, a bad reading, a clock).

        So it can neither lose the exit code nor report a run that did not fail as failed.
        """
        with contextlib.suppress(Exception):
            if job is not None and code is not None:
                run = JobRun(job, code, started_ms, clock(), time.monotonic() - began)
                collector.register_missing(*job_sensors(run))
        with contextlib.suppress(Exception):
            sensors.update(usage)
        with contextlib.suppress(Exception):
            collector.emit(emitter, clock())

    try:
        try:
            process = subprocess.Popen(list(command))
        except OSError as e:
            emit({}, exit_code_for(e))
            raise
        forwarder.started(process)
        if started is not None:
            started(process)
        while True:
            try:
                code = process.wait(poll_seconds)
                break
            except subprocess.TimeoutExpired:
                try:
                    so_far = proc_usage(process.pid)
                except (OSError, ValueError, KeyError, IndexError):
                    sensors.errors.click()
                    so_far = {}
                emit(so_far)
        code = code if code >= 0 else 128 - code
        final = _children()
        emit({k: final[k] - baseline[k] for k in final}, code)
    finally:
        forwarder.restore()
        with contextlib.suppress(Exception):
            emitter.close()
    return code


class _Forwarder:
    """SIGINT and SIGTERM passed on to the command (only the main thread can catch them)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._early: list[int] = []
        self._previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._forward) for sig in _FORWARDED}

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        if self._process is None:
            self._early.append(signum)  # before the start: delivered right after it
            return
        with contextlib.suppress(OSError):
            self._process.send_signal(signum)

    def started(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        for signum in self._early:
            with contextlib.suppress(OSError):
                process.send_signal(signum)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _open_emitter(options: Options, collector: Collector) -> SegmentEmitter:
    with contextlib.suppress(Exception):  # else the first emission fails, and is suppressed
        ensure_spool(spool_of(options), spool_mode_for(options))
    emitter = SegmentEmitter(options)
    collector.register(emitter.failures)
    return emitter
