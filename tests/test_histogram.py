import asyncio
import math
import time
import weakref
from bisect import bisect_left

import pytest
from hypothesis import given
from hypothesis import strategies as st

from biometrics import (
    DEFAULT_BUCKETS,
    Histogram,
    HistogramReading,
    InvalidValueError,
    sig_fig_boundaries,
    sig_fig_boundary,
)


@pytest.mark.parametrize("s", [1, 2, 3, 4])
def test_boundaries_match_the_rust_sequence_from_one_up(s: int) -> None:
    """For b >= 0 the boundary is the Rust formula's decimal value, exactly."""
    per_decade, offset = 9 * 10 ** (s - 1), 10 ** (s - 1)
    for b in range(0, per_decade * 4):
        mantissa, exponent = b % per_decade + offset, b // per_decade - s + 1
        rust = mantissa * 10.0**exponent
        ours = sig_fig_boundary(b, s)
        assert ours == pytest.approx(rust, rel=1e-15)
        assert repr(ours) == repr(float(f"{mantissa}e{exponent}"))
    assert sig_fig_boundary(0, s) == 1.0


def test_boundaries_extend_below_one_with_the_same_pattern() -> None:
    """Two figures: ... 0.098, 0.099, 0.1, 0.11, ... 0.99, 1.0, 1.1 ..."""
    seq = [sig_fig_boundary(b, 2) for b in range(-92, 2)]
    assert seq[:4] == [0.098, 0.099, 0.1, 0.11]
    assert seq[-4:] == [0.98, 0.99, 1.0, 1.1]
    assert [sig_fig_boundary(b, 1) for b in range(-10, 1)] == [
        0.09, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    ]  # fmt: skip


def test_default_layout_is_one_millisecond_to_a_minute_in_sixteen_series() -> None:
    """The default: 15 finite bounds in a 1-2.5-5 series from 1 ms to 60 s, plus +Inf."""
    h = Histogram("h")
    assert h.bounds is DEFAULT_BUCKETS
    assert h.bounds[0] == 0.001 and h.bounds[-1] == 60.0
    assert len(h.read().buckets) == 16 and h.read().buckets[-1] == (math.inf, 0)
    assert {0.1, 0.25, 0.5, 1.0, 10.0, 30.0} <= set(h.bounds)  # usual SLO thresholds are bounds
    assert list(h.bounds) == sorted(set(h.bounds))


def test_the_old_keywords_mean_a_sig_fig_layout() -> None:
    """sig_figs/min_value/max_value still work: buckets=sig_fig_boundaries(...), 2/1e-9/1e12."""
    bounds = Histogram("h", sig_figs=2).bounds
    assert bounds == sig_fig_boundaries(2, 1e-9, 1e12)
    assert bounds[0] == 1e-9 and bounds[-1] == 1e12 and len(bounds) == 21 * 90 + 1
    assert Histogram("h", max_value=10).bounds == sig_fig_boundaries(2, 1e-9, 10.0)
    assert Histogram("h", buckets=sig_fig_boundaries(1, 0.1, 1)).bounds == (
        0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # fmt: skip


def test_range_edges_round_outwards() -> None:
    """The first bound is the first boundary >= min_value, the last the first >= max_value."""
    bounds = sig_fig_boundaries(2, 0.0042, 7.25)
    assert bounds[0] == 0.0042
    assert bounds[-1] == 7.3
    assert sig_fig_boundaries(1, 0.0042, 7.25)[:2] == (0.005, 0.006)


def test_declared_buckets_are_the_layout_and_shared() -> None:
    """buckets= takes any increasing numbers; a trailing +Inf (prometheus_client's) is implicit."""
    h = Histogram("h", buckets=[0.1, 1, 5])
    assert h.bounds == (0.1, 1.0, 5.0) and all(type(b) is float for b in h.bounds)
    assert Histogram("x", buckets=(0.1, 1.0, 5.0, math.inf)).bounds is h.bounds
    assert Histogram("neg", buckets=[-1.0, -0.0, 2.0]).bounds == (-1.0, 0.0, 2.0)
    assert repr(Histogram("neg", buckets=[-0.0, 1.0]).bounds[0]) == "0.0"  # one le text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sig_figs": 0},
        {"sig_figs": 5},
        {"sig_figs": 2.0},
        {"min_value": 0.0},
        {"min_value": 10.0, "max_value": 1.0},
        {"max_value": math.inf},
        {"sig_figs": 4, "min_value": 1e-300, "max_value": 1e300},
        {"buckets": []},
        {"buckets": [math.inf]},
        {"buckets": [math.nan]},
        {"buckets": [-math.inf, 1.0]},
        {"buckets": [1.0, math.inf, 2.0]},
        {"buckets": [1.0, 1.0]},
        {"buckets": [2.0, 1.0]},
        {"buckets": ["0.5"]},
        {"buckets": [True, 2.0]},
        {"buckets": [10**400]},
        {"buckets": "0.5"},
        {"buckets": 0.5},
        {"buckets": [0.5], "max_value": 10},
        {"buckets": DEFAULT_BUCKETS, "sig_figs": 2},
    ],
)
def test_bad_layouts_are_refused(kwargs: dict[str, object]) -> None:
    """Impossible, ambiguous or absurdly large layouts raise a clear error at construction."""
    with pytest.raises(InvalidValueError):
        Histogram("h", **kwargs)  # type: ignore[arg-type]


