"""How one series' readings from many sources become one value: the aggregation rules.

Every series keeps, per source, what that source contributes, and a merged value that is
updated by the *difference* each new reading makes, so folding a reading costs the same whether
ten or ten thousand sources feed the series (the scrape never loops over sources).

Cumulative kinds (counters, histograms, moments) keep per source ``base`` + ``last``: a reading
lower than ``last`` means the source restarted under the same name, so ``last`` is folded into
``base`` and the merged value never goes backwards.  Every kind ignores a reading that is not
newer than the source's last one, which makes re-ingesting any segment a no-op.

A forgotten source (``--forget-after``) takes its gauges away; its cumulative contribution is
folded into ``retired`` while some live source still feeds the series (so rates stay right),
and the series disappears with its last live source.

The record layout (one object per series) is :mod:`biometrics.exporter.series`'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import repeat
from math import isfinite
from operator import add, sub
from typing import Any

from ..moments import MomentsReading
from ..prometheus.segments import HistogramValue
from .series import Contribution, Part, Series, as_list, as_number, newest_first, total

__all__ = [
    "GAUGE_MODES",
    "CounterSeries",
    "GaugeSeries",
    "HistogramSeries",
    "MomentsSeries",
    "Part",
    "Series",
]

GAUGE_MODES = ("sum", "min", "max", "latest", "all")


_MAX_COUNT = 2**53


class CounterSeries(Series):
    """Sum over sources of ``base + last``; monotonic through restarts and forgetting."""

    __slots__ = ("total",)
    kind = "counter"

    def __init__(self, labels: str = "") -> None:
        super().__init__(labels)
        self.total = 0.0

    def update(self, source: str, value: Any, ts: int) -> bool:
        # The serve hot path (every counter line): _get/_set inlined, no tuple for the inline
        # source, one for another.
        more = self.more
        if self.src == source:
            if ts <= self.t:
                return False
            base, last = self.a, self.b
            restarted = value < last
            if restarted:
                base = self.a = base + last
            self.b, self.t = value, ts
            if more is None:  # one source: its own sum, sharing its float when it can
                self.total = base + value if base else value
            else:
                self.total += value if restarted else value - last
        elif more is not None and (c := more.get(source)) is not None:
            base, last, t = c
            if ts <= t:
                return False
            if value < last:  # restarted: what it had counted stays in base
                more[source] = (base + last, value, ts)
                self.total += value
            else:
                more[source] = (base, value, ts)
                self.total += value - last
        else:
            self._set(source, 0.0, value, ts)
            self.total = value if self.more is None else self.total + value
        if not isfinite(self.total):
            self._exact()
        self.ts = max(self.ts, ts)
        return True

    def forget(self, source: str) -> bool:
        """Drop a source, its count kept under ``""``: the total shown stays as it was.

        The sum is the same, but recomputed exactly it may come out an ulp below the running
        total (fractional counts: 18.008000000000003 -> 18.008), and a counter that goes back
        at all is a reset to Prometheus: ``increase()`` would count the whole total again.
        """
        shown = self.total
        gone = super().forget(source)
        if not gone and isfinite(shown):
            self.total = shown
        return gone

    def _retire(self, contribution: Contribution) -> None:
        base, last, _ = contribution
        self._set("", self._retired(0.0) + base + last, 0.0, 0)

    def _exact(self) -> None:
        if self.more is None:  # one source: no float made, none shared lost
            a, b = self.a, self.b
            self.total = a + b if a else b
        else:
            self.total = total(a + b for _, a, b, _ in self.parts())
        self.ts = self._newest()


class GaugeSeries(Series):
    """One value from ``(value, ts)`` per source, by mode: sum, min, max or latest.

    (Mode ``all`` never reaches here: the store gives each source its own series.)
    """

    __slots__ = ("mode", "value")
    kind = "gauge"
    fields = ("value", "unused")

    def __init__(self, mode: str = "latest", labels: str = "") -> None:
        super().__init__(labels)
        self.mode = mode
        self.value = math.nan

    def update(self, source: str, value: Any, ts: int) -> bool:
        c = self._get(source)
        prev = 0.0
        if c is not None:
            prev, _, t = c
            if ts <= t:
                return False
        self._set(source, value, None, ts)
        mode = self.mode
        if mode == "sum" and math.isfinite(self.value) and math.isfinite(prev + value):
            self.value += value - prev
            self.ts = max(self.ts, ts)
        elif mode == "latest" and ts >= self.ts:
            self.value, self.ts = value, ts
        elif (mode == "max" and value >= self.value) or (mode == "min" and value <= self.value):
            self.value, self.ts = value, max(self.ts, ts)
        else:
            self._exact()
        return True

    def _exact(self) -> None:
        if self.more is None:  # one source: its value, whatever the mode
            self.value, self.ts = self.a, self.t
            return
        parts = self.parts()
        self.ts = self._newest()
        if self.mode == "sum":
            self.value = total(value for _, value, _, _ in parts)
        elif self.mode == "min":
            self.value = min(value for _, value, _, _ in parts)
        elif self.mode == "max":
            self.value = max(value for _, value, _, _ in parts)
        else:
            _, self.value, _, _ = max(parts, key=newest_first)

    def remode(self, mode: str) -> None:
        """Merge by ``mode`` from now on, the values held included (a declaration changed)."""
        self.mode = mode
        self._exact()

    def _decode_b(self, v: Any, what: str) -> Any:
        if v is not None:
            raise ValueError(f"{what}: expected null, got {v!r:.40}")
        return None


def _plus(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, ...]:
    """Bucket-wise sum; ``()`` is all zero (an empty histogram of any layout)."""
    if not b:
        return a
    if not a:
        return b
    return tuple(map(add, a, b))


def _minus(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, ...]:
    if not b:
        return a
    return tuple(map(sub, a or (0.0,) * len(b), b))


def _together(a: HistogramValue, b: HistogramValue) -> HistogramValue:
    return HistogramValue(b.bounds or a.bounds, _plus(a.cumulative, b.cumulative),
                          a.sum + b.sum, a.n + b.n)  # fmt: skip


_NO_COUNTS = HistogramValue((), (), 0.0, 0.0)
"""An empty histogram of any layout, shared (values are immutable)."""


class HistogramSeries(Series):
    """Bucket-wise sum over sources, in the family's layout (readings are projected onto it).

    A series fed by one source shares that source's cumulative tuple: no copy per reading.
    """

    __slots__ = ("count", "cumulative", "layout", "sum")
    kind = "histogram"

    def __init__(self, labels: str = "", layout: tuple[float, ...] = ()) -> None:
        super().__init__(labels)
        self.layout = layout
        """The family's layout: the finite ``le`` every reading here has been projected onto."""
        self.cumulative: tuple[float, ...] = ()
        """Merged cumulative counts at each bound of ``layout``; ``()`` while all are zero."""
        self.sum = 0.0
        self.count = 0.0

    def update(self, source: str, value: Any, ts: int) -> bool:
        c = self._get(source)
        if c is None:
            self._set(source, _NO_COUNTS, value, ts)
            if self.more is not None:
                self._add(value, _NO_COUNTS)
        else:
            base, last, t = c
            if ts <= t:
                return False
            if value.n < last.n:  # the source restarted: keep what it had counted
                base = _together(base, last)
                self._set(source, base, value, ts)
                if self.more is not None:
                    self._add(value, _NO_COUNTS)
            else:
                self._set(source, base, value, ts)
                if self.more is not None:
                    self._add(value, last)
        # One source: its own base + last, sharing its tuple when base is empty.
        if self.more is None or not math.isfinite(self.sum + self.count):
            self._exact()
        self.ts = max(self.ts, ts)
        return True

    def _add(self, value: HistogramValue, minus: HistogramValue) -> None:
        self.cumulative = _minus(_plus(self.cumulative, value.cumulative), minus.cumulative)
        self.sum += value.sum - minus.sum
        self.count += value.n - minus.n

    def _retire(self, contribution: Contribution) -> None:
        base, last, _ = contribution
        kept = _together(_together(self._retired(_NO_COUNTS), base), last)
        self._set("", kept, _NO_COUNTS, 0)

    def _exact(self) -> None:
        cumulative: tuple[float, ...] = ()
        count = 0.0
        parts = self.parts()
        for _, base, last, _ in parts:
            cumulative = _plus(_plus(cumulative, base.cumulative), last.cumulative)
            count += base.n + last.n
        self.cumulative, self.count = cumulative, count
        self.sum = total(v.sum for _, base, last, _ in parts for v in (base, last))
        self.ts = self._newest()

    def buckets(self) -> Iterator[tuple[float, float]]:
        """``(le, cumulative count)`` for every bound of the layout, empty buckets included."""
        return zip(self.layout, self.cumulative or repeat(0.0), strict=False)

    def _encode(self, v: HistogramValue) -> Any:
        return [list(v.cumulative), v.sum, v.n]

    def _decode(self, v: Any, what: str) -> HistogramValue:
        raw, s, n = as_list(v, what, 3)
        if type(raw) is not list or (raw and len(raw) != len(self.layout)):
            raise ValueError(f"{what}: cumulative: expected a list of {len(self.layout)} counts "
                             "(one per bound of the family's layout) or []")  # fmt: skip
        cumulative = tuple(as_number(x, f"{what}: cumulative") for x in raw)
        total_ = as_number(s, f"{what}: sum")
        return HistogramValue(self.layout if raw else (), cumulative, total_,
                              as_number(n, f"{what}: count"))  # fmt: skip


