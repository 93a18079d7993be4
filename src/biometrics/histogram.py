"""Histogram with significant-figure bucket boundaries, usable as Prometheus ``le`` buckets.

Boundaries follow the Rust ``sig_fig_histogram`` sequence: with ``s`` significant figures there
are ``B = 9 * 10**(s-1)`` boundaries per decade and bucket ``b`` has boundary
``(b % B + O) * 10**(b // B - s + 1)`` with ``O = 10**(s-1)``.  The Rust sequence starts at 1.0;
we extend the same formula to negative ``b`` (0.10, 0.11, ... 0.99 for two figures, and so on)
down to ``min_value``, because Python users observe seconds.  Each boundary is the double nearest
its decimal value (``float("1.1")``, not ``11 * 0.1``), so it prints as the short decimal.

Bucketing rounds *up*: an observation lands in the first bucket whose boundary is ``>=`` it
(a binary search over the boundaries), so every bucket's boundary is a true Prometheus ``le``.
The Rust crate rounds to the *nearest* boundary instead, which cannot be used as ``le``.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
import weakref
from bisect import bisect_left, bisect_right
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from ._batched import FOLD_AT, BatchedSensor, as_float
from .errors import InvalidValueError
from .sensors import Counter

__all__ = ["Histogram", "HistogramReading", "sig_fig_boundaries", "sig_fig_boundary"]

MAX_BUCKETS = 1_000_000
"""Refuse configurations whose boundary list alone would take tens of megabytes."""


def sig_fig_boundary(b: int, sig_figs: int) -> float:
    """Boundary of bucket ``b`` (any integer, negative below 1.0) with ``sig_figs`` figures."""
    buckets, offset = 9 * 10 ** (sig_figs - 1), 10 ** (sig_figs - 1)
    return float(f"{b % buckets + offset}e{b // buckets - sig_figs + 1}")


def sig_fig_boundaries(sig_figs: int, min_value: float, max_value: float) -> tuple[float, ...]:
    """All boundaries from the first ``>= min_value`` to the first ``>= max_value``, ascending.

    Cached, so histograms configured alike share one tuple (and compare by identity).
    """
    if not isinstance(sig_figs, int) or isinstance(sig_figs, bool) or not 1 <= sig_figs <= 4:
        raise InvalidValueError(f"sig_figs must be an int in 1..4, got {sig_figs!r}")
    if not (0.0 < min_value < max_value < math.inf):
        raise InvalidValueError(
            f"need 0 < min_value < max_value < inf, got min_value={min_value!r}, "
            f"max_value={max_value!r}"
        )
    per_decade = 9 * 10 ** (sig_figs - 1)
    first_decade = math.floor(math.log10(min_value)) - 1
    last_decade = math.floor(math.log10(max_value)) + 1
    if (last_decade - first_decade) * per_decade > MAX_BUCKETS:
        raise InvalidValueError(
            f"{sig_figs} significant figures from {min_value!r} to {max_value!r} would need more "
            f"than {MAX_BUCKETS} buckets; narrow the range or use fewer significant figures"
        )
    return _boundaries(sig_figs, float(min_value), float(max_value))


@functools.lru_cache(maxsize=64)
def _boundaries(sig_figs: int, min_value: float, max_value: float) -> tuple[float, ...]:
    per_decade = 9 * 10 ** (sig_figs - 1)
    first_decade = math.floor(math.log10(min_value)) - 1
    last_decade = math.floor(math.log10(max_value)) + 1
    bounds: list[float] = []
    for b in range(first_decade * per_decade, (last_decade + 1) * per_decade):
        boundary = sig_fig_boundary(b, sig_figs)
        if boundary >= min_value:
            bounds.append(boundary)
            if boundary >= max_value:
                break
    return tuple(bounds)


@dataclass(frozen=True, slots=True)
class HistogramReading:
    """An immutable histogram reading.

    ``buckets`` holds only non-empty buckets as ``(le, count)`` pairs in ascending ``le`` order;
    ``bounds`` is every possible ``le`` of this histogram's configuration.  ``count`` and ``sum``
    cover the in-range observations (those in buckets); out-of-range ones are counted apart.
    """

    bounds: tuple[float, ...]
    buckets: tuple[tuple[float, int], ...] = ()
    sum: float = 0.0
    count: int = 0
    exceeds_max: int = 0
    is_negative: int = 0

    def cumulative(self) -> Iterator[tuple[float, int]]:
        """``(le, observations <= le)`` for each non-empty bucket, as Prometheus expects."""
        total = 0
        for le, n in self.buckets:
            total += n
            yield le, total

    def _combine(self, other: HistogramReading, sign: int) -> HistogramReading:
        if other.bounds is not self.bounds and other.bounds != self.bounds:
            raise InvalidValueError(
                "cannot combine readings of histograms with different bucket boundaries "
                "(sig_figs, min_value and max_value must match)"
            )
        merged = dict(self.buckets)
        for le, n in other.buckets:
            merged[le] = merged.get(le, 0) + sign * n
        if any(n < 0 for n in merged.values()):
            raise InvalidValueError(
                "subtraction would leave a negative bucket: subtract the earlier reading "
                "from the later one of the same histogram"
            )
        return HistogramReading(
            self.bounds,
            tuple(sorted((le, n) for le, n in merged.items() if n)),
            self.sum + sign * other.sum,
            self.count + sign * other.count,
            self.exceeds_max + sign * other.exceeds_max,
            self.is_negative + sign * other.is_negative,
        )

    def __add__(self, other: object) -> HistogramReading:
        """The reading of both histograms' observations together."""
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
        return super().read()


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
    """A distribution of non-negative observations in significant-figure buckets.

    Defaults: two significant figures (every ``le`` within 10% of the next, 90 buckets per
    decade), from 1e-9 (a nanosecond, in seconds) to 1e12 (a terabyte, in bytes; 31,000 years, in
    seconds): 1,891 possible buckets, of which only non-empty ones are stored and exported.

    ``observe`` never raises.  Negative values (including -inf) count in ``is_negative``; values
    above ``max_value``, +inf and NaN count in ``exceeds_max``: none of those can be placed
    under a finite ``le``, so they stay out of the buckets, ``sum`` and ``count``.
    """

    __slots__ = (
        "__weakref__",
        "_bounds",
        "_count",
        "_counts",
        "_max",
        "_sum",
        "exceeds_max",
        "is_negative",
    )

    _reserved_labels = frozenset({"le"})

    def __init__(
        self,
        label: str,
        *,
        sig_figs: int = 2,
        min_value: float = 1e-9,
        max_value: float = 1e12,
        help: str | None = None,
        labels: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(label, help=help, labels=labels)
        self._bounds = sig_fig_boundaries(sig_figs, float(min_value), float(max_value))
        self._max = float(max_value)
        self._counts: dict[int, int] = {}
        self._sum = 0.0
        self._count = 0
        self.exceeds_max: Counter = _OutOfRange(self, f"{label}.exceeds_max", labels)
        """Observations above ``max_value``, +inf and NaN; exact whenever read."""
        self.is_negative: Counter = _OutOfRange(self, f"{label}.is_negative", labels)
        """Observations below zero, including -inf; exact whenever read."""

    @property
    def bounds(self) -> tuple[float, ...]:
        """Every bucket boundary (``le``) this histogram can report, ascending."""
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
        try:
            in_range = [x for x in batch if 0.0 <= x <= self._max]
        except TypeError:
            batch = [as_float(x) for x in batch]
            in_range = [x for x in batch if 0.0 <= x <= self._max]
        outside = len(batch) - len(in_range)
        if outside:
            negative = sum(1 for x in batch if x < 0.0)
            self.is_negative.count(negative)
            self.exceeds_max.count(outside - negative)
        if in_range:
            # Sorted, the batch is walked one occupied bucket at a time: two C-level bisects per
            # bucket instead of one per observation.
            in_range.sort()
            bounds, counts = self._bounds, self._counts
            i, n, b = 0, len(in_range), 0
            while i < n:
                b = bisect_left(bounds, in_range[i], b)
                j = bisect_right(in_range, bounds[b], i)
                counts[b] = counts.get(b, 0) + j - i
                i = j
            try:
                self._sum += math.fsum(in_range)
            except OverflowError:
                self._sum += sum(in_range)
            self._count += len(in_range)

    def _apply_weighted(self, x: float, n: int) -> None:
        if 0.0 <= x <= self._max:
            i = bisect_left(self._bounds, x)
            self._counts[i] = self._counts.get(i, 0) + n
            self._sum += x * n
            self._count += n
        elif x < 0.0:
            self.is_negative.count(n)
        else:
            self.exceeds_max.count(n)

    def read(self) -> HistogramReading:
        """Everything observed so far, as one immutable reading."""
        self._fold()
        with self._fold_lock:
            bounds = self._bounds
            buckets = tuple((bounds[i], n) for i, n in sorted(self._counts.items()))
            return HistogramReading(
                bounds,
                buckets,
                self._sum,
                self._count,
                # Counter.read, not the override: it would fold again, taking the lock we hold.
                Counter.read(self.exceeds_max),
                Counter.read(self.is_negative),
            )
