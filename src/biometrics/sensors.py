"""Counter and Gauge, plus the base every sensor shares.

A sensor is *algebraic*: two readings taken at two times give what happened in between with one
subtraction.  That is why counters only go up and why readings, not rates, are what we emit.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import numbers
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from ._labels import LabelPairs, canonical_labels, check_sensor_label
from .errors import InvalidValueError

__all__ = ["MERGE_MODES", "Counter", "Gauge", "Sensor"]

MERGE_MODES = ("latest", "sum", "max", "min", "all")
"""How ``biometrics serve`` combines one gauge series written by many processes (see Gauge)."""

P = ParamSpec("P")
R = TypeVar("R")


def gil_enabled() -> bool:
    """Whether this interpreter serialises bytecode; asked per sensor, never cached at import."""
    probe: Callable[[], bool] | None = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else probe()


class Sensor:
    """What every sensor has: a label, an optional help text and a fixed label set.

    The label is the sensor's identity (dotted, like ``http.requests``); Prometheus names are
    derived from it only at export time, so the same sensor reads the same everywhere.
    """

    __slots__ = ("_help", "_label", "_label_pairs", "removed")

    _reserved_labels: frozenset[str] = frozenset()

    def __init__(
        self, label: str, *, help: str | None = None, labels: Mapping[str, object] | None = None
    ) -> None:
        self._label = check_sensor_label(label)
        if help is not None and not isinstance(help, str):
            raise InvalidValueError(f"help for sensor {label!r} must be a str or None")
        self._help = help
        self._label_pairs: LabelPairs = canonical_labels(labels, reserved=self._reserved_labels)
        self.removed = False
        """True once taken out of its collector (``Family.remove``, ``Collector.unregister``):
        emitters that keep readings between emissions (``SlashMetrics``) drop its series."""

    @property
    def label(self) -> str:
        """The sensor's identity, as given at construction."""
        return self._label

    @property
    def help(self) -> str | None:
        """Human-readable description exported as ``# HELP``."""
        return self._help

    @property
    def labels(self) -> Mapping[str, str]:
        """The sensor's label set, read-only."""
        return MappingProxyType(dict(self._label_pairs))

    @property
    def label_pairs(self) -> LabelPairs:
        """The label set as (name, value) pairs sorted by name: hashable, canonical."""
        return self._label_pairs

    def __repr__(self) -> str:
        labels = "".join(f", {k}={v!r}" for k, v in self._label_pairs)
        return f"{type(self).__name__}({self._label!r}{labels})"


class _Around:
    """Something done around a block or a call: a context manager and a decorator in one.

    Holds no per-entry state, so one object may wrap any number of concurrent or nested
    blocks (``with g.track_inprogress():`` in many threads, or a decorated recursive function).
    Coroutine functions are wrapped as coroutines, so the block is the awaited call, not the
    creation of the coroutine object.
    """

    __slots__ = ()

    def _enter(self) -> None:
        """Run before the block."""

    def _exit(self, exc_type: type[BaseException] | None) -> None:
        """Run after the block, with the exception type it raised (None if it did not)."""

    def __enter__(self) -> None:
        self._enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc_type)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        enter, leave = self._enter, self._exit
        if inspect.iscoroutinefunction(fn):
            coro_fn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def wrapped_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                enter()
                try:
                    result = await coro_fn(*args, **kwargs)
                except BaseException as e:
                    leave(type(e))
                    raise
                leave(None)
                return result

            return cast(Callable[P, R], wrapped_async)

        @functools.wraps(fn)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            enter()
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:
                leave(type(e))
                raise
            leave(None)
            return result

        return wrapped


class _ExceptionCounter(_Around):
    """``Counter.count_exceptions``: one click per block that raises a matching exception."""

    __slots__ = ("_click", "_types")

    def __init__(
        self, counter: Counter, types: type[BaseException] | tuple[type[BaseException], ...]
    ) -> None:
        self._click = counter.click
        self._types = types

    def _exit(self, exc_type: type[BaseException] | None) -> None:
        if exc_type is not None and issubclass(exc_type, self._types):
            self._click()


