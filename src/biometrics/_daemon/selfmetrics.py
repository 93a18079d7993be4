"""The daemons' own health as biometrics sensors, emitted like any program's.

Not a Collector: its ten self-counters would be noise on every daemon page.
"""

from __future__ import annotations

from ..histogram import Histogram
from ..sensors import Counter, Gauge
from ..typing import Emitter

__all__ = ["SensorSet"]


class SensorSet:
    """Sensors named ``<prefix>.<name>``, emitted together in declaration order."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._counters: list[Counter] = []
        self._gauges: list[Gauge] = []
        self._histograms: list[Histogram] = []

    def counter(self, name: str, text: str) -> Counter:
        """A counter ``<prefix>.<name>_total``."""
        self._counters.append(Counter(f"{self._prefix}.{name}_total", help=text))
        return self._counters[-1]

    def gauge(self, name: str, text: str) -> Gauge:
        """A gauge ``<prefix>.<name>``."""
        self._gauges.append(Gauge(f"{self._prefix}.{name}", help=text))
        return self._gauges[-1]

    def histogram(self, name: str, text: str) -> Histogram:
        """A histogram ``<prefix>.<name>``."""
        self._histograms.append(Histogram(f"{self._prefix}.{name}", help=text))
        return self._histograms[-1]

    def emit(self, emitter: Emitter, now_ms: int) -> None:
        """Hand every sensor to ``emitter``."""
        for counter in self._counters:
            emitter.emit_counter(counter, now_ms)
        for gauge in self._gauges:
            emitter.emit_gauge(gauge, now_ms)
        for histogram in self._histograms:
            emitter.emit_histogram(histogram, now_ms)
