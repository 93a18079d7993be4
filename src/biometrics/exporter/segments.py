"""From segment text to whole readings: a counter value, a histogram, a set of moments.

A segment is a sequence of emits, each stamped with one ``now_ms``.  Histograms and moments are
spread over several lines (buckets, ``_sum``, ``_count``; ``_count``, ``_mean``, ``_m2``..), so
lines are grouped per (family, labels, timestamp) and a reading is complete when the timestamp
moves on or the segment ends.  Moments written by the Rust crate (count, mean, variance,
skewness, kurtosis; no ``_m2``..``_m4``) are turned back into central-moment sums.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from .._labels import LabelPairs
from ..moments import MomentsReading
from ..prometheus import Metadata, Parse, Sample
from .merge import HistogramValue

__all__ = ["Reading", "histogram_part", "readings", "source_of"]

_NAME = re.compile(r"(.*?)(\d+)\.prom")
_MS_DIGITS = 13
_GAUGE_PARTS = ("_mean", "_variance", "_skewness", "_kurtosis", "_m2", "_m3", "_m4")


class Reading(NamedTuple):
    """One whole reading of one series at one time, ready for the store."""

    kind: str
    """``counter``, ``gauge``, ``histogram`` or ``moments``."""
    family: str
    labels: LabelPairs
    value: Any
    """float, :data:`~biometrics.exporter.merge.HistogramValue` or ``MomentsReading``."""
    ts: int


def source_of(filename: str) -> tuple[str, int] | None:
    """``(source, epoch_ms)`` from ``<prefix><epoch_ms>.prom``; None if the name has no time.

    The time is the trailing run of digits, but at most 13 of them (milliseconds from 2001 to
    2286), so a prefix ending in a digit is still split right.  The source is the prefix with
    trailing ``.``, ``_`` or ``-`` removed, or ``"-"`` when that leaves nothing.
    """
    match = _NAME.fullmatch(filename)
    if match is None:
        return None
    prefix, digits = match.groups()
    if len(digits) > _MS_DIGITS:
        prefix, digits = prefix + digits[:-_MS_DIGITS], digits[-_MS_DIGITS:]
    return prefix.rstrip("._-") or "-", int(digits)


def _moments(parts: dict[str, float]) -> MomentsReading:
    n = int(parts["_count"])
    mean = parts["_mean"] if n > 0 and math.isfinite(parts["_mean"]) else 0.0
    if "_m2" in parts:
        m2, m3, m4 = (parts.get(k, 0.0) for k in ("_m2", "_m3", "_m4"))
    else:
        variance = parts.get("_variance", math.nan)
        m2 = variance * (n - 1) if n >= 2 and math.isfinite(variance) else 0.0
        skew, kurt = parts.get("_skewness", math.nan), parts.get("_kurtosis", math.nan)
        m3 = skew * m2**1.5 / math.sqrt(n) if m2 > 0 and math.isfinite(skew) else 0.0
        m4 = kurt * m2 * m2 / n if m2 > 0 and math.isfinite(kurt) else 0.0
    return MomentsReading(n, mean, m2, m3, m4)


class _Grouper:
    """Collects one emit's multi-line readings; ``flush`` turns them into readings."""

    def __init__(self, problem: Callable[[int, str], None]) -> None:
        self.problem = problem
        self.histograms: dict[tuple[str, LabelPairs, int], dict[str, Any]] = {}
        self.moments: dict[tuple[str, LabelPairs, int], dict[str, float]] = {}

    def flush(self) -> Iterator[Reading]:
        for (family, labels, ts), h in self.histograms.items():
            histogram = self._histogram(h)
            if histogram is not None:
                yield Reading("histogram", family, labels, histogram, ts)
        for (base, labels, ts), parts in self.moments.items():
            if "_count" in parts and "_mean" in parts:
                yield Reading("moments", base, labels, _moments(parts), ts)
                continue
            for suffix, value in parts.items():
                kind = "counter" if suffix == "_count" else "gauge"
                yield Reading(kind, base + suffix, labels, value, ts)
        self.histograms.clear()
        self.moments.clear()

    def _histogram(self, h: dict[str, Any]) -> HistogramValue | None:
        cumulative: dict[float, float] = h["buckets"]
        infinite = cumulative.pop(math.inf, None)
        buckets: dict[float, float] = {}
        previous = 0.0
        for le in sorted(cumulative):
            n = cumulative[le]
            if n < previous:
                self.problem(
                    h["lines"][le], f"bucket le={le!r} count {n} is below a lower bucket's"
                )
                return None
            if n > previous:
                buckets[le] = n - previous
            previous = n
        count = h.get("count", infinite if infinite is not None else previous)
        return buckets, h.get("sum", 0.0), count


def readings(parsed: Parse, default_ts: int) -> Iterator[Reading | Metadata]:
    """The readings of one segment, in file order of completion, plus its metadata lines.

    Samples without a timestamp take ``default_ts`` (the segment's name time).  Problems are
    recorded on ``parsed`` like the parser's own, with file and line.
    """
    types: dict[str, str] = {}
    grouper = _Grouper(parsed.report)
    current_ts: int | None = None
    for item in parsed:
        if isinstance(item, Metadata):
            if item.kind == "TYPE":
                types[item.name] = item.text
            yield item
            continue
        name, labels, value, ts, _ = item
        if ts is None:
            ts = default_ts
        if ts != current_ts:
            yield from grouper.flush()
            current_ts = ts
        kind = types.get(name)
        if kind is None:
            base, kind = histogram_part(name, types)
            if kind is not None:
                _add_histogram_line(grouper, base, item._replace(timestamp_ms=ts))
                continue
            kind = "gauge"
        elif kind == "histogram":
            _add_histogram_line(grouper, name, item._replace(timestamp_ms=ts))
            continue
        if kind == "counter" and name.endswith("_count"):
            grouper.moments.setdefault((name[:-6], labels, ts), {})["_count"] = value
            continue
        if kind == "gauge" and name.endswith(_GAUGE_PARTS):
            cut = name.rindex("_")
            grouper.moments.setdefault((name[:cut], labels, ts), {})[name[cut:]] = value
            continue
        yield Reading("counter" if kind == "counter" else "gauge", name, labels, value, ts)
    yield from grouper.flush()


def histogram_part(name: str, types: dict[str, str]) -> tuple[str, str | None]:
    """``(family, "histogram")`` for a line of a declared histogram, else ``(name, None)``."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if types.get(base) == "histogram":
                return base, "histogram"
    return name, None


def _add_histogram_line(grouper: _Grouper, base: str, sample: Sample) -> None:
    name, labels, value, ts, line = sample
    assert ts is not None
    le: float | None = None
    if name.endswith("_bucket"):
        rest = tuple(p for p in labels if p[0] != "le")
        if len(rest) == len(labels):
            grouper.problem(line, f"{name} has no le label")
            return
        le = float(dict(labels)["le"])
        labels = rest
    h = grouper.histograms.setdefault((base, labels, ts), {"buckets": {}, "lines": {}})
    if le is not None:
        h["buckets"][le] = value
        h["lines"][le] = line
    elif name.endswith("_sum"):
        h["sum"] = value
    elif name.endswith("_count"):
        h["count"] = value
    else:
        grouper.problem(line, f"{name}: a histogram has _bucket, _sum and _count lines only")
