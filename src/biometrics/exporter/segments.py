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
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

from .._labels import LabelPairs
from ..moments import MomentsReading
from ..prometheus import Metadata, Parse, Sample
from ..prometheus._text import counter_name
from .merge import HistogramValue

__all__ = ["Reading", "SeriesNames", "histogram_part", "readings", "source_of"]

_NAME = re.compile(r"(.*?)(\d+)\.prom")
_MS_DIGITS = 13
_HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")
_HISTOGRAM_COUNTERS = ("_exceeds_max", "_is_negative", "_exceeds_max_total", "_is_negative_total")
"""The out-of-range counters beside a histogram, ours (``_total``) and the Rust crate's (without);
counters whatever their TYPE line says (Rust declares them ``gauge`` since 0.10, untyped before)
and named canonically (``h_exceeds_max_total``) on the page."""
_GAUGE_PARTS = ("_mean", "_variance", "_skewness", "_kurtosis", "_m2", "_m3", "_m4")
_MAX_COUNT = 2.0**53
"""Counts above this are not exact in a float; a histogram or moments count beyond is refused."""

Problem = Callable[..., None]
"""``problem(line, message, malformed=...)``, as :meth:`Parse.report`."""


class Reading(NamedTuple):
    """One whole reading of one series at one time, ready for the store."""

    kind: str
    """``counter``, ``gauge``, ``histogram`` or ``moments``."""
    family: str
    labels: LabelPairs
    value: Any
    """float, :data:`~biometrics.exporter.merge.HistogramValue` or ``MomentsReading``."""
    ts: int
    line: int = 0
    """The segment line that completed the reading (0 when not from a file)."""


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


def _moments_complete(parts: dict[str, Any]) -> bool:
    """Every part its writer writes: ours end in ``_m4``, the Rust crate's in ``_kurtosis``."""
    if "_count" not in parts or "_mean" not in parts:
        return False
    return "_m4" in parts if "_m2" in parts else "_kurtosis" in parts


class _Grouper:
    """Collects one emit's multi-line readings; ``flush`` turns them into readings."""

    def __init__(self, problem: Problem, known: Mapping[str, str]) -> None:
        self.problem = problem
        self.known = known
        self.moments_families: set[str] = set()
        self.histograms: dict[tuple[str, LabelPairs, int], dict[str, Any]] = {}
        self.moments: dict[tuple[str, LabelPairs, int], dict[str, Any]] = {}

    def flush(self, *, at_end: bool) -> Iterator[Reading]:
        """The finished group's readings.

        ``at_end``: the segment ends here, so a writer may have stopped mid-emission.
        """
        cut = "cut short at the end of the segment (writer stopped?); dropped"
        for (family, labels, ts), h in self.histograms.items():
            line = h["line"]
            if "count" not in h and not (math.inf in h["buckets"] and "sum" in h):
                self.problem(line, f"histogram {family} reading has no _count: {cut}"
                             if at_end else f"histogram {family} reading has no _count; dropped",
                             malformed=not at_end)  # fmt: skip
                continue
            histogram = self._histogram(family, h)
            if histogram is not None:
                yield Reading("histogram", family, labels, histogram, ts, line)
        for (base, labels, ts), parts in self.moments.items():
            line = parts.pop("line")
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

    def _histogram(self, family: str, h: dict[str, Any]) -> HistogramValue | None:
        cumulative: dict[float, float] = h["buckets"]
        lines: dict[float, int] = h["lines"]
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
        count = h.get("count", infinite if infinite is not None else previous)
        line = h["line"]
        if not _is_count(count) or count < previous:
            self.problem(line, f"histogram {family} count {count!r} is not a whole number in "
                         f"[{previous:g}, 2**53]; reading dropped")  # fmt: skip
            return None
        if infinite is not None and infinite != count:
            self.problem(line, f"histogram {family} has le=\"+Inf\" {infinite!r} but _count "
                         f"{count!r}; reading dropped")  # fmt: skip
            return None
        total = h.get("sum", 0.0)
        if not math.isfinite(total):
            self.problem(line, f"histogram {family} _sum {total!r} is not finite; reading dropped")
            return None
        return HistogramValue(bounds, tuple(counts), total, count)


def _counter_ok(problem: Problem, name: str, value: float, line: int) -> bool:
    if 0.0 <= value < math.inf:
        return True
    problem(line, f"counter {name} value {value!r} is not a finite number >= 0; reading dropped")
    return False