_EMPTY = MomentsReading()


class MomentsSeries(Series):
    """Moments merged exactly (Pébay) across sources; see :mod:`biometrics.moments`.

    The merged reading is kept up to date by subtract-then-add; after as many updates as there
    are sources it is rebuilt from scratch, so rounding never accumulates and the cost per
    update stays constant on average.
    """

    __slots__ = ("stale", "value")
    kind = "moments"

    def __init__(self, labels: str = "") -> None:
        super().__init__(labels)
        self.value = _EMPTY
        self.stale = 0

    def update(self, source: str, value: Any, ts: int) -> bool:
        c = self._get(source)
        if c is None:
            self._set(source, _EMPTY, value, ts)
            self.value = self.value + value
        else:
            base, last, t = c
            if ts <= t:
                return False
            if value.n < last.n:
                base = base + last
                self.value = self.value + value
            else:
                self.value = self.value - last + value
            self._set(source, base, value, ts)
        self.ts = max(self.ts, ts)
        self.stale += 1
        if self.stale > self.sources():
            self._exact()
        return True

    def _retire(self, contribution: Contribution) -> None:
        base, last, _ = contribution
        self._set("", self._retired(_EMPTY) + base + last, _EMPTY, 0)

    def _exact(self) -> None:
        merged = _EMPTY
        for _, base, last, _ in self.parts():
            merged = merged + base + last
        self.value, self.stale, self.ts = merged, 0, self._newest()

    def _encode(self, r: MomentsReading) -> Any:
        return [r.n, r.m1, r.m2, r.m3, r.m4]

    def _decode(self, v: Any, what: str) -> MomentsReading:
        n, *sums = as_list(v, what, 5)
        if type(n) is not int or not 0 <= n <= _MAX_COUNT:
            raise ValueError(f"{what}: count {n!r:.40} is not a whole number in [0, 2**53]")
        m1, m2, m3, m4 = (as_number(x, f"{what}: m{i}") for i, x in enumerate(sums, 1))
        if n == 0:
            return _EMPTY
        return MomentsReading(n, m1, m2, m3, m4)
