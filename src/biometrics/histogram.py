"""Histogram: one fixed, declared bucket layout, so every process exposes the same ``le`` set.

A layout is a strictly increasing sequence of finite upper bounds; ``+Inf`` is implicit.  The
layout is fixed when the histogram is made and every reading, segment and page lists every
bucket of it, empty ones included: Prometheus sums buckets by ``le`` across processes and hosts
(``sum by (le)``), which is exact only if they all expose the same set, and a bucket that
appears later would start a series with no history (``rate()`` per bucket breaks).

Every observation counts in ``count`` and the ``+Inf`` bucket, whatever its value, so
``_count`` is the number of events (an SLO's denominator) and a 30 s request is never lost from
it.  Values below the first bound (negatives and -inf included) land in the first bucket, values
above the last finite bound (+inf and NaN included) only in ``+Inf``; ``sum`` adds the finite
ones.  ``exceeds_max`` and ``is_negative`` count, besides, what lies above the last bound and
below zero.  Bucketing rounds *up*: an observation lands in the first bucket whose bound is
``>=`` it, so every bound is a true Prometheus ``le``.

The layouts themselves (:data:`DEFAULT_BUCKETS`, :func:`sig_fig_boundaries`, the check every
layout passes) live in :mod:`biometrics.buckets`.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
import weakref
from bisect import bisect_left, bisect_right
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import accumulate
from operator import add, sub
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from ._batched import FOLD_AT, BatchedSensor, as_float
from .buckets import DEFAULT_BUCKETS, checked_layout, sig_fig_boundaries
from .errors import InvalidValueError
from .sensors import Counter

__all__ = ["Histogram", "HistogramReading"]


@dataclass(frozen=True, slots=True)
class HistogramReading:
    """An immutable histogram reading: every bucket of the layout, empty ones included.

    ``bounds`` is the layout (finite upper bounds, ascending); ``counts`` has one count per
    bucket, *not* cumulative: ``counts[i]`` for ``(bounds[i-1], bounds[i]]`` (the first bucket
    also takes everything below ``bounds[0]``) and ``counts[-1]`` for the ``+Inf`` bucket
    (above the last bound, +inf and NaN).  ``count`` is every observation, ``sum`` the finite
    ones'.  Left empty, ``counts`` means all zero.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...] = ()
    sum: float = 0.0
    count: int = 0
    exceeds_max: int = 0
    is_negative: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            object.__setattr__(self, "counts", (0,) * (len(self.bounds) + 1))
        elif len(self.counts) != len(self.bounds) + 1:
            raise InvalidValueError(
                f"{len(self.counts)} bucket counts for {len(self.bounds)} bounds: need one per "
                "bound plus one for +Inf"
            )

    @property
    def buckets(self) -> tuple[tuple[float, int], ...]:
        """``(le, count)`` for every bucket, ``+Inf`` (``math.inf``) last; not cumulative."""
        return tuple(zip((*self.bounds, math.inf), self.counts, strict=True))

    def cumulative(self) -> Iterator[tuple[float, int]]:
        """``(le, observations <= le)`` for every bucket, as Prometheus expects; ``+Inf`` last."""
        return zip((*self.bounds, math.inf), accumulate(self.counts), strict=True)

    def _combine(self, other: HistogramReading, sign: int) -> HistogramReading:
        if other.bounds is not self.bounds and other.bounds != self.bounds:
            raise InvalidValueError(
                "cannot combine readings of histograms with different bucket layouts"
            )
        counts = tuple(map(add if sign > 0 else sub, self.counts, other.counts))
        if any(n < 0 for n in counts):
            raise InvalidValueError(
                "subtraction would leave a negative bucket: subtract the earlier reading "
                "from the later one of the same histogram"
            )
        return HistogramReading(
            self.bounds,
            counts,
            self.sum + sign * other.sum,
            self.count + sign * other.count,
            self.exceeds_max + sign * other.exceeds_max,
            self.is_negative + sign * other.is_negative,
        )

    def __add__(self, other: object) -> HistogramReading:
        """The reading of both histograms' observations together (equal layouts only)."""
        if not isinstance(other, HistogramReading):
            return NotImplemented
        return self._combine(other, 1)

    def __sub__(self, other: object) -> HistogramReading:
        """What was observed between an earlier reading ``other`` and this one."""
        if not isinstance(other, HistogramReading):
            return NotImplemented
        return self._combine(other, -1)


