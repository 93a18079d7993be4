"""Test doubles shipped for users: an emitter that records readings instead of writing them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from .histogram import Histogram, HistogramReading
from .moments import Moments, MomentsReading
from .sensors import Counter, Gauge

__all__ = ["Recorded", "RecordingEmitter", "SensorKind", "SensorValue"]

SensorKind = Literal["counter", "gauge", "moments", "histogram"]
SensorValue = int | float | MomentsReading | HistogramReading
"""What a sensor's ``read()`` returns, whichever its kind."""


class Recorded(NamedTuple):
    """One recorded reading.  A named tuple, so tests may still compare it with a plain tuple."""

    kind: SensorKind
    label: str
    labels: dict[str, str]
    reading: SensorValue
    now_ms: int


@dataclass
class RecordingEmitter:
    """Keeps a :class:`Recorded` per reading, in order; can be told to fail on a label."""

    readings: list[Recorded] = field(default_factory=list)
    fail_on: set[str] = field(default_factory=set)

    def _record(
        self, kind: SensorKind, label: str, labels: dict[str, str], r: SensorValue, t: int
    ) -> None:
        if label in self.fail_on:
            raise OSError(f"RecordingEmitter told to fail on {label!r}")
        self.readings.append(Recorded(kind, label, labels, r, t))

    def emit_counter(self, counter: Counter, now_ms: int) -> None:
        """Record a counter reading."""
        self._record("counter", counter.label, dict(counter.labels), counter.read(), now_ms)

    def emit_gauge(self, gauge: Gauge, now_ms: int) -> None:
        """Record a gauge reading."""
        self._record("gauge", gauge.label, dict(gauge.labels), gauge.read(), now_ms)

    def emit_moments(self, moments: Moments, now_ms: int) -> None:
        """Record a moments reading."""
        self._record("moments", moments.label, dict(moments.labels), moments.read(), now_ms)

    def emit_histogram(self, histogram: Histogram, now_ms: int) -> None:
        """Record a histogram reading."""
        self._record("histogram", histogram.label, dict(histogram.labels), histogram.read(), now_ms)

    def labels_seen(self) -> list[str]:
        """The sensor labels recorded, in order."""
        return [r.label for r in self.readings]
