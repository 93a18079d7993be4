"""What ``biometrics top`` shows: snapshots of a page, and what two of them say together.

A :class:`Snapshot` is one reading of a merged page (a spool folded the way ``serve`` folds
it, or a ``serve`` endpoint's ``/metrics``), taken at ``taken_ms``: counters, gauges and
histograms by series, plus what the reader knows of the sources and problems.  Two snapshots
give a :class:`Frame`: each counter's rate per second, each histogram's event rate and its
p50/p90/p99 over that window, the way PromQL's ``histogram_quantile`` estimates them (linear
interpolation inside the bucket the rank falls in), and the sources' ages.

Pure functions of their inputs, time included (``now_ms`` is the newer snapshot's
``taken_ms``), so every number the view prints can be checked against known bucket data.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from ..prometheus import Metadata, Sample, parse

__all__ = [
    "QUANTILES",
    "SELF_PREFIXES",
    "Buckets",
    "CounterRow",
    "Frame",
    "GaugeRow",
    "HistogramRow",
    "History",
    "SeriesKey",
    "Snapshot",
    "SourceInfo",
    "SourceRow",
    "SourceState",
    "compare",
    "histogram_quantile",
    "snapshot_from_page",
]

QUANTILES = (0.5, 0.9, 0.99)
SELF_PREFIXES = ("biometrics_collector_", "biometrics_exporter_", "biometrics_ship_",
                 "biometrics_emit_", "biometrics_prometheus_", "biometrics_runtime_")  # fmt: skip
"""Self-instrumentation: left out of the lists unless asked for, watched for trouble instead."""
_TROUBLE = ("fail", "error", "quarantined", "dropped", "conflict")
"""Words in a self-counter's name that make any increase of it a problem worth a line."""

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, order=True)
class SeriesKey:
    """A series as the page names it: its sample name and sorted labels."""

    name: str
    labels: Labels = ()

    def __str__(self) -> str:
        if not self.labels:
            return self.name
        pairs = ",".join(f'{k}="{v}"' for k, v in self.labels)
        return f"{self.name}{{{pairs}}}"