class _OutOfRange(Counter):
    """A histogram's side counter whose ``read()`` folds the histogram first, so it is exact.

    Out-of-range observations are only sorted out in a fold; without this, ``is_negative`` and
    ``exceeds_max`` would read stale until the next read of the histogram.  ``observe`` is not
    touched (it still only appends).  The histogram is held weakly: its counters may outlive it
    without keeping it, and its pending observations, alive.
    """

    __slots__ = ("_owner",)

    def __init__(self, owner: Histogram, label: str, labels: Mapping[str, object] | None) -> None:
        super().__init__(label, labels=labels)
        self._owner = weakref.ref(owner)

    def read(self) -> int:
        """The count including observations not folded yet."""
        owner = self._owner()
        if owner is not None:
            owner._fold()
        return int(super().read())  # only ever clicked: whole (read() is float after inc(0.5))


P = ParamSpec("P")
R = TypeVar("R")


class _Timer:
    """Observes elapsed wall-clock seconds; a context manager and a decorator."""

    __slots__ = ("_histogram", "_start")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._start = 0.0

    def __enter__(self) -> _Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._histogram.observe(time.perf_counter() - self._start)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        observe = self._histogram.observe
        if inspect.iscoroutinefunction(fn):
            coro_fn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def timed_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                start = time.perf_counter()
                try:
                    return await coro_fn(*args, **kwargs)
                finally:
                    observe(time.perf_counter() - start)

            return cast(Callable[P, R], timed_async)

        @functools.wraps(fn)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                observe(time.perf_counter() - start)

        return timed


