"""Collector: the set of sensors a process exports, and the loop that emits them."""

from __future__ import annotations

import contextlib
import threading
from typing import TypeVar

from . import _clock, _forks
from ._labels import LabelPairs
from .errors import DuplicateSensorError, InvalidValueError
from .histogram import Histogram
from .moments import Moments
from .sensors import Counter, Gauge, Sensor
from .typing import Emitter

__all__ = ["Collector", "default_collector"]

S = TypeVar("S", bound=Sensor)
_KINDS: tuple[type[Sensor], ...] = (Counter, Gauge, Moments, Histogram)


def _kind(sensor: Sensor) -> str:
    for cls in _KINDS:
        if isinstance(sensor, cls):
            return cls.__name__.lower()
    raise InvalidValueError(
        f"cannot register {sensor!r}: a Collector takes Counter, Gauge, Moments or Histogram"
    )


class Collector:
    """Sensors keyed by ``(label, labels)``; emits them grouped by label, in registration order.

    The collector instruments itself with the Rust crate's counters
    (``biometrics.collector.register.<kind>``, ``biometrics.collector.emit.<kind>``,
    ``biometrics.collector.emit.failure``), which are registered like any sensor and emitted
    first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, dict[LabelPairs, Sensor]] = {}
        self._register = {k.__name__.lower(): self._own(f"register.{k.__name__}") for k in _KINDS}
        self._emitted = {k.__name__.lower(): self._own(f"emit.{k.__name__}") for k in _KINDS}
        self._failures = self._own("emit.failure")
        for counter in (*self._register.values(), *self._emitted.values(), self._failures):
            self.register(counter)
        _forks.on_fork(self, after_in_child=Collector._after_fork)

    def _after_fork(self) -> None:
        # A thread that was registering at the fork does not exist in the child: unlock.
        self._lock = threading.Lock()

    @staticmethod
    def _own(name: str) -> Counter:
        return Counter(f"biometrics.collector.{name.lower()}")

    def register(self, sensor: S) -> S:
        """Add a sensor; the same object twice is a no-op, a different one on its series an error.

        Returns the sensor, so ``c = collector.register(Counter("x"))`` reads naturally.
        """
        kind = _kind(sensor)
        with self._lock:
            family = self._families.setdefault(sensor.label, {})
            existing = family.get(sensor.label_pairs)
            if existing is sensor:
                return sensor
            if existing is not None:
                labels = dict(sensor.label_pairs)
                raise DuplicateSensorError(
                    f"another {type(existing).__name__} is already registered as "
                    f"{sensor.label!r} with labels {labels}: reuse that object, or give "
                    "this one a different label or labels"
                )
            if family:
                other = next(iter(family.values()))
                if type(other) is not type(sensor):
                    raise DuplicateSensorError(
                        f"{sensor.label!r} is already a {type(other).__name__}; one label "
                        f"cannot also name a {type(sensor).__name__}"
                    )
                if isinstance(sensor, Gauge) and isinstance(other, Gauge):
                    _same_merge(other, sensor)
            family[sensor.label_pairs] = sensor
            sensor.removed = False
        self._register[kind].click()
        return sensor

    def unregister(self, sensor: Sensor) -> bool:
        """Take ``sensor`` out: it is not emitted again.  False if it was not registered here.

        Marks it ``removed``, so emitters that keep readings (``SlashMetrics``) drop it too.
        Readings already written stay where they went (``serve`` keeps a series' last value
        until its source is forgotten).
        """
        with self._lock:
            family = self._families.get(sensor.label)
            if family is None or family.get(sensor.label_pairs) is not sensor:
                return False
            del family[sensor.label_pairs]
            if not family:  # the label is free again, for any kind
                del self._families[sensor.label]
            sensor.removed = True
        return True

    def register_missing(self, *sensors: Sensor) -> None:
        """Register each sensor whose series is still free; leave the others out silently.

        For sensor sets that several parties may add to one collector (two emissions, system
        sensors): the first set registered is the one emitted.
        """
        for sensor in sensors:
            with contextlib.suppress(DuplicateSensorError):
                self.register(sensor)

    def sensors(self) -> list[Sensor]:
        """Every registered sensor, children of one label together, in registration order."""
        with self._lock:
            return [s for family in self._families.values() for s in family.values()]

    def emit(self, emitter: Emitter, now_ms: int | None = None) -> None:
        """Emit every sensor with one timestamp; on failure, finish the batch, then raise.

        ``now_ms`` defaults to the wall clock in epoch milliseconds.  The first exception is
        re-raised unchanged (so ``OSError`` stays ``OSError``), with a note saying how many
        sensors failed; every failure is counted in ``biometrics.collector.emit.failure``.
        An emitter with a ``flush()`` method is flushed once the batch is written.
        """
        if now_ms is None:
            now_ms = _clock.now_ms()
        first: BaseException | None = None
        failures = 0
        sensors = self.sensors()
        for sensor in sensors:
            try:
                if isinstance(sensor, Counter):
                    self._emitted["counter"].click()
                    emitter.emit_counter(sensor, now_ms)
                elif isinstance(sensor, Gauge):
                    self._emitted["gauge"].click()
                    emitter.emit_gauge(sensor, now_ms)
                elif isinstance(sensor, Moments):
                    self._emitted["moments"].click()
                    emitter.emit_moments(sensor, now_ms)
                elif isinstance(sensor, Histogram):
                    self._emitted["histogram"].click()
                    emitter.emit_histogram(sensor, now_ms)
            except Exception as e:
                self._failures.click()
                failures += 1
                if first is None:
                    first = e
        flush = getattr(emitter, "flush", None)
        if callable(flush):
            try:
                flush()
            except Exception as e:
                self._failures.click()
                failures += 1
                first = first or e
        if first is not None:
            first.add_note(
                f"biometrics: {failures} of {len(sensors)} sensors failed to emit at {now_ms}"
            )
            raise first


def _same_merge(first: Gauge, other: Gauge) -> None:
    """Gauges of one label are one family on the page: one merge declaration for all of them.

    A segment declares a family's merge once (the first gauge of it written), so a second,
    different declaration would be silently ignored by ``serve``; refuse it where it is made.
    """
    if (first.merge, first.live_only) != (other.merge, other.live_only):
        raise DuplicateSensorError(
            f"gauge {other.label!r} declares merge={other.merge!r}, live_only={other.live_only} "
            f"but the gauges already registered under that label declare merge={first.merge!r}, "
            f"live_only={first.live_only}; one label has one merge declaration"
        )


_default: Collector | None = None
_default_lock = threading.Lock()


def default_collector() -> Collector:
    """The process-wide collector, created on first use."""
    global _default  # noqa: PLW0603 - the one deliberate piece of global state
    with _default_lock:
        if _default is None:
            _default = Collector()
        return _default
