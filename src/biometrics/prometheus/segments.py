"""From segment text to whole readings: a counter value, a histogram, a set of moments.

A segment is a sequence of emits, each stamped with one ``now_ms``.  Histograms and moments are
spread over several lines (buckets, ``_sum``, ``_count``; ``_count``, ``_mean``, ``_m2``..), so
lines are grouped per (family, labels, timestamp) and a reading is complete when the timestamp
moves on or the segment ends.  Moments written by the Rust crate (count, mean, variance,
skewness, kurtosis; no ``_m2``..``_m4``) are turned back into central-moment sums.

A reading is taken only when it is whole and its numbers can be merged: a histogram needs its
``_count`` (or ``+Inf`` and ``_sum``), moments need every part their writer writes, counts are
finite whole non-negative numbers.  Anything else is dropped and reported at its line, so one
torn or poisoned reading never reaches another source's numbers.

This module is the reading half of the segment contract whose writing half is
:mod:`.segment_emitter`: file names to sources (:func:`source_of`), lines to readings
(:func:`readings`), sample names to series names (:class:`SeriesNames`).  ``serve``, ``ship``
and the offline tools all read segments through it.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from .._labels import LabelPairs
from ..moments import MomentsReading
from ._segment_file import EMITTED, END_LINE
from .exposition import counter_name
from .kinds import SampleKinds
from .parser import Metadata, Parse

__all__ = [
    "EMITTED",
    "END_LINE",
    "MAX_MARKER_LINE",
    "HistogramValue",
    "Reading",
    "ReadingKind",
    "project",
    "readings",
    "source_of",
    "whole_end",
]

_NAME = re.compile(r"(.*?)(\d+)\.prom")
_MS_DIGITS = 13
_MAX_COUNT = 2.0**53
"""Counts above this are not exact in a float; a histogram or moments count beyond is refused."""

Problem = Callable[..., None]
"""``problem(line, message, malformed=...)``, as :meth:`Parse.report`."""


ReadingKind = Literal["counter", "gauge", "histogram", "moments"]


class Reading(NamedTuple):
    """One whole reading of one series at one time, ready for the store.

    A named tuple, not a dataclass: the store takes millions of them, and the grouper makes one
    per series per emission.
    """

    kind: ReadingKind
    family: str
    labels: LabelPairs
    value: Any
    """float, :class:`HistogramValue` or ``MomentsReading``."""
    ts: int
    line: int = 0
    """The segment line that completed the reading (0 when not from a file)."""


class HistogramValue(NamedTuple):
    """One histogram reading as the exporter holds it (a tuple: millions are held).

    ``bounds`` are the finite ``le`` listed, ascending: the writer's layout as read from a
    segment, the family's once the store has taken it (:func:`project`).  ``cumulative[i]``
    counts observations ``<= bounds[i]``, ``n`` all of them (the ``+Inf`` bucket, ``_count``).
    Cumulative, not per bucket: it is what a page shows and what a projection reads, and the
    cumulative counts of a merge are the sums of the sources' cumulative counts.
    """

    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]
    sum: float
    n: float


def project(value: HistogramValue, layout: tuple[float, ...]) -> HistogramValue | str:
    """``value`` on ``layout`` (a family's), or why that cannot be done exactly.

    The cumulative count at each bound of ``layout`` is the reading's at the largest listed
    ``le`` <= that bound.  That is exact when the bound is listed, or when the reading's bucket
    the bound falls inside is empty; otherwise the observations in that bucket may lie on
    either side of the bound, and the reading cannot be shown in this layout.
    """
    bounds = value.bounds
    if bounds is layout:
        return value
    if bounds == layout:
        return value._replace(bounds=layout)
    cumulative, count = value.cumulative, value.n
    last = len(bounds) - 1
    out: list[float] = []
    for bound in layout:  # bounded by the layout
        i = bisect_right(bounds, bound) - 1
        below = cumulative[i] if i >= 0 else 0.0
        if i < 0 or bounds[i] != bound:
            above = cumulative[i + 1] if i < last else count
            if above != below:
                lo = f"{bounds[i]!r}" if i >= 0 else "-Inf"
                hi = f"{bounds[i + 1]!r}" if i < last else "+Inf"
                return (f"the family's bound le={bound!r} falls inside this reading's bucket "
                        f"({lo}, {hi}], which holds {above - below:.0f} observations")  # fmt: skip
        out.append(below)
    return HistogramValue(layout, tuple(out), value.sum, count)


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


MAX_MARKER_LINE = len(EMITTED) + 19 + 1
"""A ``# EMITTED <stamp>`` line's longest: the stamp is an int64 of ms."""
_STAMP = re.compile(rb"[0-9]{1,19}")


def whole_end(data: bytes, *, at_line_start: bool) -> int:
    r"""Where the last complete ``# EMITTED <stamp>\n`` line of ``data`` ends; 0 if there is none.

    Everything of a segment up to there is whole emissions, which its writer never changes: a
    reader may take that much of a segment still being written (``serve``, ``top``).
    ``at_line_start``: ``data`` begins a line, so a marker may open it.  A line that only looks
    like a marker (no newline yet, not a stamp) is passed over for an earlier one.
    """
    end = len(data)
    while end > 0:  # bounded: every turn moves ``end`` left
        at = data.rfind(EMITTED, 0, end)
        if at < 0:
            return 0
        end = at
        if at == 0 and not at_line_start:
            return 0
        if at > 0 and data[at - 1] != 0x0A:
            continue
        newline = data.find(b"\n", at, at + MAX_MARKER_LINE)
        if newline >= 0 and _STAMP.fullmatch(data, at + len(EMITTED), newline):
            return newline + 1
    return 0


def _is_count(x: float) -> bool:
    return 0.0 <= x <= _MAX_COUNT and x.is_integer()


def _moments(parts: dict[str, float]) -> MomentsReading | str:
    """The reading, or why it cannot be merged."""
    count = parts["_count"]
    if not _is_count(count):
        return f"moments count {count!r} is not a whole number in [0, 2**53]"
    n = int(count)
    mean = parts["_mean"]
    if n > 0 and not math.isfinite(mean):
        return f"moments mean {mean!r} is not finite"
    if n == 0:
        mean = 0.0
    if "_m2" in parts:
        m2, m3, m4 = (parts.get(k, 0.0) for k in ("_m2", "_m3", "_m4"))
    else:
        variance = parts.get("_variance", math.nan)
        m2 = variance * (n - 1) if n >= 2 and math.isfinite(variance) else 0.0
        skew, kurt = parts.get("_skewness", math.nan), parts.get("_kurtosis", math.nan)
        root = math.sqrt(m2) if m2 > 0 else 0.0  # root**3, not m2**1.5, which can raise
        m3 = skew * root * root * root / math.sqrt(n) if m2 > 0 and math.isfinite(skew) else 0.0
        m4 = kurt * m2 * m2 / n if m2 > 0 and math.isfinite(kurt) else 0.0
    if not (math.isfinite(m2) and math.isfinite(m3) and math.isfinite(m4)) or m2 < 0:
        return f"moments sums ({m2!r}, {m3!r}, {m4!r}) are not finite"
    return MomentsReading(n, mean, m2, m3, m4)


def _moments_complete(parts: dict[str, float]) -> bool:
    """Every part its writer writes: ours end in ``_m4``, the Rust crate's in ``_kurtosis``."""
    if "_count" not in parts or "_mean" not in parts:
        return False
    return "_m4" in parts if "_m2" in parts else "_kurtosis" in parts


@dataclass(slots=True)
class _PendingHistogram:
    """One histogram reading gathered from its lines until its emission ends."""

    line: int
    """The last line that added to it: where a problem with the whole reading is reported."""
    buckets: dict[float, float] = field(default_factory=dict)
    """``le`` -> cumulative count, as written (``+Inf`` included when written)."""
    bucket_lines: dict[float, int] = field(default_factory=dict)
    """``le`` -> the line of that bucket, for problems with one bucket."""
    sum: float | None = None
    count: float | None = None


@dataclass(slots=True)
class _PendingMoments:
    """One moments reading (or what may turn out to be plain gauges) gathered from its lines."""

    line: int
    """The last line that added to it."""
    parts: dict[str, float] = field(default_factory=dict)
    """Suffix (``_count``, ``_mean``, ``_m2``, ...) -> value."""


_Key = tuple[str, LabelPairs, int]
"""(family, labels, timestamp): one reading of one series."""


class _Grouper:
    """Collects one emit's multi-line readings; ``flush`` turns them into readings."""

    def __init__(self, problem: Problem, known: Mapping[str, str]) -> None:
        self.problem = problem
        self.known = known
        self.moments_families: set[str] = set()
        self.histograms: dict[_Key, _PendingHistogram] = {}
        self.moments: dict[_Key, _PendingMoments] = {}
        self.buckets: dict[LabelPairs, tuple[LabelPairs, float]] = {}
        """A bucket line's labels -> (the others, its ``le``): every emission repeats them."""

    def flush(self, *, at_end: bool) -> Iterator[Reading]:
        """The finished group's readings.

        ``at_end``: the segment ends here, so a writer may have stopped mid-emission.
        """
        cut = "cut short at the end of the segment (writer stopped?); dropped"
        for (family, labels, ts), h in self.histograms.items():
            line = h.line
            if h.count is None and not (math.inf in h.buckets and h.sum is not None):
                self.problem(line, f"histogram {family} reading has no _count: {cut}"
                             if at_end else f"histogram {family} reading has no _count; dropped",
                             malformed=not at_end)  # fmt: skip
                continue
            histogram = self._histogram(family, h)
            if histogram is not None:
                yield Reading("histogram", family, labels, histogram, ts, line)
        for (base, labels, ts), pending in self.moments.items():
            line, parts = pending.line, pending.parts
            if _moments_complete(parts):
                moments = _moments(parts)
                if isinstance(moments, str):
                    self.problem(line, f"{base}: {moments}; reading dropped")
                    continue
                self.moments_families.add(base)
                yield Reading("moments", base, labels, moments, ts, line)
                continue
            if base in self.moments_families or self.known.get(base) == "moments" or len(parts) > 1:
                self.problem(line, f"moments {base} reading is incomplete: {cut}"
                             if at_end else f"moments {base} reading is incomplete; dropped",
                             malformed=not at_end)  # fmt: skip
                continue
            for suffix, value in parts.items():
                if suffix == "_count":
                    name = counter_name(base + suffix)  # a plain counter after all (Rust's)
                    if _counter_ok(self.problem, name, value, line):
                        yield Reading("counter", name, labels, value, ts, line)
                else:
                    yield Reading("gauge", base + suffix, labels, value, ts, line)
        self.histograms.clear()
        self.moments.clear()

    def _histogram(self, family: str, h: _PendingHistogram) -> HistogramValue | None:
        cumulative = h.buckets
        lines = h.bucket_lines
        infinite = cumulative.pop(math.inf, None)
        bounds = tuple(sorted(cumulative))  # every bucket listed, empty ones too: the layout
        counts: list[float] = []
        previous = 0.0
        for le in bounds:
            n = cumulative[le]
            if not _is_count(n):
                self.problem(lines[le], f"bucket le={le!r} count {n!r} is not a whole number "
                             "in [0, 2**53]; histogram reading dropped")  # fmt: skip
                return None
            if n < previous:
                self.problem(lines[le], f"bucket le={le!r} count {n} is below a lower bucket's; "
                             "histogram reading dropped")  # fmt: skip
                return None
            counts.append(n)
            previous = n
        count = h.count
        if count is None:
            count = infinite if infinite is not None else previous
        line = h.line
        if not _is_count(count) or count < previous:
            self.problem(line, f"histogram {family} count {count!r} is not a whole number in "
                         f"[{previous:g}, 2**53]; reading dropped")  # fmt: skip
            return None
        if infinite is not None and infinite != count:
            self.problem(line, f"histogram {family} has le=\"+Inf\" {infinite!r} but _count "
                         f"{count!r}; reading dropped")  # fmt: skip
            return None
        total = 0.0 if h.sum is None else h.sum
        if not math.isfinite(total):
            self.problem(line, f"histogram {family} _sum {total!r} is not finite; reading dropped")
            return None
        return HistogramValue(bounds, tuple(counts), total, count)


def _counter_ok(problem: Problem, name: str, value: float, line: int) -> bool:
    if 0.0 <= value < math.inf:
        return True
    problem(line, f"counter {name} value {value!r} is not a finite number >= 0; reading dropped")
    return False


def readings(
    parsed: Parse,
    default_ts: int,
    known: Mapping[str, str] | None = None,
    *,
    declared: Mapping[str, str] | None = None,
) -> Iterator[Reading | Metadata]:
    """The readings of one segment, in file order of completion, plus its metadata lines.

    Samples without a timestamp take ``default_ts`` (the segment's name time).  ``known`` maps
    family names to the kind already held for them (the store's), used for samples this
    segment gives no TYPE line.  ``declared``: the TYPE lines of the segment's earlier parts,
    when ``parsed`` is a part read on from the middle; they declare as this part's own do.
    Problems are recorded on ``parsed`` like the parser's own, with file and line.  A reading
    not newer than its series' previous one in the same segment (a writer whose clock stepped
    back, or two readings in one millisecond) is reported: every reader keeps the earlier one,
    so the later is data lost unless said.
    """
    newest: dict[tuple[str, LabelPairs], int] = {}
    for item in _readings(parsed, default_ts, known, declared):
        if isinstance(item, Reading):
            key = (item.family, item.labels)
            before = newest.get(key)
            if before is not None and item.ts <= before:
                parsed.report(
                    item.line,
                    f"{item.family} reading at {item.ts} ms is not newer than its previous one "
                    f"in this segment ({before} ms); readers keep the earlier",
                    malformed=False,
                )
                continue
            newest[key] = item.ts
        yield item


def _readings(
    parsed: Parse,
    default_ts: int,
    known: Mapping[str, str] | None,
    declared: Mapping[str, str] | None = None,
) -> Iterator[Reading | Metadata]:
    kinds = SampleKinds(known if known is not None else {})
    for name, kind in (declared or {}).items():
        kinds.declare(name, kind)
    grouper = _Grouper(parsed.report, kinds.known)
    problem = parsed.report
    current_ts: int | None = None
    for item in parsed:
        if isinstance(item, Metadata):
            if item.kind == "TYPE":
                kinds.declare(item.name, item.text)
            yield item
            continue
        name, labels, value, ts, line = item
        if ts is None:
            ts = default_ts
        if ts != current_ts:
            yield from grouper.flush(at_end=False)
            current_ts = ts
        role, family = kinds.classify(name)
        if role == "histogram":
            _add_histogram_line(grouper, family, name, labels, value, ts, line)
        elif role == "moments":
            key = (family, labels, ts)
            pending = grouper.moments.get(key)
            if pending is None:
                pending = grouper.moments[key] = _PendingMoments(line)
            pending.parts[name[len(family) :]] = value
            pending.line = line
        elif role == "counter":
            if _counter_ok(problem, name, value, line):
                yield Reading("counter", family, labels, value, ts, line)
        else:
            yield Reading("gauge", name, labels, value, ts, line)
    yield from grouper.flush(at_end=True)


def _add_histogram_line(  # noqa: PLR0917 - a sample's fields, unpacked once by the caller
    grouper: _Grouper, base: str, name: str, labels: LabelPairs, value: float, ts: int, line: int
) -> None:
    le: float | None = None
    if name.endswith("_bucket"):
        split = grouper.buckets.get(labels)
        if split is None:
            rest = tuple(p for p in labels if p[0] != "le")
            if len(rest) == len(labels):
                grouper.problem(line, f"{name} has no le label")
                return
            split = grouper.buckets[labels] = (rest, float(dict(labels)["le"]))
        labels, le = split
    key = (base, labels, ts)
    h = grouper.histograms.get(key)
    if h is None:
        h = grouper.histograms[key] = _PendingHistogram(line)
    h.line = line
    if le is not None:
        h.buckets[le] = value
        h.bucket_lines[le] = line
    elif name.endswith("_sum"):
        h.sum = value
    elif name.endswith("_count"):
        h.count = value
    else:
        grouper.problem(line, f"{name}: a histogram has _bucket, _sum and _count lines only")
