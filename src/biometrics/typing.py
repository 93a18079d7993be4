"""The protocols of the core: what a Collector needs from wherever its readings go.

A module of its own so that every output (the segment writer, the in-memory page, the plain
text emitter, a test double) depends on the one definition and none on another's module.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .histogram import Histogram
from .moments import Moments
from .sensors import Counter, Gauge

__all__ = ["Emitter"]


@runtime_checkable
class Emitter(Protocol):
    """Where a Collector sends readings.  ``now_ms`` is the reading time in epoch milliseconds.

    An emitter may raise; the Collector counts the failure, carries on with the other sensors and
    re-raises the first error once the batch is done.
    """

    def emit_counter(self, counter: Counter, now_ms: int) -> None:
        """Write one counter reading."""

    def emit_gauge(self, gauge: Gauge, now_ms: int) -> None:
        """Write one gauge reading."""

    def emit_moments(self, moments: Moments, now_ms: int) -> None:
        """Write one moments reading."""

    def emit_histogram(self, histogram: Histogram, now_ms: int) -> None:
        """Write one histogram reading."""
