"""Celery: every worker process emits under its own prefix, and prefork children say goodbye.

Why a hook at all.  ``emit_every`` writes its last emission at interpreter exit (atexit), but
billiard's pool children never get there: they leave by ``os._exit``, both when the pool shuts
down and when a child is recycled (``--max-tasks-per-child``, ``--max-memory-per-child``).  So
without help every child loses what it counted since its last interval, and a recycling pool
(children living seconds) loses nearly everything.  Celery sends ``worker_process_shutdown`` in
the child just before that ``os._exit``; :func:`instrument` stops the child's emission there (a
final emission and ``# END``).  ``worker_init``/``worker_shutdown`` do the same for the main
process, which runs the tasks itself with the solo and threads pools; ``worker_process_init``
starts a child's emission when it was not forked from a running one (``spawn``/``forkserver``).

A warm shutdown (SIGTERM), a cold one (SIGQUIT) and a SIGTERM to the whole process group all
end the children through that path (billiard turns a child's SIGTERM into ``SystemExit``).
What cannot be saved is a child killed by SIGKILL (``kill -9``, the OOM killer, a main process
that died abruptly: the children get SIGKILL as its parent-death signal); it loses at most one
interval, as any process does.

Per-task metrics (``tasks=True``) cost one dict store at ``task_prerun`` and, at
``task_postrun``, one cached family lookup, one counter click and one histogram observation:
``celery.tasks{task,state}`` (``celery_tasks_total``; the state as Celery names it: SUCCESS,
FAILURE, RETRY, IGNORED, REJECTED) and ``celery.task.runtime.seconds{task}`` (the default
buckets, 1 ms to 60 s).  Label values are registered task names, so the series are bounded.

Nothing here raises into Celery: a failing hook is counted in
``biometrics.celery.hook.failure{hook}`` and logged on the ``biometrics`` logger (once per hook
every 5 minutes), and the task or the worker goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import signals
from celery.utils.dispatch import Signal

from ..collector import Collector, default_collector
from ..errors import InvalidValueError
from ..family import Family
from ..histogram import Histogram
from ..prometheus import Options
from ..runtime import Emission, emit_every
from ..runtime.failures import FailureLog
from ..sensors import Counter
from .gunicorn import other_emissions

__all__ = ["CelerySettings", "Instrumentation", "instrument", "uninstrument"]

LOGGER = logging.getLogger("biometrics")
SPOOL_VARIABLE = "BIOMETRICS_SPOOL"
"""Where the spool is read from, at worker start, when ``instrument`` is given none."""
_MAX_IN_FLIGHT = 10_000
"""Start times kept for tasks that began and did not end; past it they are dropped (a leak
guard for tasks whose ``task_postrun`` never comes, e.g. a thread killed mid-task)."""
_UID = "biometrics.integrations.celery"


@dataclass(frozen=True, slots=True)
class CelerySettings:
    """What :func:`instrument` was asked for; the spool is resolved when a worker starts."""

    spool: str | None
    job: str = "celery"
    interval: float = 10.0
    tasks: bool = True
    finish_each: bool = False


class _TaskMetrics:
    """The per-task families of one collector: made once, whatever ``instrument`` is re-run."""

    __slots__ = ("done", "runtime", "started")

    def __init__(self, collector: Collector) -> None:
        self.done = Family(
            Counter,
            "celery.tasks",
            ["task", "state"],
            help="Celery tasks that ended, by task name and final state.",
            collector=collector,
        )
        self.runtime = Family(
            Histogram,
            "celery.task.runtime.seconds",
            ["task"],
            help="Celery task run time, from task_prerun to task_postrun.",
            collector=collector,
        )
        self.started: dict[str, float] = {}


_task_metrics: weakref.WeakKeyDictionary[Collector, _TaskMetrics] = weakref.WeakKeyDictionary()
_metrics_lock = threading.Lock()


def _metrics_for(collector: Collector) -> _TaskMetrics:
    with _metrics_lock:
        metrics = _task_metrics.get(collector)
        if metrics is None:
            metrics = _task_metrics[collector] = _TaskMetrics(collector)
        return metrics


class Instrumentation:
    """The receivers :func:`instrument` connects, and the emission of the current process.

    One per process is connected at a time (the last ``instrument`` call wins).  ``start()``
    and ``stop()`` are what the signals call; they are public for pools that send none of them
    (an embedded worker, a custom pool).
    """

    def __init__(self, settings: CelerySettings, collector: Collector | None = None) -> None:
        self.settings = settings
        self.collector = collector if collector is not None else default_collector()
        self._tasks = _metrics_for(self.collector) if settings.tasks else None
        self._emission: Emission | None = None
        self._lock = threading.Lock()
        self.failures = FailureLog(self.collector, "biometrics.celery.hook.failure", "hook",
                                   "Celery signal receivers of biometrics that failed (the task "
                                   "went on).", self._say)  # fmt: skip
        """What failed, by hook (``biometrics_celery_hook_failure_total{hook}``)."""
        self._warned_no_spool = False
        receivers: dict[str, Callable[..., None]] = {
            "worker_init": self._on_worker_init,
            "worker_process_init": self._on_worker_process_init,
            "worker_process_shutdown": self._on_worker_process_shutdown,
            "worker_shutdown": self._on_worker_shutdown,
        }
        if self._tasks is not None:
            receivers["task_prerun"], receivers["task_postrun"] = self._task_receivers(self._tasks)
        self._receivers = receivers

    @property
    def emission(self) -> Emission | None:
        """The current process's emission while it runs (in a forked child, its own)."""
        return self._emission

    def _connect(self) -> None:
        """Connect the receivers, replacing any earlier instrumentation's."""
        _disconnect_all()
        for name, receiver in self._receivers.items():
            _SIGNALS[name].connect(receiver, weak=False, dispatch_uid=f"{_UID}.{name}")

    def start(self) -> Emission | None:
        """Start this process's emission unless one runs; None without a spool.

        An emission the app started on the same collector is adopted, not doubled.
        """
        with self._lock:
            if self._emission is not None:
                return self._emission
            others = other_emissions(None, self.collector)
            if others:  # the app's own emit_every: a second would count everything twice
                LOGGER.warning("biometrics: the app runs emit_every itself; Celery's hooks "
                               "end that emission at worker shutdown")  # fmt: skip
                self._emission = others[0]
                return self._emission
            spool = self.settings.spool or os.environ.get(SPOOL_VARIABLE) or None
            if spool is None:
                if not self._warned_no_spool:
                    self._warned_no_spool = True
                    LOGGER.error(
                        "biometrics: no spool for Celery metrics (pass spool= to instrument() "
                        "or set %s): this worker's metrics are not written",
                        SPOOL_VARIABLE,
                    )
                return None
            options = Options.per_process(spool, self.settings.job)
            self._emission = emit_every(
                self.settings.interval,
                collector=self.collector,
                options=options,
                finish_each=self.settings.finish_each,
            )
            return self._emission

    def stop(self) -> None:
        """Emit a last time and write ``# END``; the next ``start()`` begins a new emission."""
        with self._lock:
            emission, self._emission = self._emission, None
        if emission is not None:
            emission.stop()

    # -- receivers: each catches its own failures ------------------------------------------

    def _on_worker_init(self, **_: Any) -> None:
        self._guard("worker_init", self.start)

    def _on_worker_process_init(self, **_: Any) -> None:
        self._guard("worker_process_init", self.start)

    def _on_worker_process_shutdown(self, **_: Any) -> None:
        self._guard("worker_process_shutdown", self.stop)

    def _on_worker_shutdown(self, **_: Any) -> None:
        self._guard("worker_shutdown", self.stop)

    def _task_receivers(
        self, tasks: _TaskMetrics
    ) -> tuple[Callable[..., None], Callable[..., None]]:
        started, done, runtime = tasks.started, tasks.done, tasks.runtime
        clock, failed = time.perf_counter, self._failed

        def on_prerun(task_id: str | None = None, **_: Any) -> None:
            try:
                if len(started) >= _MAX_IN_FLIGHT:
                    started.clear()
                started[str(task_id)] = clock()
            except Exception as e:
                failed("task_prerun", e)

        def on_postrun(
            task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
        ) -> None:
            try:
                began = started.pop(str(task_id), None)
                name = getattr(task, "name", None) or "unknown"
                done.labels(name, state or "UNKNOWN").click()
                if began is not None:
                    runtime.labels(name).observe(clock() - began)
            except Exception as e:
                failed("task_postrun", e)

        return on_prerun, on_postrun

    def _guard(self, hook: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as e:
            self._failed(hook, e)

    def _failed(self, hook: str, error: Exception) -> None:
        """Count and (rate-limited) log a hook's failure; never raises itself."""
        with contextlib.suppress(Exception):
            self.failures.failed(hook, error)

    @staticmethod
    def _say(hook: str, error: BaseException, more: str) -> None:
        LOGGER.warning("biometrics: Celery %s hook failed: %r%s", hook, error, more)


_SIGNALS: dict[str, Signal] = {
    "worker_init": signals.worker_init,
    "worker_process_init": signals.worker_process_init,
    "worker_process_shutdown": signals.worker_process_shutdown,
    "worker_shutdown": signals.worker_shutdown,
    "task_prerun": signals.task_prerun,
    "task_postrun": signals.task_postrun,
}
_current: Instrumentation | None = None


def _disconnect_all() -> None:
    for name, signal in _SIGNALS.items():
        signal.disconnect(dispatch_uid=f"{_UID}.{name}")


def instrument(
    *,
    spool: str | os.PathLike[str] | None = None,
    job: str = "celery",
    interval: float = 10.0,
    tasks: bool = True,
    collector: Collector | None = None,
    finish_each: bool = False,
) -> Instrumentation:
    """Emit metrics from every Celery worker process, with a last emission as each one ends.

    Call it in the module the worker imports (the one that makes the ``Celery`` app).  It only
    connects receivers to Celery's signals, which are process-wide: a process that sends tasks
    and runs no worker emits nothing.  Each worker process (the main one from ``worker_init``,
    each pool child) writes ``<spool>/<job>.<host>.<pid>.*.prom`` every ``interval`` seconds,
    and finishes with ``# END`` at ``worker_process_shutdown`` (a prefork child, recycled or at
    pool shutdown) or ``worker_shutdown`` (the main process).  ``spool`` defaults to the
    ``BIOMETRICS_SPOOL`` environment variable, read when the worker starts.  ``tasks`` adds
    ``celery_tasks_total{task,state}`` and ``celery_task_runtime_seconds{task}``.  ``collector``
    (the default collector) is what is emitted.  Calling it again replaces the previous
    receivers, so a module imported twice does not count twice.
    """
    global _current  # Celery's signals are process-wide, so is this
    if not isinstance(interval, int | float) or not interval > 0:
        raise InvalidValueError(f"Celery emission interval must be positive, got {interval!r}")
    if not isinstance(job, str) or not job:
        raise InvalidValueError(f"Celery job must be a non-empty string, got {job!r}")
    settings = CelerySettings(
        spool=None if spool is None else os.fspath(spool),
        job=job,
        interval=float(interval),
        tasks=bool(tasks),
        finish_each=bool(finish_each),
    )
    instrumentation = Instrumentation(settings, collector)
    previous, _current = _current, instrumentation
    instrumentation._connect()
    if previous is not None:
        instrumentation._emission = previous._emission  # one emission per process, kept
    return instrumentation


def uninstrument() -> None:
    """Disconnect the receivers and stop this process's emission (a final one)."""
    global _current
    current, _current = _current, None
    _disconnect_all()
    if current is not None:
        current.stop()
