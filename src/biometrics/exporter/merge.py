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
from typing import Any

from ..moments import MomentsReading
from .series import Part, Series, as_list, as_number, total

__all__ = [
    "GAUGE_MODES",
    "CounterSeries",
    "GaugeSeries",
    "HistogramSeries",
    "HistogramValue",
    "MomentsSeries",
    "Part",
    "Series",
]

GAUGE_MODES = ("sum", "min", "max", "latest", "all")

HistogramValue = tuple[dict[float, float], float, float]
"""(per-bucket counts keyed by finite upper bound, non-cumulative; sum; count)."""

_MAX_COUNT = 2**53


class CounterSeries(Series):
    """Sum over sources of ``base + last``; monotonic through restarts and forgetting."""

    __slots__ = ("total",)
    kind = "counter"

    def __init__(self, labels: str = "") -> None:
        super().__init__(labels)
        self.total = 0.0

    def update(self, source: str, value: Any, ts: int) -> bool:
        c = self._get(source)
        if c is None:
            self._set(source, 0.0, value, ts)
            self.total = value if self.more is None else self.total + value
        else:
            base, last, t = c
            if ts <= t:
                return False
            restarted = value < last
            if restarted:
                base += last
            self._set(source, base, value, ts)
            if self.more is None:  # one source: its own sum, sharing its float when it can
                self.total = base + value if base else value
            else:
                self.total += value if restarted else value - last
        if not math.isfinite(self.total):
            self._exact()
        self.ts = max(self.ts, ts)
        return True

    def _retire(self, contribution: tuple[Any, Any, int]) -> None:
        retired = self._get("")
        base = (0.0 if retired is None else retired[0]) + contribution[0] + contribution[1]
        self._set("", base, 0.0, 0)

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
        if c is not None and ts <= c[2]:
            return False
        self._set(source, value, None, ts)
        mode = self.mode
        prev = 0.0 if c is None else c[0]
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
            self.value = total(p[1] for p in parts)
        elif self.mode == "min":
            self.value = min(p[1] for p in parts)
        elif self.mode == "max":
            self.value = max(p[1] for p in parts)
        else:
            self.value = max(parts, key=lambda p: p[3])[1]

    def _decode_b(self, v: Any, what: str) -> Any:
        if v is not None:
            raise ValueError(f"{what}: expected null, got {v!r:.40}")
        return None


def _add_into(target: dict[float, float], buckets: dict[float, float], sign: float) -> None:
    for le, n in buckets.items():
        v = target.get(le, 0.0) + sign * n
        if v:
            target[le] = v
        else:
            target.pop(le, None)


_NO_COUNTS: HistogramValue = ({}, 0.0, 0.0)
"""An empty histogram, shared: never mutated (merges copy before adding)."""


class HistogramSeries(Series):
    """Bucket-wise sum over sources; each source's buckets may differ (they are unioned)."""

    __slots__ = ("buckets", "count", "sum")
    kind = "histogram"

    def __init__(self, labels: str = "") -> None:
        super().__init__(labels)
        self.buckets: dict[float, float] = {}
        self.sum = 0.0
        self.count = 0.0

    def _add(self, value: HistogramValue, sign: float) -> None:
        _add_into(self.buckets, value[0], sign)
        self.sum += sign * value[1]
        self.count += sign * value[2]

    def update(self, source: str, value: Any, ts: int) -> bool:
        c = self._get(source)
        if c is None:
            self._set(source, _NO_COUNTS, value, ts)
        else:
            base, last, t = c
            if ts <= t:
                return False
            if value[2] < last[2]:
                merged = dict(base[0])
                _add_into(merged, last[0], 1.0)
                base = (merged, base[1] + last[1], base[2] + last[2])
            else:
                self._add(last, -1.0)
            self._set(source, base, value, ts)
        self._add(value, 1.0)
        self.ts = max(self.ts, ts)
        if not math.isfinite(self.sum + self.count):
            self._exact()
        return True

    def _retire(self, contribution: tuple[Any, Any, int]) -> None:
        retired = self._get("")
        base = _NO_COUNTS if retired is None else retired[0]
        buckets, s, n = dict(base[0]), base[1], base[2]
        for part in contribution[:2]:
            _add_into(buckets, part[0], 1.0)
            s, n = s + part[1], n + part[2]
        self._set("", (buckets, s, n), _NO_COUNTS, 0)

    def _exact(self) -> None:
        self.buckets, self.count = {}, 0.0
        parts = self.parts()
        for _, base, last, _ in parts:
            self._add((base[0], 0.0, base[2]), 1.0)
            self._add((last[0], 0.0, last[2]), 1.0)
        self.sum = total(v[1] for p in parts for v in p[1:3])
        self.ts = self._newest()

    def cumulative(self) -> list[tuple[float, float]]:
        """Ascending ``(le, cumulative count)`` over the non-empty buckets."""
        out, running = [], 0.0
        for le in sorted(self.buckets):
            running += self.buckets[le]
            out.append((le, running))
        return out

    def _encode(self, v: HistogramValue) -> Any:
        return [[[le, n] for le, n in v[0].items()], v[1], v[2]]

    def _decode(self, v: Any, what: str) -> HistogramValue:
        raw, s, n = as_list(v, what, 3)
        if type(raw) is not list:
            raise ValueError(f"{what}: buckets: expected a list of [le, count]")
        buckets: dict[float, float] = {}
        for pair in raw:  # bounded by the list
            le, count = as_list(pair, f"{what}: bucket", 2)
            le = as_number(le, f"{what}: bucket le")
            if not math.isfinite(le) or le in buckets:
                raise ValueError(f"{what}: bucket le {le!r} is not finite, or repeated")
            buckets[le] = as_number(count, f"{what}: bucket {le!r}")
        return buckets, as_number(s, f"{what}: sum"), as_number(n, f"{what}: count")


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

    def _retire(self, contribution: tuple[Any, Any, int]) -> None:
        retired = self._get("")
        base = _EMPTY if retired is None else retired[0]
        self._set("", base + contribution[0] + contribution[1], _EMPTY, 0)

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