@given(
    st.integers(1, 3),
    st.lists(st.floats(min_value=0.0, max_value=1e12, allow_nan=False), min_size=1, max_size=50),
)
def test_every_observation_is_at_most_its_le_and_above_the_previous(
    s: int, xs: list[float]
) -> None:
    """Rounding up makes each boundary a true Prometheus `le`, and buckets are tight."""
    h = Histogram("h", sig_figs=s)
    for x in xs:
        h.observe(x)
    r = h.read()
    assert r.count == len(xs) == sum(r.counts)
    for x in xs:
        i = bisect_left(h.bounds, x)
        assert x <= h.bounds[i]
        assert i == 0 or x > h.bounds[i - 1]
        assert r.counts[i] > 0
    assert r.sum == math.fsum(xs)


ANY_FLOAT = st.floats(min_value=-1e6, max_value=1e6) | st.sampled_from([math.inf, -math.inf,
                                                                          math.nan])  # fmt: skip
"""Every kind of value (big enough to pass every bound, small enough for an exact sum)."""


@given(st.lists(ANY_FLOAT, max_size=60), st.integers(0, 5))
def test_every_observation_counts_whatever_its_value(xs: list[float], k: int) -> None:
    """Any floats: all in count and +Inf, finite ones in sum, each in the first bucket >= it.

    NaN and values above the last bound are only in +Inf (and exceeds_max); values below the
    first bound, negatives and -inf included, in the first bucket (negatives in is_negative).
    """
    h = Histogram("h", buckets=[0.01, 0.1, 1.0])
    for x in xs:
        h.observe(x)
        h.observe_n(x, k)
    r = h.read()
    weight = 1 + k
    assert r.count == weight * len(xs) == sum(r.counts)
    assert list(r.cumulative())[-1] == (math.inf, r.count)
    want = [0, 0, 0, 0]
    for x in xs:
        want[bisect_left(h.bounds, x) if x <= 1.0 else 3] += weight
    assert list(r.counts) == want
    assert r.exceeds_max == weight * sum(1 for x in xs if not x <= 1.0)
    assert r.is_negative == weight * sum(1 for x in xs if x < 0.0)
    finite = [x for x in xs if math.isfinite(x)]
    assert r.sum == pytest.approx(weight * math.fsum(finite), abs=1e-6)


@pytest.mark.parametrize("layout", [None, {"max_value": 10}, {"buckets": [0.1, 0.5, 1.0]}])
def test_a_thirty_second_request_is_in_inf_count_and_sum(layout: dict[str, object] | None) -> None:
    """The 30 s request that used to vanish: _count, +Inf and _sum all see it, in any layout."""
    h = Histogram("latency", **(layout or {}))  # type: ignore[arg-type]
    h.observe(0.05)
    h.observe(30.0)
    r = h.read()
    assert (r.count, r.sum) == (2, 30.05)
    assert list(r.cumulative())[-1] == (math.inf, 2)
    above = [n for le, n in r.buckets if le >= 30.0]
    assert sum(above) == 1  # in the bucket holding 30 s: +Inf, or 30.0 for the default layout
    assert r.exceeds_max == (0 if layout is None else 1)  # only past the last finite bound


def test_values_below_the_first_bound_land_in_the_first_bucket() -> None:
    """Zero, -0.0, tiny values and negatives go to the first bucket; negatives also counted."""
    h = Histogram("h")
    for x in (0.0, -0.0, 1e-12, 0.001, -5.0, -math.inf):
        h.observe(x)
    r = h.read()
    assert r.buckets[0] == (0.001, 6) and r.count == 6
    assert r.is_negative == 2 and r.sum == -5.0 + 0.001 + 1e-12


def test_negative_layouts_count_negatives_above_their_last_bound() -> None:
    """A layout below zero: a value between its last bound and 0 is negative and in +Inf."""
    h = Histogram("temperature", buckets=[-20.0, -10.0])
    for x in (-30.0, -15.0, -5.0, 5.0):
        h.observe(x)
    h.observe_n(-1.0, 2)
    r = h.read()
    assert r.counts == (1, 1, 4)
    assert (r.is_negative, r.exceeds_max) == (5, 4)


