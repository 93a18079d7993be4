import math
import random
import sys
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biometrics import InvalidValueError, Moments, MomentsReading
from biometrics._batched import FOLD_AT

values = st.lists(
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_subnormal=False),
    min_size=1,
    max_size=60,
)


def exact(xs: list[float]) -> tuple[int, Fraction, Fraction, Fraction, Fraction]:
    """Reference central-moment sums in exact rational arithmetic."""
    fs = [Fraction(x) for x in xs]
    n = len(fs)
    mean = sum(fs, Fraction(0)) / n
    return (
        n,
        mean,
        sum(((f - mean) ** 2 for f in fs), Fraction(0)),
        sum(((f - mean) ** 3 for f in fs), Fraction(0)),
        sum(((f - mean) ** 4 for f in fs), Fraction(0)),
    )


def assert_close(
    got: MomentsReading, xs: list[float], rel: float, context: list[float] | None = None
) -> None:
    """Each sum within `rel` relative error, scaled by the data's spread where the sum is ~0.

    `context` is the larger data set the reading was derived from (by subtraction): rounding
    error is relative to its magnitude, not to the (possibly tiny) result's.
    """
    n, mean, m2, m3, m4 = exact(xs)
    assert got.n == n
    ref = context or xs
    ref_mean = exact(ref)[1]
    spread = max(abs(Fraction(x) - ref_mean) for x in ref) or Fraction(1)
    n = len(ref)
    scale = max(abs(float(ref_mean)), float(spread))
    assert math.isclose(got.m1, float(mean), rel_tol=rel, abs_tol=rel * scale)
    for k, (value, want) in enumerate(((got.m2, m2), (got.m3, m3), (got.m4, m4)), start=2):
        # Cancellation error grows with the values' magnitude, not only their spread; and below
        # the normal float range (subnormals) no digit is meaningful.
        tol = max(rel * n * scale ** (k - 1) * float(spread), sys.float_info.min)
        assert math.isclose(value, float(want), rel_tol=rel, abs_tol=tol), (k, value, want)


def reading_of(xs: list[float]) -> MomentsReading:
    m = Moments("m")
    for x in xs:
        m.add(x)
    return m.read()


@given(values)
def test_reading_matches_exact_arithmetic(xs: list[float]) -> None:
    """A sensor's reading equals the exact central moments of what it was given."""
    assert_close(reading_of(xs), xs, 1e-9)


@given(values, values)
def test_merging_halves_equals_the_whole(a: list[float], b: list[float]) -> None:
    """read(A) + read(B) is the reading of A followed by B, to 1e-9 relative error."""
    merged = reading_of(a) + reading_of(b)
    whole = reading_of(a + b)
    assert merged.n == whole.n
    assert_close(merged, a + b, 1e-9)
    assert_close(whole, a + b, 1e-9)


@given(values, values)
def test_subtracting_an_earlier_reading_gives_the_interval(a: list[float], b: list[float]) -> None:
    """Two readings of one sensor, subtracted, give the moments of what happened in between."""
    m = Moments("m")
    for x in a:
        m.add(x)
    earlier = m.read()
    for x in b:
        m.add(x)
    between = m.read() - earlier
    assert_close(between, b, 1e-9, context=a + b)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32), st.integers(FOLD_AT, 3 * FOLD_AT), st.floats(1e-3, 1e6))
def test_many_folds_stay_exact(seed: int, size: int, scale: float) -> None:
    """Batches folded one after another still give the exact moments of all the data."""
    rng = random.Random(seed)
    xs = [rng.gauss(scale, scale) ** 3 / scale**2 for _ in range(size)]
    assert_close(reading_of(xs), xs, 1e-9)


def test_statistics_follow_the_rust_definitions() -> None:
    """variance = m2/(n-1), skewness = sqrt(n) m3 / m2^1.5, kurtosis = n m4 / m2^2."""
    r = reading_of([1.0, 2.0, 4.0, 8.0])
    n, mean, m2, m3, m4 = (float(v) for v in exact([1.0, 2.0, 4.0, 8.0]))
    assert r.mean() == pytest.approx(mean)
    assert r.variance() == pytest.approx(m2 / (n - 1))
    assert r.skewness() == pytest.approx(math.sqrt(n) * m3 / m2**1.5)
    assert r.kurtosis() == pytest.approx(n * m4 / m2**2)


def test_undefined_statistics_are_nan_not_exceptions() -> None:
    """Empty, single and constant data give NaN where the statistic is undefined."""
    empty = MomentsReading()
    assert all(math.isnan(f()) for f in (empty.mean, empty.variance, empty.skewness))
    one = reading_of([5.0])
    assert one.mean() == 5.0
    assert math.isnan(one.variance())
    constant = reading_of([3.0] * 10)
    assert constant.variance() == 0.0
    assert math.isnan(constant.skewness())
    assert math.isnan(constant.kurtosis())


def test_add_never_raises() -> None:
    """Infinities, NaN and junk become NaN/inf in the reading, never an exception."""
    m = Moments("m")
    for x in (1.0, math.inf, -math.inf, math.nan, 1e308, "junk", None):
        m.add(x)  # type: ignore[arg-type]
    r = m.read()
    assert r.n == 7
    assert math.isnan(r.mean())


def test_subtracting_a_larger_reading_is_a_clear_error() -> None:
    """Subtraction goes later minus earlier; the other way round is refused."""
    small, big = reading_of([1.0]), reading_of([1.0, 2.0])
    with pytest.raises(InvalidValueError, match="earlier"):
        small - big
    assert big - big == MomentsReading()
    assert big - MomentsReading() is big
    assert MomentsReading() + big is big
