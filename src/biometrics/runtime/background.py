"""Background emission: a daemon thread that writes a collector to segments, fork or no fork.

The promise to the host program: emission never raises into its threads, never blocks them, and
survives ``os.fork()``.  At a fork the emission thread is paused between emissions (so no sensor
lock is held by it), the child drops the parent's open segment unwritten, writes under a prefix
with its own pid, starts its own thread, and reports what it counts *after* the fork (cumulative
readings minus their value at the fork), so summing parent and children counts each event once.

Visibility.  ``biometrics serve`` reads a segment while it is still open, up to its last
``# EMITTED`` marker (the end of a whole emission, written and flushed to the file when the
emission ends), so a count is on its page one poll (100 ms) after the emission that carries it,
whether or not the segment is finished.  So by default (``finish_each=False``) one segment
stays open across emissions until ``Options.flush_interval`` (60 s) has passed: it is finished
after the last emission that falls within that age, and the next emission starts a new one.
Within a segment an emission writes only the series that changed
(``Options.changes_only``); each segment's first emission writes every series with its
HELP/TYPE lines, so every series is written at least once a minute.  ``finish_each=True``
finishes the segment after every emission instead: every emission is then a whole segment
with all its series and metadata, at the price of one file per emission per process (6 a
minute at the default 10 s) and many more lines for the daemon to read.  A reader that takes
only finished segments sees a count up to ``flush_interval`` later without it.  Either way a
SIGKILL loses at most the increments of one interval (the segment's complete lines survive the
kill: the kernel releases the lock), which is why the default interval is 10 s, under
Prometheus's default 15 s scrape interval.

The spool.  The directory of ``Options.prefix`` is created when missing (at ``start()`` and
before each new segment), so no deploy step has to run before the program; a failure to create
it is one more emission failure, counted and retried.  See :func:`ensure_spool` for the mode
and the links it will and will not follow.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, Protocol

from .. import _clock, _forks
from ..collector import Collector, default_collector
from ..errors import InvalidValueError
from ..histogram import Histogram
from ..moments import Moments
from ..prometheus.segment_emitter import Options, SegmentEmitter
from ..sensors import Counter, Gauge, Sensor
from ..system import RuntimeSensors, SystemSensors
from .failures import FailureLog
from .spool import ensure_spool, spool_mode_for, spool_of

__all__ = ["Bridge", "Emission", "emit_every", "running_emissions"]

LOGGER = logging.getLogger("biometrics")
_JOIN_SECONDS = 5.0


def _kind_of(error: BaseException) -> str:
    number = getattr(error, "errno", None)
    if isinstance(number, int) and number in errno.errorcode:
        return errno.errorcode[number]
    return type(error).__name__


class Bridge(Protocol):
    """Something that writes its own families at each emission (see ``bridge.py``)."""

    def emit(self, emitter: SegmentEmitter, now_ms: int) -> None:
        """Write this bridge's readings through ``emitter``, stamped ``now_ms``."""


class _Shifted:
    """A cumulative sensor seen from a baseline: ``read()`` is the reading minus ``base``."""

    def __init__(self, sensor: Sensor, base: Any) -> None:
        self._sensor = sensor
        self._base = base

    def read(self) -> Any:
        return self._sensor.read() - self._base  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sensor, name)


class _SinceFork:
    """An emitter wrapper that subtracts each cumulative sensor's reading at the fork.

    One view per sensor, kept: the emitter knows a series by its sensor object, so a view made
    afresh at each emission would be written in full every time.
    """

    def __init__(self, inner: SegmentEmitter, baseline: dict[Sensor, Any]) -> None:
        self._inner = inner
        self._baseline = baseline
        self._views: dict[Sensor, _Shifted] = {}

    def _view(self, sensor: Any) -> Any:
        view = self._views.get(sensor)
        if view is None:
            base = self._baseline.get(sensor)
            if base is None:
                return sensor
            view = self._views[sensor] = _Shifted(sensor, base)
        return view

    def emit_counter(self, counter: Counter, now_ms: int) -> None:
        self._inner.emit_counter(self._view(counter), now_ms)

    def emit_gauge(self, gauge: Gauge, now_ms: int) -> None:
        self._inner.emit_gauge(gauge, now_ms)

    def emit_moments(self, moments: Moments, now_ms: int) -> None:
        self._inner.emit_moments(self._view(moments), now_ms)

    def emit_histogram(self, histogram: Histogram, now_ms: int) -> None:
        self._inner.emit_histogram(self._view(histogram), now_ms)

    def flush(self) -> None:
        self._inner.flush()