class _Kinds:
    """What each sample name is part of.

    Its own TYPE line decides, else what the store already holds under that name (``known``),
    else it is a gauge.  Histogram parts are recognised by their family's TYPE in the same
    segment before their own, because the Rust crate also declares ``x_sum`` a gauge and
    ``x_count`` a counter.
    Falling back on ``known`` lets a segment whose first samples lack their TYPE line (the Rust
    crate does that after a rotation) still read as the types declared before; a counter is
    known under its canonical name (``http_requests_total`` for Rust's ``http_requests``).
    A counter's family is its canonical name, whatever the writer called it.
    """

    def __init__(self, known: Mapping[str, str]) -> None:
        self.types: dict[str, str] = {}
        self.known = known
        self._cache: dict[str, tuple[str, str]] = {}

    def declare(self, name: str, kind: str) -> None:
        self.types[name] = kind
        self._cache.clear()

    def kind_of(self, name: str) -> str | None:
        kind = self.types.get(name)
        if kind is None:
            known = self.known
            kind = known.get(name)
            if kind is None and known.get(name + "_total") == "counter":
                kind = "counter"
        return kind

    def classify(self, name: str) -> tuple[str, str]:
        """``(role, family)``: role is counter, gauge, histogram (a part) or moments (a part)."""
        found = self._cache.get(name)
        if found is None:
            found = self._cache[name] = self._classify(name)
        return found

    def _classify(self, name: str) -> tuple[str, str]:
        found = self._histogram_side(name, self.types)
        if found is None and name not in self.types:
            found = self._histogram_side(name, self.known)
        if found is not None:
            return found
        kind = self.kind_of(name)
        if kind is None and name.endswith("_total") and self.kind_of(name[:-6]) == "counter":
            kind = "counter"  # TYPE named the family, as OpenMetrics does: x counter, x_total 1
        if kind == "counter" and name.endswith("_count"):
            return "moments", name[:-6]
        if kind == "counter":
            return kind, counter_name(name)
        if kind == "histogram":
            return kind, name
        if kind is None or kind == "gauge":
            cut = name.rfind("_")
            if name.endswith(_GAUGE_PARTS) or (kind is None and name.endswith("_count")):
                base = name[:cut]
                if kind == "gauge" or self.kind_of(base) == "moments":
                    return "moments", base
        return "gauge", name

    @staticmethod
    def _histogram_side(name: str, types: Mapping[str, str]) -> tuple[str, str] | None:
        for suffix in _HISTOGRAM_PARTS:
            if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
                return "histogram", name[: -len(suffix)]
        for suffix in _HISTOGRAM_COUNTERS:
            if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
                return "counter", counter_name(name)
        return None


class SeriesNames:
    """The name each sample of a stream of segments is stored under, as ``serve``'s page has it.

    For the tools that pass samples on one by one (``ship``, ``backfill``, ``cat --raw``): a
    counter gets its canonical name (a Rust ``http_requests`` is ``http_requests_total``, as
    ours), so a series has one name whichever way it reaches Prometheus; everything else keeps
    its own.  Give it each segment's TYPE lines (:meth:`declare`) and call :meth:`segment`
    between segments: a segment's own TYPE lines decide, and declarations of earlier segments
    cover samples that come before theirs (the Rust crate's rotation), as the store's kinds
    do for ``serve``.
    """

    def __init__(self, max_known: int = 100_000) -> None:
        self._known: dict[str, str] = {}
        self._max_known = max_known
        self._kinds = _Kinds(self._known)

    def segment(self) -> None:
        """The next samples are another segment's: only earlier declarations are known."""
        self._kinds = _Kinds(self._known)

    def declare(self, name: str, kind: str) -> None:
        """A TYPE line of the current segment."""
        self._kinds.declare(name, kind)
        if len(self._known) < self._max_known or name in self._known:
            self._known[name] = kind

    def classify(self, name: str) -> tuple[str, str]:
        """``(role, family)`` as ``serve`` reads the sample: see :class:`_Kinds`."""
        return self._kinds.classify(name)

    def __call__(self, name: str) -> str:
        """The sample's series name in Prometheus."""
        role, family = self._kinds.classify(name)
        return family if role == "counter" else name


def readings(
    parsed: Parse, default_ts: int, known: Mapping[str, str] | None = None
) -> Iterator[Reading | Metadata]:
    """The readings of one segment, in file order of completion, plus its metadata lines.

    Samples without a timestamp take ``default_ts`` (the segment's name time).  ``known`` maps
    family names to the kind already held for them (the store's), used for samples this
    segment gives no TYPE line.  Problems are recorded on ``parsed`` like the parser's own, with
    file and line.
    """
    kinds = _Kinds(known if known is not None else {})
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
            _add_histogram_line(grouper, family, item._replace(timestamp_ms=ts))
        elif role == "moments":
            parts = grouper.moments.setdefault((family, labels, ts), {})
            parts[name[len(family) :]] = value
            parts["line"] = line
        elif role == "counter":
            if _counter_ok(problem, name, value, line):
                yield Reading("counter", family, labels, value, ts, line)
        else:
            yield Reading("gauge", name, labels, value, ts, line)
    yield from grouper.flush(at_end=True)


def histogram_part(name: str, types: dict[str, str]) -> tuple[str, str | None]:
    """``(family, "histogram")`` for a line of a declared histogram, else ``(name, None)``."""
    for suffix in _HISTOGRAM_PARTS:
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
    h["line"] = line
    if le is not None:
        h["buckets"][le] = value
        h["lines"][le] = line
    elif name.endswith("_sum"):
        h["sum"] = value
    elif name.endswith("_count"):
        h["count"] = value
    else:
        grouper.problem(line, f"{name}: a histogram has _bucket, _sum and _count lines only")
