"""Counter and Gauge, plus the base every sensor shares.

A sensor is *algebraic*: two readings taken at two times give what happened in between with one
subtraction.  That is why counters only go up and why readings, not rates, are what we emit.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType

from ._labels import LabelPairs, canonical_labels, check_sensor_label
from .errors import InvalidValueError

__all__ = ["Counter", "Gauge", "Sensor"]


def gil_enabled() -> bool:
    """Whether this interpreter serialises bytecode; asked per sensor, never cached at import."""
    probe: Callable[[], bool] | None = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else probe()


class Sensor:
    """What every sensor has: a label, an optional help text and a fixed label set.

    The label is the sensor's identity (dotted, like ``http.requests``); Prometheus names are
    derived from it only at export time, so the same sensor reads the same everywhere.
    """

    __slots__ = ("_help", "_label", "_label_pairs")

    _reserved_labels: frozenset[str] = frozenset()

    def __init__(
        self, label: str, *, help: str | None = None, labels: Mapping[str, object] | None = None
    ) -> None:
        self._label = check_sensor_label(label)
        if help is not None and not isinstance(help, str):
            raise InvalidValueError(f"help for sensor {label!r} must be a str or None")
        self._help = help
        self._label_pairs: LabelPairs = canonical_labels(labels, reserved=self._reserved_labels)

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


class Counter(Sensor):
    """A monotonic count of events.

    ``click()`` is the hot path.  Under the GIL it is the bound ``__next__`` of an
    ``itertools.count``: one C call, atomic, no lock, no Python frame.  On free-threaded builds
    (no GIL) it falls back to a locked integer, which is slower but equally exact.
    """

    __slots__ = ("_clicks", "_extra", "_lock", "click")

    click: Callable[[], object]
    """Add one.  Returns an opaque value that callers should ignore."""

    def __init__(
        self, label: str, *, help: str | None = None, labels: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(label, help=help, labels=labels)
        self._lock = threading.Lock()
        self._extra = 0
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

    def read(self) -> int:
        """The number of events counted so far."""
        with self._lock:
            clicks = 0 if self._clicks is None else int(repr(self._clicks)[6:-1])
            return clicks + self._extra


class Gauge(Sensor):
    """A value that goes up and down; starts at 0.0."""

    __slots__ = ("_lock", "_value")

    def __init__(
        self, label: str, *, help: str | None = None, labels: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(label, help=help, labels=labels)
        self._lock = threading.Lock()
        self._value = 0.0

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

    def read(self) -> float:
        """The current value."""
        return self._value