class Emission:
    """A collector emitted every ``interval`` by a daemon thread, and once more at exit.

    Use :func:`emit_every` to make and start one.  ``stop()`` (or leaving the ``with`` block)
    emits a last time and finishes the segment.  A segment lives across emissions for up to
    ``Options.flush_interval``; with ``finish_each`` every emission finishes its segment (see
    the module docstring for the trade-off).  Failures are counted in
    ``biometrics.emit.failure{kind=...}`` (``kind`` is the errno name, e.g. ``ENOSPC``, or the
    exception's class), logged on the ``biometrics`` logger, and retried at the next interval.
    """

    def __init__(
        self,
        interval: float | timedelta = 10.0,
        *,
        collector: Collector | None = None,
        options: Options | None = None,
        system: bool = True,
        bridges: Sequence[Bridge] = (),
        clock: Callable[[], int] = _clock.now_ms,
        finish_each: bool = False,
        spool_mode: int | None = None,
    ) -> None:
        seconds = interval.total_seconds() if isinstance(interval, timedelta) else interval
        if not isinstance(seconds, int | float) or not seconds > 0:
            raise InvalidValueError(f"emission interval must be positive seconds, got {interval!r}")
        self.interval = float(seconds)
        self.finish_each = bool(finish_each)
        """Whether every emission finishes its segment (a whole file each) or age does."""
        self.collector = collector if collector is not None else default_collector()
        self.emitter = SegmentEmitter(options)
        self.spool_mode = spool_mode
        """The mode a spool this emission creates gets (None: :func:`spool_mode_for`)."""
        self._clock = clock
        self._bridges = tuple(bridges)
        self._polls: list[Callable[[], None]] = []
        if system:
            for sensors in (SystemSensors(), RuntimeSensors()):
                sensors.register(self.collector)
                self._polls.append(sensors.poll)
        self.collector.register_missing(self.emitter.failures, self.emitter.segments)
        self.failures = FailureLog(self.collector, "biometrics.emit.failure", "kind",
                                   "Background emissions that failed, by errno name or "
                                   "exception class.", self._say)  # fmt: skip
        """What failed, by kind (``biometrics_emit_failure_total{kind}``)."""
        self._busy = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._since_fork: _SinceFork | None = None
        self._baseline: dict[Sensor, Any] = {}
        self._at_fork: dict[Sensor, Any] = {}
        self._stopped = False

    @property
    def path(self) -> str | None:
        """The segment being written, if any."""
        return self.emitter.path

    @property
    def options(self) -> Options:
        """The emitter's options (in a forked child, with the child's prefix)."""
        return self.emitter.options

    def start(self) -> Emission:
        """Start the thread (once); it first emits one ``interval`` from now."""
        if self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._run, name="biometrics-emit", daemon=True)
            _stop_at_exit(self)
            self._ensure_spool()
            _forks.on_fork(
                self,
                before=Emission._before_fork,
                after_in_parent=Emission._after_fork_in_parent,
                after_in_child=Emission._after_fork_in_child,
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        stop = self._stop
        deadline = time.monotonic() + self.interval
        while not stop.wait(max(0.0, deadline - time.monotonic())):
            self.emit()
            deadline += self.interval
            now = time.monotonic()
            if deadline < now:  # fell behind (a stalled disk): skip, do not burst
                deadline = now + self.interval

    def emit(self) -> bool:
        """Emit now, in the caller's thread; False (and counted, logged) when it failed."""
        return self._emit(final=False)

    def _emit(self, *, final: bool, wait: float = -1) -> bool:
        """One emission, and its segment finished if it is the segment's last.

        That is: with ``finish_each``, ``final``, or when the next emission (an ``interval``
        on) would find the segment past ``flush_interval``.  Finishing it now rather than at
        the next emission means every series is written again ``flush_interval`` after the
        segment began (not an interval later), and readers of finished segments get it an
        interval sooner.  The segment is finished even when a sensor or bridge failed: the
        lines the others wrote are whole.  ``wait``: at most that long for an emission in
        progress (a final one from ``stop()``: a write stuck on a stalled disk must not hang
        the host's exit; the segment's complete lines are kept anyway).
        """
        if not self._busy.acquire(timeout=wait):
            self._failed(TimeoutError(f"an emission still in progress after {wait} s"))
            return False
        try:
            return self._emit_now(final=final)
        finally:
            self._busy.release()

    def _emit_now(self, *, final: bool) -> bool:
        if self.emitter.path is None and not self._ensure_spool():
            return False  # no segment can be made: counted, tried again next time
        for poll in self._polls:
            with contextlib.suppress(Exception):
                poll()
        target: Any = self.emitter
        if self._baseline:
            if self._since_fork is None:
                self._since_fork = _SinceFork(self.emitter, self._baseline)
            target = self._since_fork
        now_ms = self._clock()
        ok = True
        for bridge in self._bridges:
            try:
                bridge.emit(self.emitter, now_ms)
            except Exception as e:  # the host must never see our failures
                self._failed(e)
                ok = False
        try:
            self.collector.emit(target, now_ms)
        except Exception as e:
            self._failed(e)
            ok = False
        # (final: the end-of-source marker is written here, before the segment is finished)
        if final or self.finish_each or self._segment_due(now_ms):
            try:
                self.emitter.end(now_ms) if final else self.emitter.close()
            except Exception as e:
                self._failed(e)
                ok = False
        return ok

    def _ensure_spool(self) -> bool:
        try:
            options = self.emitter.options
            mode = spool_mode_for(options) if self.spool_mode is None else self.spool_mode
            ensure_spool(spool_of(options), mode)
        except Exception as e:
            self._failed(e)
            return False
        return True

    def _segment_due(self, now_ms: int) -> bool:
        try:
            return self.emitter.due(now_ms + int(self.interval * 1000))
        except Exception:  # never: but a question must not fail an emission
            return False

    def _failed(self, error: Exception) -> None:
        self.failures.failed(_kind_of(error), error)

    def _say(self, kind: str, error: BaseException, more: str) -> None:
        LOGGER.warning("biometrics: emission failed (%s): %s%s; retrying every %gs",
                       kind, error, more, self.interval)  # fmt: skip

    def stop(self, timeout: float = _JOIN_SECONDS) -> None:
        """Stop the thread, emit a last time, finish the segment.  Idempotent; never raises."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._emit(final=True, wait=timeout)
        _forks.forget(self)
        _running.discard(self)

    def __enter__(self) -> Emission:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- fork -----------------------------------------------------------------------------

    def _before_fork(self) -> None:
        self._busy.acquire()
        try:
            self._at_fork = {s: _read(s) for s in self.collector.sensors() if _cumulative(s)}
        except Exception:  # a failed read only costs the child its baseline
            self._at_fork = {}

    def _after_fork_in_parent(self) -> None:
        self._at_fork = {}
        self._busy.release()

    def _after_fork_in_child(self) -> None:
        self._busy = threading.Lock()
        self._stop = threading.Event()
        self._baseline, self._at_fork = self._at_fork, {}
        self._since_fork = None
        self.failures.forget_logged()
        self.emitter.after_fork()
        self._thread = None  # the parent's thread does not exist here
        self.start()
        _finalize_in_multiprocessing(self)


def _read(sensor: Sensor) -> Any:
    return sensor.read()  # type: ignore[attr-defined]


def _cumulative(sensor: Sensor) -> bool:
    return isinstance(sensor, Counter | Moments | Histogram)


def emit_every(
    interval: float | timedelta = 10.0,
    *,
    collector: Collector | None = None,
    options: Options | None = None,
    system: bool = True,
    bridges: Sequence[Bridge] = (),
    clock: Callable[[], int] = _clock.now_ms,
    finish_each: bool = False,
    spool_mode: int | None = None,
) -> Emission:
    """Emit ``collector`` (the default one) to segment files every ``interval`` seconds.

    Returns the started :class:`Emission`; it also stops itself at interpreter exit.  With
    ``system`` (the default) the ``biometrics.sys.*`` rusage counters and the process/GC/python
    runtime sensors are registered and refreshed before each emission.  For many processes
    sharing a spool, pass ``options=Options.per_process(spool_dir, job)``.

    ``biometrics serve`` reads each emission from the open segment, so a count is on its page
    within ``interval`` (plus ~0.1 s) of the event.  A segment holds the emissions of up to
    ``Options.flush_interval`` (60 s), each writing only the series that changed; with
    ``finish_each=True`` every emission is a finished segment of its own, with every series
    and its metadata (more files, more lines).  A SIGKILL loses at most one interval of
    increments.

    A missing spool (the prefix's directory) is created with ``spool_mode`` (default
    :func:`spool_mode_for`: 0o2775 when ``Options.mode`` is group-writable, else 0o755; see
    :func:`ensure_spool`); a failure to is counted and logged as any emission failure.
    """
    return Emission(
        interval,
        collector=collector,
        options=options,
        system=system,
        bridges=bridges,
        clock=clock,
        finish_each=finish_each,
        spool_mode=spool_mode,
    ).start()


_running: weakref.WeakSet[Emission] = weakref.WeakSet()


def running_emissions() -> list[Emission]:
    """The emissions running in this process.

    A host's hooks (gunicorn's) must not start a second one for a collector the app emits.
    """
    return list(_running)


def _stop_at_exit(emission: Emission) -> None:
    if not _running:
        atexit.unregister(_stop_all)  # at most one registration, however often this runs
        atexit.register(_stop_all)
    _running.add(emission)


def _stop_all() -> None:
    for emission in list(_running):
        emission.stop()


def _finalize_in_multiprocessing(emission: Emission) -> None:
    """A multiprocessing child leaves by ``os._exit`` (no atexit): stop by its finalizers."""
    util: Any = sys.modules.get("multiprocessing.util")
    if util is None:
        return

    def arm(target: Emission) -> None:
        util.Finalize(target, target.stop, exitpriority=-100)

    with contextlib.suppress(Exception):
        util.register_after_fork(emission, arm)
