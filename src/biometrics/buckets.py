"""Histogram bucket layouts: the default one, sig-fig ones, and the check every layout passes.

A layout is a strictly increasing sequence of finite upper bounds; ``+Inf`` is implicit.  It is
fixed when a histogram is made, and every reading, segment and page lists every bucket of it
(see :mod:`biometrics.histogram` for why).  Kept apart from the sensor because readers need it
too: the exporter checks the layouts it restores from a snapshot with :func:`checked_layout`.

:data:`DEFAULT_BUCKETS` covers web and RPC latency in seconds.  :func:`sig_fig_boundaries` gives
the Rust ``sig_fig_histogram`` sequence as a layout, for those who want every bound within a
fixed relative error (at the price of many more series).  Native (exponential) histograms would
be another kind of layout; none is built yet.

The sig-fig sequence: with ``s`` significant figures there are ``B = 9 * 10**(s-1)`` boundaries
per decade and bucket ``b`` has boundary ``(b % B + O) * 10**(b // B - s + 1)`` with
``O = 10**(s-1)``.  The Rust sequence starts at 1.0; we extend the same formula to negative
``b`` (0.10, 0.11, ... 0.99 for two figures, and so on) down to ``min_value``, because Python
users observe seconds.  Each boundary is the double nearest its decimal value (``float("1.1")``,
not ``11 * 0.1``), so it prints as the short decimal.  The Rust crate rounds to the *nearest*
boundary, which cannot be used as ``le``; we round up.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterable

from .errors import InvalidValueError

__all__ = [
    "DEFAULT_BUCKETS",
    "MAX_BUCKETS",
    "checked_layout",
    "sig_fig_boundaries",
    "sig_fig_boundary",
]

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""The default layout, in seconds: 1 ms to 60 s in a 1-2.5-5 series, then ``+Inf``.

Web and RPC latencies live between a millisecond and a minute (most proxies and clients time
out by then), and each decade gets three bounds, so an SLO threshold such as 100, 250 or 500 ms
is a bucket bound.  15 finite buckets plus ``+Inf``: 16 series per label set, against 15 for
prometheus_client's default (which stops at 10 s)."""

MAX_BUCKETS = 1_000_000
"""Refuse layouts whose bound list alone would take tens of megabytes."""


def sig_fig_boundary(b: int, sig_figs: int) -> float:
    """Boundary of bucket ``b`` (any integer, negative below 1.0) with ``sig_figs`` figures."""
    buckets, offset = 9 * 10 ** (sig_figs - 1), 10 ** (sig_figs - 1)
    return float(f"{b % buckets + offset}e{b // buckets - sig_figs + 1}")


def sig_fig_boundaries(sig_figs: int, min_value: float, max_value: float) -> tuple[float, ...]:
    """A layout: every boundary from the first ``>= min_value`` to the first ``>= max_value``.

    Every bound is within ``10**(1 - sig_figs)`` of the next (relative), at the price of
    ``9 * 10**(sig_figs - 1)`` buckets per decade, each a series on every page.  Cached, so
    histograms configured alike share one tuple (and compare by identity).
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
    return _interned(_boundaries(sig_figs, float(min_value), float(max_value)))


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


@functools.lru_cache(maxsize=256)
def _interned(bounds: tuple[float, ...]) -> tuple[float, ...]:
    """The first equal layout seen: a Family's children share one tuple, not one each."""
    return bounds


_interned(DEFAULT_BUCKETS)


def checked_layout(buckets: Iterable[float]) -> tuple[float, ...]:
    """``buckets`` as a layout: finite, strictly increasing floats, at least one.

    A trailing ``+Inf`` is accepted and dropped (prometheus_client takes it; it is implicit
    here), so a layout copied from prometheus_client works as it is.  ``-0.0`` becomes ``0.0``,
    so one bound has one ``le`` text.
    """
    if isinstance(buckets, str | bytes) or not isinstance(buckets, Iterable):
        raise InvalidValueError(f"buckets must be a sequence of numbers, got {buckets!r:.60}")
    bounds: list[float] = []
    for b in buckets:
        if not isinstance(b, numbers.Real) or isinstance(b, bool):
            raise InvalidValueError(f"bucket bound {b!r:.40} is not a number")
        if len(bounds) >= MAX_BUCKETS:
            raise InvalidValueError(f"more than {MAX_BUCKETS} buckets")
        try:
            bounds.append(float(b) + 0.0)
        except OverflowError:  # an int beyond any float
            raise InvalidValueError(f"bucket bound {b!r:.40} is beyond a float") from None
    if bounds and bounds[-1] == math.inf:
        bounds.pop()
    if not bounds:
        raise InvalidValueError(
            "a layout needs at least one finite bucket bound (+Inf is implicit)"
        )
    for i, b in enumerate(bounds):
        if not math.isfinite(b):
            raise InvalidValueError(f"bucket bound {b!r} is not finite (+Inf is implicit)")
        if i and b <= bounds[i - 1]:
            raise InvalidValueError(
                f"bucket bounds must increase strictly: {bounds[i - 1]!r} then {b!r}"
            )
    return _interned(tuple(bounds))