class _InProgress(_Around):
    """``Gauge.track_inprogress``: up by one while a block runs, down again however it ends."""

    __slots__ = ("_gauge",)

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge

    def _enter(self) -> None:
        self._gauge.inc()

    def _exit(self, exc_type: type[BaseException] | None) -> None:
        self._gauge.dec()


class Counter(Sensor):
    """A monotonic count of events.

    ``click()`` is the hot path.  Under the GIL it is the bound ``__next__`` of an
    ``itertools.count``: one C call, atomic, no lock, no Python frame.  On free-threaded builds
    (no GIL) it falls back to a locked integer, which is slower but equally exact.
    """

    __slots__ = ("_clicks", "_extra", "_fraction", "_lock", "click")

    click: Callable[[], object]
    """Add one.  Returns an opaque value that callers should ignore."""

    def __init__(
        self, label: str, *, help: str | None = None, labels: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(label, help=help, labels=labels)
        self._lock = threading.Lock()
        self._extra = 0
        self._fraction = 0.0
        """What ``inc`` added below one, kept in [0, 1) so whole amounts stay exact ints."""
        self._clicks: itertools.count[int] | None
        if gil_enabled():
            self._clicks = itertools.count()
            self.click = self._clicks.__next__
        else:
            self._clicks = None
            self.click = self._locked_click

    def _locked_click(self) -> None:
        with self._lock:
            self._extra += 1

    def count(self, n: int) -> None:
        """Add ``n`` (a non-negative int); anything else raises without changing the count."""
        if type(n) is not int:
            if isinstance(n, int) and not isinstance(n, bool):
                n = int(n)
            else:
                raise InvalidValueError(
                    f"counter {self._label!r}: count() takes a non-negative int, "
                    f"got {n!r} ({type(n).__name__})"
                )
        if n < 0:
            raise InvalidValueError(
                f"counter {self._label!r}: count() takes a non-negative int, got {n}; "
                "counters never go down (use a Gauge for values that do)"
            )
        with self._lock:
            self._extra += n

    def inc(self, amount: float = 1) -> None:
        """Add ``amount``: an int, or a finite float >= 0 (seconds, bytes), as prometheus_client.

        Anything else raises without changing the count.  Whole amounts are added as ints, so a
        counter fed only whole numbers stays an exact int whatever its size; fractions are kept
        apart (below one) and only then does :meth:`read` return a float.  ``click()`` stays the
        hot path for adding one.
        """
        if type(amount) is int and amount >= 0:
            lock = self._lock
            lock.acquire()
            try:
                self._extra += amount
            finally:
                lock.release()
            return
        kind = type(amount)
        if kind is not float:  # the ABC checks are slow: only for the unusual types
            if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
                raise InvalidValueError(
                    f"counter {self._label!r}: inc() takes a number >= 0, "
                    f"got {amount!r} ({kind.__name__})"
                )
            if isinstance(amount, numbers.Integral):
                self.count(int(amount))
                return
        x = float(amount)
        if not (0.0 <= x < math.inf):
            raise InvalidValueError(
                f"counter {self._label!r}: inc() takes a finite amount >= 0, got {x!r}; "
                "counters never go down (use a Gauge for values that do)"
            )
        whole = int(x)
        fraction = x - whole  # exact: subtracting a float's integer part loses nothing
        lock = self._lock
        lock.acquire()
        try:
            fraction += self._fraction
            if fraction >= 1.0:
                fraction -= 1.0
                whole += 1
            self._extra += whole
            self._fraction = fraction
        finally:
            lock.release()

    def count_exceptions(
        self, exception: type[BaseException] | tuple[type[BaseException], ...] = Exception
    ) -> _Around:
        """Count the blocks (``with``) or calls (as a decorator) that raise ``exception``.

        The exception still propagates; blocks that end normally are not counted.
        """
        return _ExceptionCounter(self, exception)

    def read(self) -> int | float:
        """The amount counted so far: an int, unless ``inc`` added a fraction that is left."""
        with self._lock:
            clicks = 0 if self._clicks is None else int(repr(self._clicks)[6:-1])
            whole = clicks + self._extra
            fraction = self._fraction
        return whole + fraction if fraction else whole


class Gauge(Sensor):
    """A value that goes up and down; starts at 0.0.

    ``merge`` declares how ``biometrics serve`` combines this series when several processes
    write it (the segments carry it; a ``serve --gauge PATTERN=MODE`` matching the name still
    wins): ``"latest"`` (the newest reading), ``"sum"``, ``"max"``, ``"min"``, or ``"all"``
    (one series per process, with a ``source`` label).  None (the default) declares nothing,
    and serve's ``--gauge-mode`` applies.  ``live_only=True`` makes a process's value leave the
    merge when the process stops cleanly (its last segment ends in ``# END``), not only when
    serve forgets it: what prometheus_client calls the ``live*`` modes (``latest`` unless
    ``merge`` says otherwise).  All gauges under one label must declare the same.
    """

    __slots__ = ("_function", "_live", "_lock", "_merge", "_value")

    def __init__(
        self,
        label: str,
        *,
        help: str | None = None,
        labels: Mapping[str, object] | None = None,
        merge: str | None = None,
        live_only: bool = False,
    ) -> None:
        super().__init__(label, help=help, labels=labels)
        if merge is not None and merge not in MERGE_MODES:
            raise InvalidValueError(
                f"gauge {label!r}: merge={merge!r} is not one of {', '.join(MERGE_MODES)} (or None)"
            )
        if not isinstance(live_only, bool):
            raise InvalidValueError(f"gauge {label!r}: live_only must be True or False")
        self._merge = "latest" if merge is None and live_only else merge
        self._live = live_only
        self._function: Callable[[], float] | None = None
        self._lock = threading.Lock()
        self._value = 0.0

    @property
    def merge(self) -> str | None:
        """The declared merge mode, or None when serve's ``--gauge-mode`` decides."""
        return self._merge

    @property
    def live_only(self) -> bool:
        """Whether a process's value leaves the merge as soon as that process stops cleanly."""
        return self._live

    @property
    def merge_declaration(self) -> str:
        """What a segment's ``# MERGE <name> ...`` line says: ``"sum"``, ``"sum live"``, or ""."""
        mode = self._merge
        if mode is None:
            return ""
        return mode + " live" if self._live else mode

    def set(self, x: float) -> None:
        """Replace the value."""
        lock = self._lock
        lock.acquire()
        try:
            self._value = float(x)
        finally:
            lock.release()

    def inc(self, x: float = 1.0) -> None:
        """Add ``x`` atomically with respect to other ``inc``/``dec``/``set`` calls."""
        lock = self._lock
        lock.acquire()
        try:
            self._value += float(x)
        finally:
            lock.release()

    def dec(self, x: float = 1.0) -> None:
        """Subtract ``x`` atomically."""
        self.inc(-float(x))

    def set_to_current_time(self) -> None:
        """Set to the wall clock in epoch seconds (a last-success time, say)."""
        self.set(time.time())

    def track_inprogress(self) -> _Around:
        """Up by one while a block (``with``) or a call (as a decorator) runs, then down.

        Meant for in-flight gauges, usually declared ``merge="sum", live_only=True``.
        """
        return _InProgress(self)

    def set_function(self, fn: Callable[[], float] | None) -> None:
        """Make :meth:`read` return ``fn()`` (None: the stored value again).

        ``fn`` runs at every emission, in the emitting thread, so it must be quick and
        thread-safe.  If it raises, :meth:`read` raises: the Collector skips this gauge for that
        emission, counts it in ``biometrics.collector.emit.failure``, and emits every other
        sensor (``emit_every`` also counts it by exception class and logs it).
        """
        if fn is not None and not callable(fn):
            raise InvalidValueError(f"gauge {self._label!r}: set_function takes a callable")
        self._function = fn

    def read(self) -> float:
        """The current value (``fn()`` after :meth:`set_function`)."""
        fn = self._function
        if fn is None:
            return self._value
        return float(fn())
