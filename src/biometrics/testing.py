"""Test doubles shipped for users: an emitter that records readings instead of writing them."""

from __future__ import annotations

from dataclasses import dataclass, field

from .histogram import Histogram, HistogramReading
from .moments import Moments, MomentsReading
from .sensors import Counter, Gauge

__all__ = ["RecordingEmitter"]

Reading = int | float | MomentsReading | HistogramReading


@dataclass
class RecordingEmitter:
    """Keeps ``(kind, label, labels, reading, now_ms)`` tuples; can be told to fail on a label."""

    readings: list[tuple[str, str, dict[str, str], Reading, int]] = field(default_factory=list)
    fail_on: set[str] = field(default_factory=set)

    def _record(self, kind: str, label: str, labels: dict[str, str], r: Reading, t: int) -> None:
        if label in self.fail_on:
            raise OSError(f"RecordingEmitter told to fail on {label!r}")
        self.readings.append((kind, label, labels, r, t))

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
        return [r[1] for r in self.readings]
