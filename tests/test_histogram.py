import asyncio
import math
import time
import weakref
from bisect import bisect_left

import pytest
from hypothesis import given
from hypothesis import strategies as st

from biometrics import (
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


def test_default_range_covers_nanoseconds_to_a_trillion() -> None:
    """Defaults: 90 buckets per decade from 1e-9 to 1e12."""
    bounds = Histogram("h").bounds
    assert bounds[0] == 1e-9
    assert bounds[-1] == 1e12
    assert len(bounds) == 21 * 90 + 1
    assert list(bounds) == sorted(set(bounds))


def test_range_edges_round_outwards() -> None:
    """The first bound is the first boundary >= min_value, the last the first >= max_value."""
    bounds = sig_fig_boundaries(2, 0.0042, 7.25)
    assert bounds[0] == 0.0042
    assert bounds[-1] == 7.3
    assert sig_fig_boundaries(1, 0.0042, 7.25)[:2] == (0.005, 0.006)


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
    ],
)
def test_bad_configurations_are_refused(kwargs: dict[str, float]) -> None:
    """Impossible or absurdly large configurations raise a clear error."""
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
    assert r.count == len(xs)
    assert sum(n for _, n in r.buckets) == len(xs)
    for x in xs:
        i = bisect_left(h.bounds, x)
        assert x <= h.bounds[i]
        assert i == 0 or x > h.bounds[i - 1]
        assert h.bounds[i] in dict(r.buckets)
    assert r.sum == math.fsum(xs)


@given(st.floats())
def test_observe_never_raises_and_sorts_out_of_range_values(x: float) -> None:
    """Any float is accepted: in range, negative, above max, infinite or NaN."""
    h = Histogram("h")
    h.observe(x)
    h.observe_n(x, 3)
    r = h.read()
    if math.isnan(x) or x > 1e12:
        assert (r.exceeds_max, r.is_negative, r.count) == (4, 0, 0)
    elif x < 0:
        assert (r.exceeds_max, r.is_negative, r.count) == (0, 4, 0)
    else:
        assert (r.exceeds_max, r.is_negative, r.count) == (0, 0, 4)
        assert r.sum == pytest.approx(4 * x)


def test_zero_and_tiny_values_land_in_the_first_bucket() -> None:
    """Values below min_value (and zero, and -0.0) go to the first bucket."""
    h = Histogram("h")
    for x in (0.0, -0.0, 1e-12, 1e-9):
        h.observe(x)
    assert h.read().buckets == ((1e-9, 4),)


def test_junk_is_counted_not_raised() -> None:
    """A non-number slipped past the type checker counts as exceeds_max."""
    h = Histogram("h")
    h.observe("oops")  # type: ignore[arg-type]
    h.observe(2.0)
    r = h.read()
    assert (r.count, r.exceeds_max) == (1, 1)
    assert h.exceeds_max.read() == 1


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
    h = Histogram("h")
    h.observe(0.5)
    h.observe(-1.0)
    earlier = h.read()
    h.observe(0.5)
    h.observe(3.0)
    h.observe(math.inf)
    between = h.read() - earlier
    assert between.buckets == ((0.5, 1), (3.0, 1))
    assert (between.count, between.sum, between.exceeds_max, between.is_negative) == (2, 3.5, 1, 0)
    assert earlier + between == h.read()
    assert list((h.read()).cumulative()) == [(0.5, 2), (3.0, 3)]
    with pytest.raises(InvalidValueError, match="earlier"):
        earlier - h.read()
    with pytest.raises(InvalidValueError, match="boundaries"):
        earlier + Histogram("other", sig_figs=3).read()


def test_empty_reading() -> None:
    """A fresh histogram reads empty."""
    r = Histogram("h").read()
    assert isinstance(r, HistogramReading)
    assert (r.buckets, r.count, r.sum) == ((), 0, 0.0)


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
    assert r.buckets[-1][0] >= 0.01


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
    assert (r.exceeds_max, r.is_negative, r.count) == (1, 2, 0)


def test_out_of_range_counters_do_not_keep_their_histogram_alive() -> None:
    """The counters reach the histogram weakly: dropping it frees it, and they still read."""
    h = Histogram("h", max_value=10)
    h.observe(-1)
    negative = h.is_negative
    ref = weakref.ref(h)
    del h
    assert ref() is None
    assert negative.read() == 0  # never folded: the pending observation went with the histogram
