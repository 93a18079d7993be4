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
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

from ..moments import MomentsReading

__all__ = [
    "GAUGE_MODES",
    "CounterSeries",
    "GaugeSeries",
    "HistogramSeries",
    "HistogramValue",
    "MomentsSeries",
    "Series",
]

GAUGE_MODES = ("sum", "min", "max", "latest", "all")

HistogramValue = tuple[dict[float, float], float, float]
"""(per-bucket counts keyed by finite upper bound, non-cumulative; sum; count)."""


def total(values: Iterable[float]) -> float:
    """The exact sum where it exists; ``inf``/``nan`` (never an exception) where it does not.

    ``math.fsum`` raises on an overflowing partial sum and on ``inf + -inf``; a merged value
    must never crash the daemon or make its snapshot unloadable.
    """
    items = list(values)
    try:
        return math.fsum(items)
    except (OverflowError, ValueError):
        return sum(items, 0.0)


class Series:
    """One merged series: per-source contributions plus the merged value."""

    __slots__ = ("contrib", "ts")
    kind: ClassVar[str] = ""

    def __init__(self) -> None:
        self.contrib: dict[str, Any] = {}
        self.ts = 0

    def update(self, source: str, value: Any, ts: int) -> bool:  # pragma: no cover - abstract
        """Fold a reading; False (and no change) if it is not newer than the source's last."""
        raise NotImplementedError

    def forget(self, source: str) -> bool:
        """Drop a source; True when no live source is left and the series should disappear."""
        c = self.contrib.pop(source, None)
        if len(self.contrib) - ("" in self.contrib) == 0:
            return True
        if c is not None:
            self._retire(c)
        self._exact()
        return False

    def _retire(self, contribution: list[Any]) -> None:
        """Keep a forgotten source's cumulative part under the pseudo-source ``""``."""

    def _exact(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_json(self) -> Any:  # pragma: no cover - abstract
        """The state, as JSON-ready lists and numbers."""
        raise NotImplementedError

    def load_json(self, data: Any) -> None:  # pragma: no cover - abstract
        """Restore what :meth:`to_json` gave."""
        raise NotImplementedError

    def _newest(self) -> int:
        return max((c[-1] for c in self.contrib.values()), default=0)


class CounterSeries(Series):
    """Sum over sources of ``base + last``; monotonic through restarts and forgetting."""

    __slots__ = ("total",)
    kind = "counter"

    def __init__(self) -> None:
        super().__init__()
        self.total = 0.0

    def update(self, source: str, value: Any, ts: int) -> bool:
        c = self.contrib.get(source)
        if c is None:
            self.contrib[source] = [0.0, value, ts]
            self.total += value
        elif ts <= c[2]:
            return False
        else:
            if value < c[1]:
                c[0] += c[1]
                self.total += value
            else:
                self.total += value - c[1]
            c[1], c[2] = value, ts
            if not math.isfinite(self.total):
                self._exact()
        self.ts = max(self.ts, ts)
        return True

    def _retire(self, contribution: list[Any]) -> None:
        self.contrib.setdefault("", [0.0, 0.0, 0])[0] += contribution[0] + contribution[1]

    def _exact(self) -> None:
        self.total = total(c[0] + c[1] for c in self.contrib.values())
        self.ts = self._newest()

    def to_json(self) -> Any:
        return self.contrib

    def load_json(self, data: Any) -> None:
        self.contrib = {k: [float(v[0]), float(v[1]), int(v[2])] for k, v in data.items()}
        self._exact()


class GaugeSeries(Series):
    """One value from ``(value, ts)`` per source, by mode: sum, min, max or latest.

    (Mode ``all`` never reaches here: the store gives each source its own series.)
    """

    __slots__ = ("mode", "value")
    kind = "gauge"

    def __init__(self, mode: str = "latest") -> None:
        super().__init__()
        self.mode = mode
        self.value = math.nan

    def update(self, source: str, value: Any, ts: int) -> bool:
        c = self.contrib.get(source)
        if c is not None and ts <= c[1]:
            return False
        old = math.nan if c is None else c[0]
        self.contrib[source] = [value, ts]
        mode = self.mode
        prev = 0.0 if c is None else old
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
        entries = self.contrib.values()
        self.ts = self._newest()
        if self.mode == "sum":
            self.value = total(c[0] for c in entries)
        elif self.mode == "min":
            self.value = min(c[0] for c in entries)
        elif self.mode == "max":
            self.value = max(c[0] for c in entries)
        else:
            self.value = max(entries, key=lambda c: c[1])[0]

    def to_json(self) -> Any:
        return self.contrib

    def load_json(self, data: Any) -> None:
        self.contrib = {k: list(v) for k, v in data.items()}
        self._exact()


def _add_into(target: dict[float, float], buckets: dict[float, float], sign: float) -> None:
    for le, n in buckets.items():
        v = target.get(le, 0.0) + sign * n
        if v:
            target[le] = v
        else:
            target.pop(le, None)


class HistogramSeries(Series):
    """Bucket-wise sum over sources; each source's buckets may differ (they are unioned)."""

    __slots__ = ("buckets", "count", "sum")
    kind = "histogram"

    def __init__(self) -> None:
        super().__init__()
        self.buckets: dict[float, float] = {}
        self.sum = 0.0
        self.count = 0.0

    def _add(self, value: HistogramValue, sign: float) -> None:
        _add_into(self.buckets, value[0], sign)
        self.sum += sign * value[1]
        self.count += sign * value[2]

    def update(self, source: str, value: Any, ts: int) -> bool:
        c = self.contrib.get(source)
        if c is None:
            self.contrib[source] = [({}, 0.0, 0.0), value, ts]
        elif ts <= c[2]:
            return False
        else:
            last: HistogramValue = c[1]
            if value[2] < last[2]:
                base = c[0]
                merged = dict(base[0])
                _add_into(merged, last[0], 1.0)
                c[0] = (merged, base[1] + last[1], base[2] + last[2])
            else:
                self._add(last, -1.0)
            c[1], c[2] = value, ts
        self._add(value, 1.0)
        self.ts = max(self.ts, ts)
        if not math.isfinite(self.sum + self.count):
            self._exact()
        return True

    def _retire(self, contribution: list[Any]) -> None:
        retired = self.contrib.setdefault("", [({}, 0.0, 0.0), ({}, 0.0, 0.0), 0])
        for part in contribution[:2]:
            buckets = dict(retired[0][0])
            _add_into(buckets, part[0], 1.0)
            retired[0] = (buckets, retired[0][1] + part[1], retired[0][2] + part[2])

    def _exact(self) -> None:
        self.buckets, self.count = {}, 0.0
        for base, last, _ in self.contrib.values():
            self._add((base[0], 0.0, base[2]), 1.0)
            self._add((last[0], 0.0, last[2]), 1.0)
        self.sum = total(p[1] for c in self.contrib.values() for p in c[:2])
        self.ts = self._newest()

    def cumulative(self) -> list[tuple[float, float]]:
        """Ascending ``(le, cumulative count)`` over the non-empty buckets."""
        out, running = [], 0.0
        for le in sorted(self.buckets):
            running += self.buckets[le]
            out.append((le, running))
        return out

    def to_json(self) -> Any:
        def value(v: HistogramValue) -> list[Any]:
            return [list(v[0].items()), v[1], v[2]]

        return {k: [value(c[0]), value(c[1]), c[2]] for k, c in self.contrib.items()}

    def load_json(self, data: Any) -> None:
        def value(v: list[Any]) -> HistogramValue:
            return ({float(le): float(n) for le, n in v[0]}, float(v[1]), float(v[2]))

        self.contrib = {k: [value(c[0]), value(c[1]), int(c[2])] for k, c in data.items()}
        self._exact()


_EMPTY = MomentsReading()


class MomentsSeries(Series):
    """Moments merged exactly (Pébay) across sources; see :mod:`biometrics.moments`.

    The merged reading is kept up to date by subtract-then-add; after as many updates as there
    are sources it is rebuilt from scratch, so rounding never accumulates and the cost per
    update stays constant on average.
    """

    __slots__ = ("stale", "value")
    kind = "moments"

    def __init__(self) -> None:
        super().__init__()
        self.value = _EMPTY
        self.stale = 0

    def update(self, source: str, value: Any, ts: int) -> bool:
        c = self.contrib.get(source)
        if c is None:
            self.contrib[source] = [_EMPTY, value, ts]
            self.value = self.value + value
        elif ts <= c[2]:
            return False
        else:
            if value.n < c[1].n:
                c[0] = c[0] + c[1]
                self.value = self.value + value
            else:
                self.value = self.value - c[1] + value
            c[1], c[2] = value, ts
        self.ts = max(self.ts, ts)
        self.stale += 1
        if self.stale > len(self.contrib):
            self._exact()
        return True

    def _retire(self, contribution: list[Any]) -> None:
        retired = self.contrib.setdefault("", [_EMPTY, _EMPTY, 0])
        retired[0] = retired[0] + contribution[0] + contribution[1]

    def _exact(self) -> None:
        total = _EMPTY
        for base, last, _ in self.contrib.values():
            total = total + base + last
        self.value, self.stale, self.ts = total, 0, self._newest()

    def to_json(self) -> Any:
        def value(r: MomentsReading) -> list[float]:
            return [r.n, r.m1, r.m2, r.m3, r.m4]

        return {k: [value(c[0]), value(c[1]), c[2]] for k, c in self.contrib.items()}

    def load_json(self, data: Any) -> None:
        def value(v: list[float]) -> MomentsReading:
            return MomentsReading(int(v[0]), *map(float, v[1:]))

        self.contrib = {k: [value(c[0]), value(c[1]), int(c[2])] for k, c in data.items()}
        self._exact()