def test_junk_is_counted_not_raised() -> None:
    """A non-number slipped past the type checker counts as NaN: in +Inf and exceeds_max."""
    h = Histogram("h")
    h.observe("oops")  # type: ignore[arg-type]
    h.observe(2.0)
    r = h.read()
    assert (r.count, r.exceeds_max, r.counts[-1], r.sum) == (2, 1, 1, 2.0)
    assert h.exceeds_max.read() == 1


def test_an_overflowing_sum_is_inf_not_an_error() -> None:
    """Finite values whose sum leaves the float range: sum +inf, every count still right."""
    h = Histogram("bytes", buckets=[1.0])
    h.observe(1e308)
    h.observe(1e308)
    h.observe_n(1e308, 2)
    r = h.read()
    assert (r.count, r.counts, r.sum) == (4, (0, 4), math.inf)


def test_observe_n_rejects_bad_counts() -> None:
    """observe_n takes a non-negative int count."""
    h = Histogram("h")
    for bad in (-1, 1.5, True):
        with pytest.raises(InvalidValueError):
            h.observe_n(1.0, bad)  # type: ignore[arg-type]
    h.observe_n(1.0, 0)
    assert h.read().count == 0


def test_readings_subtract_and_add() -> None:
    """Later minus earlier is what happened in between; readings add bucket-wise."""
    h = Histogram("h", buckets=[0.5, 3.0])
    h.observe(0.5)
    h.observe(-1.0)
    earlier = h.read()
    h.observe(0.5)
    h.observe(3.0)
    h.observe(math.inf)
    between = h.read() - earlier
    assert between.buckets == ((0.5, 1), (3.0, 1), (math.inf, 1))
    assert (between.count, between.sum, between.exceeds_max, between.is_negative) == (3, 3.5, 1, 0)
    assert earlier + between == h.read()
    assert list(h.read().cumulative()) == [(0.5, 3), (3.0, 4), (math.inf, 5)]
    with pytest.raises(InvalidValueError, match="earlier"):
        earlier - h.read()
    with pytest.raises(InvalidValueError, match="layouts"):
        earlier + Histogram("other").read()


def test_empty_reading_lists_every_bucket() -> None:
    """A fresh histogram reads empty, with a zero for every bucket of its layout."""
    r = Histogram("h").read()
    assert isinstance(r, HistogramReading)
    assert r.counts == (0,) * 16 and (r.count, r.sum) == (0, 0.0)
    assert HistogramReading((0.5,)) == HistogramReading((0.5,), (0, 0))
    with pytest.raises(InvalidValueError, match="one per bound plus one"):
        HistogramReading((0.5,), (1, 2, 3))


def test_time_as_context_manager_and_decorator() -> None:
    """time() observes elapsed seconds for `with` blocks, functions and coroutines."""
    h = Histogram("h")
    with h.time():
        time.sleep(0.01)

    @h.time()
    def work(x: int) -> int:
        return x * 2

    @h.time()
    async def async_work() -> str:
        await asyncio.sleep(0.01)
        return "done"

    assert work(21) == 42
    assert asyncio.run(async_work()) == "done"
    r = h.read()
    assert r.count == 3
    assert 0.02 <= r.sum < 5.0
    assert sum(n for le, n in r.buckets if le >= 0.01) >= 2  # the two sleeps


def test_time_observes_even_when_the_block_raises() -> None:
    """A failing block is still timed, and the exception propagates."""
    h = Histogram("h")
    with pytest.raises(KeyError), h.time():
        raise KeyError("x")
    assert h.read().count == 1


def test_out_of_range_counters_are_exact_before_any_fold() -> None:
    """is_negative and exceeds_max count observations still pending, with no read() first."""
    h = Histogram("h", max_value=10)
    h.observe(-1)
    h.observe(1e30)
    assert h.is_negative.read() == 1
    assert h.exceeds_max.read() == 1
    h.observe(-math.inf)
    assert (h.exceeds_max.read(), h.is_negative.read()) == (1, 2)
    r = h.read()  # the reading's own copies agree (and read() does not deadlock on them)
    assert (r.exceeds_max, r.is_negative, r.count) == (1, 2, 3)


def test_out_of_range_counters_do_not_keep_their_histogram_alive() -> None:
    """The counters reach the histogram weakly: dropping it frees it, and they still read."""
    h = Histogram("h", max_value=10)
    h.observe(-1)
    negative = h.is_negative
    ref = weakref.ref(h)
    del h
    assert ref() is None
    assert negative.read() == 0  # never folded: the pending observation went with the histogram