class Histogram(BatchedSensor):
    """A distribution in a fixed bucket layout: ``buckets=`` or :data:`DEFAULT_BUCKETS`.

    ``Histogram("h", buckets=[0.1, 0.5, 1])`` declares the layout (finite, strictly increasing;
    ``+Inf`` is implicit).  The older keywords ``sig_figs``, ``min_value`` and ``max_value``
    still work and mean ``buckets=sig_fig_boundaries(sig_figs, min_value, max_value)`` (2,
    1e-9 and 1e12 where left out): every bound within 10% of the next, but 90 buckets a decade,
    and every one is a series on the page.

    ``observe`` never raises and counts every observation (see the module docstring):
    ``count`` and the ``+Inf`` bucket see all of them; ``exceeds_max`` (above the last bound,
    +inf, NaN) and ``is_negative`` (below zero, -inf) count the unusual ones besides.
    """

    __slots__ = (
        "__weakref__",
        "_bounds",
        "_count",
        "_counts",
        "_sum",
        "_top",
        "exceeds_max",
        "is_negative",
    )

    _reserved_labels = frozenset({"le"})

    def __init__(
        self,
        label: str,
        *,
        buckets: Iterable[float] | None = None,
        help: str | None = None,
        labels: Mapping[str, object] | None = None,
        sig_figs: int | None = None,
        min_value: float | None = None,
        max_value: float | None = None,
    ) -> None:
        super().__init__(label, help=help, labels=labels)
        sig_fig = (sig_figs, min_value, max_value) != (None, None, None)
        if buckets is not None and sig_fig:
            raise InvalidValueError(
                f"histogram {label!r}: buckets= declares the layout, and sig_figs, min_value "
                "and max_value declare another (a sig-fig one); pass one or the other"
            )
        if buckets is not None:
            self._bounds = checked_layout(buckets)
        elif sig_fig:
            self._bounds = sig_fig_boundaries(
                2 if sig_figs is None else sig_figs,
                1e-9 if min_value is None else float(min_value),
                1e12 if max_value is None else float(max_value),
            )
        else:
            self._bounds = DEFAULT_BUCKETS
        self._top = self._bounds[-1]
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0
        self._count = 0
        self.exceeds_max: Counter = _OutOfRange(self, f"{label}.exceeds_max", labels)
        """Observations above the last bound, +inf and NaN (also in ``+Inf``); exact when read."""
        self.is_negative: Counter = _OutOfRange(self, f"{label}.is_negative", labels)
        """Observations below zero, -inf included (also in their bucket); exact when read."""

    @property
    def bounds(self) -> tuple[float, ...]:
        """The layout: every finite bucket bound (``le``), ascending; ``+Inf`` is implicit."""
        return self._bounds

    def observe(self, x: float) -> None:
        """Record one observation."""
        pending = self._pending
        pending.append(x)
        if len(pending) >= FOLD_AT:
            self._fold()

    def observe_n(self, x: float, n: int) -> None:
        """Record ``n`` observations of the same value (``n`` a non-negative int)."""
        if type(n) is not int or n < 0:
            raise InvalidValueError(
                f"histogram {self.label!r}: observe_n() takes a non-negative int count, got {n!r}"
            )
        if n:
            with self._fold_lock:
                self._apply_weighted(as_float(x), n)

    def time(self) -> _Timer:
        """Observe elapsed seconds: ``with h.time(): ...`` or ``@h.time()``."""
        return _Timer(self)

    def _apply(self, batch: list[float]) -> None:
        top = self._top
        try:
            inside = [x for x in batch if x <= top]  # NaN, +inf and above the layout fail
        except TypeError:
            batch = [as_float(x) for x in batch]
            inside = [x for x in batch if x <= top]
        counts = self._counts
        above = len(batch) - len(inside)
        total = 0.0
        negative = 0
        if above:
            counts[-1] += above
            self.exceeds_max.count(above)
            total = _fsum([x for x in batch if top < x < math.inf])
            if top < 0.0:
                negative = sum(1 for x in batch if top < x < 0.0)
        if inside:
            # Sorted, the batch is walked one occupied bucket at a time: two C-level bisects per
            # bucket instead of one per observation.
            inside.sort()
            negative += bisect_left(inside, 0.0)
            bounds = self._bounds
            i, n, b = 0, len(inside), 0
            while i < n:
                b = bisect_left(bounds, inside[i], b)
                j = bisect_right(inside, bounds[b], i)
                counts[b] += j - i
                i = j
            if inside[0] == -math.inf:
                inside = inside[bisect_right(inside, -math.inf) :]
            total += _fsum(inside)
        if negative:
            self.is_negative.count(negative)
        self._sum += total
        self._count += len(batch)

    def _apply_weighted(self, x: float, n: int) -> None:
        if x <= self._top:
            self._counts[bisect_left(self._bounds, x)] += n
        else:
            self._counts[-1] += n
            self.exceeds_max.count(n)
        if x < 0.0:
            self.is_negative.count(n)
        if -math.inf < x < math.inf:
            self._sum += x * n
        self._count += n

    def read(self) -> HistogramReading:
        """Everything observed so far, as one immutable reading."""
        self._fold()
        with self._fold_lock:
            return HistogramReading(
                self._bounds,
                tuple(self._counts),
                self._sum,
                self._count,
                # Counter.read, not the override: it would fold again, taking the lock we hold.
                int(Counter.read(self.exceeds_max)),
                int(Counter.read(self.is_negative)),
            )


def _fsum(xs: list[float]) -> float:
    """Exact where it can be; a plain sum (``inf``) where ``fsum`` overflows."""
    try:
        return math.fsum(xs)
    except OverflowError:
        return sum(xs, 0.0)
