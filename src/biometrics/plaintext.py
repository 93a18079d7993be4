"""The plain-text emitter of the Rust crate: one reading a line, for humans and logs."""

from __future__ import annotations

from typing import TextIO

from .histogram import Histogram
from .moments import Moments
from .sensors import Counter, Gauge, Sensor

__all__ = ["PlainTextEmitter"]


def _series(sensor: Sensor) -> str:
    if not sensor.label_pairs:
        return sensor.label
    inner = ",".join(f"{k}={v!r}" for k, v in sensor.label_pairs)
    return f"{sensor.label}{{{inner}}}"


class PlainTextEmitter:
    """One reading a line, as the Rust crate's ``PlainTextEmitter`` writes them.

    ``label now_ms value`` for counters and gauges, ``label now_ms n m1 m2 m3 m4`` for moments,
    and one ``label now_ms {le=X} count`` line per non-empty histogram bucket.  Meant for
    humans and logs; the Prometheus emitters are the machine-readable outputs.
    """

    def __init__(self, file: TextIO) -> None:
        self._file = file

    def emit_counter(self, counter: Counter, now_ms: int) -> None:
        """Write ``label now_ms count``."""
        self._file.write(f"{_series(counter)} {now_ms} {counter.read()}\n")

    def emit_gauge(self, gauge: Gauge, now_ms: int) -> None:
        """Write ``label now_ms value``."""
        self._file.write(f"{_series(gauge)} {now_ms} {gauge.read()!r}\n")

    def emit_moments(self, moments: Moments, now_ms: int) -> None:
        """Write ``label now_ms n m1 m2 m3 m4``."""
        r = moments.read()
        self._file.write(f"{_series(moments)} {now_ms} {r.n} {r.m1!r} {r.m2!r} {r.m3!r} {r.m4!r}\n")

    def emit_histogram(self, histogram: Histogram, now_ms: int) -> None:
        """Write one line per non-empty bucket, then the out-of-range counts when non-zero.

        Only non-empty ones: this is for eyes, not for merging (the Prometheus emitters list
        every bucket of the layout).  Counts are per bucket, not cumulative; ``le=inf`` is the
        ``+Inf`` bucket.
        """
        r = histogram.read()
        series = _series(histogram)
        lines = [f"{series} {now_ms} {{le={le!r}}} {n}\n" for le, n in r.buckets if n]
        if r.exceeds_max:
            lines.append(f"{series} {now_ms} {{exceeds_max}} {r.exceeds_max}\n")
        if r.is_negative:
            lines.append(f"{series} {now_ms} {{is_negative}} {r.is_negative}\n")
        self._file.write("".join(lines))