@dataclass(frozen=True, slots=True)
class Buckets:
    """One histogram series: cumulative counts per upper bound (``+Inf`` last), sum and count."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    sum: float = math.nan
    count: float = math.nan

    def minus(self, older: Buckets) -> Buckets | None:
        """What happened between ``older`` and this reading; None if the two cannot subtract.

        A reset (a count went down) or another layout gives None: the caller falls back to
        the reading since its start.
        """
        if older.bounds != self.bounds:
            return None
        counts = tuple(a - b for a, b in zip(self.counts, older.counts, strict=True))
        if any(c < 0 for c in counts):
            return None
        return Buckets(self.bounds, counts, self.sum - older.sum, self.count - older.count)


class SourceState(Enum):
    """Where a writer stands, judged from its last emission."""

    LIVE = "live"
    STALE = "stale"
    """No emission for longer than the stale threshold, and it never said it stopped."""
    STOPPED = "stopped"
    """Its last segment ends with ``# END``: it stopped cleanly."""


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What a reader knows of one source: its last emission, segments left, whether it ended."""

    name: str
    last_ms: int
    files: int = 0
    ended: bool = False


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One reading of a page at ``taken_ms``, by kind, with the reader's sources and problems."""

    taken_ms: int
    counters: Mapping[SeriesKey, float] = field(default_factory=dict)
    gauges: Mapping[SeriesKey, float] = field(default_factory=dict)
    histograms: Mapping[SeriesKey, Buckets] = field(default_factory=dict)
    sources: tuple[SourceInfo, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CounterRow:
    """A counter's total and its rate per second over the frame's window (None: no window yet)."""

    key: SeriesKey
    value: float
    rate: float | None


@dataclass(frozen=True, slots=True)
class HistogramRow:
    """A histogram's events per second and quantiles (NaN: no event to estimate from).

    ``windowed``: the quantiles are over the window; else over everything since the start
    (no window yet, or no event in it).
    """

    key: SeriesKey
    count: float
    rate: float | None
    quantiles: tuple[float, ...]
    windowed: bool


@dataclass(frozen=True, slots=True, order=True)
class GaugeRow:
    """A gauge's value now."""

    key: SeriesKey
    value: float


@dataclass(frozen=True, slots=True)
class SourceRow:
    """A source's age (seconds since its last emission) and state."""

    name: str
    age_s: float
    files: int
    state: SourceState


@dataclass(frozen=True, slots=True)
class Frame:
    """Everything one screen shows, busiest counters first."""

    taken_ms: int
    window_s: float | None
    counters: tuple[CounterRow, ...]
    histograms: tuple[HistogramRow, ...]
    gauges: tuple[GaugeRow, ...]
    sources: tuple[SourceRow, ...]
    problems: tuple[str, ...]


def histogram_quantile(  # noqa: PLR0911 - Prometheus's cases, one return each
    q: float, bounds: Iterable[float], counts: Iterable[float]
) -> float:
    """The ``q``-quantile of cumulative bucket ``counts``, as PromQL's ``histogram_quantile``.

    The rank ``q * total`` falls in one bucket, and the estimate is linear inside it, from the
    previous bucket's bound (0 for the first bucket, whose bound is returned if not positive);
    a rank in ``+Inf`` gives the last finite bound.  NaN without a ``+Inf`` bucket, with fewer
    than two buckets, or with no observation.  Counts that go down (a torn merge) are lifted to
    stay monotonic, as Prometheus does.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    pairs = sorted(zip(bounds, counts, strict=True))
    if len(pairs) < 2 or pairs[-1][0] != math.inf:
        return math.nan
    upper = [b for b, _ in pairs]
    cumulative: list[float] = []
    for _, c in pairs:
        cumulative.append(max(c, cumulative[-1]) if cumulative else c)
    total = cumulative[-1]
    if not total > 0:
        return math.nan
    rank = q * total
    b = bisect_left(cumulative, rank, 0, len(cumulative) - 1)
    if b == len(cumulative) - 1:
        return upper[-2]
    if b == 0 and upper[0] <= 0:
        return upper[0]
    start, count = 0.0, cumulative[b]
    if b > 0:
        start = upper[b - 1]
        count -= cumulative[b - 1]
        rank -= cumulative[b - 1]
    return start + (upper[b] - start) * (rank / count)


def snapshot_from_page(
    page: str | bytes,
    taken_ms: int,
    *,
    sources: tuple[SourceInfo, ...] = (),
    problems: Iterable[str] = (),
    path: str = "page",
) -> Snapshot:
    """A page's series sorted by kind (its TYPE lines); lines it cannot parse become problems.

    A summary's ``_count`` is a counter (its events); untyped samples are gauges.
    """
    data = page.encode() if isinstance(page, str) else page
    parsed = parse([data], path=path)
    tables = _Tables()
    for item in parsed:
        if isinstance(item, Metadata):
            if item.kind == "TYPE":
                tables.types[item.name] = item.text
            continue
        tables.take(item)
    found = (*problems, *(str(p) for p in parsed.problems))
    return Snapshot(taken_ms, tables.counters, tables.gauges, tables.histograms(), sources, found)


@dataclass(slots=True)
class _Tables:
    """A page's samples as they are parsed, by kind; histograms' parts until they are whole."""

    types: dict[str, str] = field(default_factory=dict)
    counters: dict[SeriesKey, float] = field(default_factory=dict)
    gauges: dict[SeriesKey, float] = field(default_factory=dict)
    buckets: dict[SeriesKey, dict[float, float]] = field(default_factory=dict)
    sums: dict[SeriesKey, float] = field(default_factory=dict)
    counts: dict[SeriesKey, float] = field(default_factory=dict)

    def take(self, item: Sample) -> None:
        """File one sample under its family's kind (the TYPE lines read so far)."""
        name, labels, types = item.name, item.labels, self.types
        kind = types.get(name)
        if kind in ("counter", "gauge"):
            (self.counters if kind == "counter" else self.gauges)[SeriesKey(name, labels)] = (
                item.value
            )
            return
        base, _, suffix = name.rpartition("_")
        family = types.get(base) or types.get(name[:-6] if name.endswith("_total") else "")
        if family == "counter" or (family == "summary" and suffix == "count"):
            self.counters[SeriesKey(name, labels)] = item.value  # OpenMetrics names x: x_total
        elif family == "histogram" and suffix == "bucket":
            le = dict(labels).get("le")
            rest = tuple(p for p in labels if p[0] != "le")
            if le is not None:
                self.buckets.setdefault(SeriesKey(base, rest), {})[float(le)] = item.value
        elif family == "histogram" and suffix in ("sum", "count"):
            (self.sums if suffix == "sum" else self.counts)[SeriesKey(base, labels)] = item.value
        elif family != "summary":
            self.gauges[SeriesKey(name, labels)] = item.value

    def histograms(self) -> dict[SeriesKey, Buckets]:
        """Every histogram series, its buckets in bound order."""
        out = {}
        for key, by_bound in self.buckets.items():
            bounds = tuple(sorted(by_bound))
            counts = tuple(by_bound[b] for b in bounds)
            out[key] = Buckets(bounds, counts, self.sums.get(key, math.nan),
                               self.counts.get(key, math.nan))  # fmt: skip
        return out


def _rate(new: float, old: float | None, seconds: float) -> float | None:
    """Per second; a counter that went down restarted from 0 (PromQL's reset rule)."""
    if old is None or seconds <= 0:
        return None
    return (new - old if new >= old else new) / seconds


def _shown(key: SeriesKey, include_self: bool) -> bool:
    return include_self or not key.name.startswith(SELF_PREFIXES)


def compare(
    old: Snapshot | None,
    new: Snapshot,
    *,
    stale_after_ms: int = 60_000,
    include_self: bool = False,
) -> Frame:
    """The frame ``new`` makes, with rates and window quantiles against ``old`` if given.

    Counters busiest first (by rate, then total); self-instrumentation (:data:`SELF_PREFIXES`)
    is left out unless ``include_self``, but an increase of any ``biometrics_*`` counter of
    failures, errors, quarantined segments, dropped series or conflicts is a problem line.
    A source is stale past ``stale_after_ms`` without an emission, unless it ended.
    """
    seconds = (new.taken_ms - old.taken_ms) / 1000 if old is not None else 0.0
    window = seconds if old is not None and seconds > 0 else None
    before: Mapping[SeriesKey, float] = {} if old is None else old.counters
    problems = list(new.problems)
    counters = []
    for key, value in new.counters.items():
        previous = before.get(key) if window is not None else None
        rate = _rate(value, previous, seconds)
        trouble = key.name.startswith("biometrics_") and any(w in key.name for w in _TROUBLE)
        if trouble and value > 0 and (old is None or rate is None or rate > 0):
            grew = "" if rate is None else f", {rate:.3g}/s now"
            problems.append(f"{key} = {_plain(value)}{grew}")
        if _shown(key, include_self):
            counters.append(CounterRow(key, value, rate))
    counters.sort(key=lambda r: (-(r.rate or 0.0), -r.value, r.key))
    histograms = [_histogram_row(key, h, old, seconds) for key, h in new.histograms.items()
                  if _shown(key, include_self)]  # fmt: skip
    histograms.sort(key=lambda r: (-(r.rate or 0.0), -_finite(r.count), r.key))
    gauges = sorted(GaugeRow(k, v) for k, v in new.gauges.items() if _shown(k, include_self))
    sources = []
    for info in new.sources:
        age = max(0.0, (new.taken_ms - info.last_ms) / 1000)
        state = SourceState.STOPPED if info.ended else SourceState.LIVE
        if not info.ended and age * 1000 > stale_after_ms:
            state = SourceState.STALE
            problems.append(f"source {info.name} is stale: no emission for {age:.0f} s")
        sources.append(SourceRow(info.name, age, info.files, state))
    sources.sort(key=lambda r: (r.state != SourceState.LIVE, r.age_s, r.name))
    return Frame(new.taken_ms, window, tuple(counters), tuple(histograms), tuple(gauges),
                 tuple(sources), tuple(problems))  # fmt: skip


def _histogram_row(
    key: SeriesKey, now: Buckets, old: Snapshot | None, seconds: float
) -> HistogramRow:
    earlier = None if old is None or seconds <= 0 else old.histograms.get(key)
    delta = None if earlier is None else now.minus(earlier)
    rate = None
    if delta is not None:
        rate = delta.counts[-1] / seconds if delta.counts else 0.0
    use = delta if delta is not None and delta.counts and delta.counts[-1] > 0 else None
    counts = (use or now).counts
    quantiles = tuple(histogram_quantile(q, now.bounds, counts) for q in QUANTILES)
    total = now.counts[-1] if now.counts else 0.0
    return HistogramRow(key, total, rate, quantiles, use is not None)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _plain(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:.6g}"


class History:
    """The snapshots of the last ``window_ms``: a frame's rates span the oldest of them.

    With a window no longer than the refresh interval, that is the previous snapshot: the rate
    between two successive readings.  A longer window smooths what writers that emit every few
    seconds make of a short refresh (a step, then nothing).  Bounded in time and count.
    """

    def __init__(self, window_ms: int, *, keep: int = 1_000) -> None:
        self.window_ms = window_ms
        self._kept: deque[Snapshot] = deque(maxlen=keep)

    def push(self, snapshot: Snapshot) -> Snapshot | None:
        """Keep ``snapshot``; the one to compare it with (the oldest within the window)."""
        kept = self._kept
        while len(kept) > 1 and snapshot.taken_ms - kept[1].taken_ms >= self.window_ms:
            kept.popleft()
        base = kept[0] if kept else None
        kept.append(snapshot)
        return base
