"""Aggregation rules: sums, resets, idempotence, forgetting, exact moments."""

import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from biometrics import MomentsReading
from biometrics.exporter.merge import (
    CounterSeries,
    GaugeSeries,
    HistogramSeries,
    MomentsSeries,
    Series,
)
from biometrics.prometheus import HistogramValue
from biometrics.prometheus.segments import project


def test_counters_sum_and_stay_monotonic_through_a_restart() -> None:
    """A source whose counter drops restarted: its old total is kept, the sum never falls."""
    s = CounterSeries()
    assert s.update("a", 10.0, 1) and s.update("b", 5.0, 1)
    assert s.total == 15.0
    assert s.update("a", 12.0, 2)
    assert s.total == 17.0
    assert s.update("a", 3.0, 3)  # a restarted
    assert s.total == 12.0 + 3.0 + 5.0
    assert s.update("a", 4.0, 4)
    assert s.total == 21.0


def test_readings_not_newer_than_the_last_change_nothing() -> None:
    """Re-ingesting the same or older readings is a no-op (idempotent by timestamp)."""
    s = CounterSeries()
    s.update("a", 10.0, 5)
    assert not s.update("a", 10.0, 5)
    assert not s.update("a", 2.0, 4)  # older, and lower: must not look like a reset
    assert s.total == 10.0
    g = GaugeSeries("latest")
    g.update("a", 1.0, 5)
    assert not g.update("a", 9.0, 5)
    assert g.value == 1.0


def test_forgetting_keeps_counters_while_others_live_and_drops_the_last() -> None:
    """A forgotten source's count stays in the sum while the series has live sources."""
    s = CounterSeries()
    s.update("a", 10.0, 1)
    s.update("b", 5.0, 1)
    assert s.forget("a") is False
    assert s.total == 15.0
    s.update("b", 6.0, 2)
    assert s.total == 16.0
    assert s.forget("b") is True


@pytest.mark.parametrize(
    ("mode", "expected"), [("sum", 6.0), ("min", 1.0), ("max", 3.0), ("latest", 2.0)]
)
def test_gauge_modes(mode: str, expected: float) -> None:
    """sum/min/max over sources; latest = newest timestamp."""
    g = GaugeSeries(mode)
    g.update("a", 1.0, 10)
    g.update("b", 3.0, 11)
    g.update("c", 2.0, 12)
    assert g.value == expected


def test_gauge_extremes_recomputed_when_the_holder_moves_or_is_forgotten() -> None:
    """max falls back to the next source when the maximum's holder lowers or goes."""
    g = GaugeSeries("max")
    g.update("a", 5.0, 1)
    g.update("b", 3.0, 1)
    g.update("a", 1.0, 2)
    assert g.value == 3.0
    g.update("a", 4.0, 3)
    assert g.forget("a") is False
    assert g.value == 3.0
    s = GaugeSeries("sum")
    s.update("a", 5.0, 1)
    s.update("b", 3.0, 1)
    s.update("a", 1.0, 2)
    assert s.value == 4.0
    s.forget("b")
    assert s.value == 1.0


LAYOUT = (0.1, 0.2, 0.5, 1.0)


def hist(buckets: dict[float, float], total: float, above: float = 0.0) -> HistogramValue:
    """A reading in LAYOUT from per-bucket counts (``above``: observations past 1.0)."""
    running, cumulative = 0.0, []
    for le in LAYOUT:
        running += buckets.get(le, 0.0)
        cumulative.append(running)
    return HistogramValue(LAYOUT, tuple(cumulative), total, running + above)


def test_histograms_sum_bucket_wise_and_fold_resets() -> None:
    """Every bucket of the layout, summed over sources; a count drop is a restart."""
    h = HistogramSeries(layout=LAYOUT)
    h.update("a", hist({0.1: 2.0, 1.0: 1.0}, 1.2), 1)
    assert list(h.buckets()) == [(0.1, 2.0), (0.2, 2.0), (0.5, 2.0), (1.0, 3.0)]
    h.update("b", hist({0.5: 4.0}, 2.0, above=1.0), 1)
    assert list(h.buckets()) == [(0.1, 2.0), (0.2, 2.0), (0.5, 6.0), (1.0, 7.0)]
    assert (h.sum, h.count) == (3.2, 8.0)
    h.update("a", hist({0.1: 1.0}, 0.1), 2)  # a restarted
    assert list(h.buckets()) == [(0.1, 3.0), (0.2, 3.0), (0.5, 7.0), (1.0, 8.0)]
    assert h.count == 9.0
    h.update("a", hist({0.1: 1.0, 0.2: 1.0}, 2.1), 3)
    assert list(h.buckets()) == [(0.1, 3.0), (0.2, 4.0), (0.5, 8.0), (1.0, 9.0)]
    assert h.forget("b") is False
    assert h.count == 10.0 and math.isclose(h.sum, 1.2 + 2.0 + 2.1)


def test_an_empty_series_lists_every_bucket_of_its_layout() -> None:
    """No reading yet, or only zeros: every le is there, at 0."""
    h = HistogramSeries(layout=LAYOUT)
    assert list(h.buckets()) == [(le, 0.0) for le in LAYOUT]
    h.update("a", hist({}, 0.0), 1)
    assert list(h.buckets()) == [(le, 0.0) for le in LAYOUT] and h.count == 0.0


def test_a_one_source_histogram_shares_its_readings_counts() -> None:
    """One source, no restart: the merged counts are the reading's own tuple, not a copy."""
    h = HistogramSeries(layout=LAYOUT)
    value = hist({0.2: 3.0}, 0.6)
    h.update("a", value, 1)
    assert h.cumulative is value.cumulative
    h.update("b", hist({0.2: 1.0}, 0.2), 1)
    assert h.cumulative == (0.0, 4.0, 4.0, 4.0)


def value_of(les: tuple[float, ...], cumulative: tuple[float, ...], n: float) -> HistogramValue:
    return HistogramValue(les, cumulative, 1.0, n)


@pytest.mark.parametrize(
    ("reading", "want"),
    [
        # listed at every family bound (a finer layout): exact
        (value_of((0.05, 0.1, 0.2, 0.3, 0.5, 1.0), (1.0, 2.0, 3.0, 3.0, 5.0, 6.0), 7.0),
         (2.0, 3.0, 5.0, 6.0)),
        # 0.2 and 1.0 not listed, but the buckets they fall inside, (0.1, 0.5] and (0.5, +Inf],
        # are empty (the refusals below are the same buckets, not empty)
        (value_of((0.1, 0.5), (2.0, 2.0), 2.0), (2.0, 2.0, 2.0, 2.0)),
        # below the reading's first le (nothing there), and past its last (+Inf holds nothing)
        (value_of((0.5,), (0.0,), 0.0), (0.0, 0.0, 0.0, 0.0)),
        # the sparse buckets an older writer listed: exact where the gaps are empty
        (value_of((0.1, 1.0), (3.0, 3.0), 5.0), (3.0, 3.0, 3.0, 3.0)),
    ],
)  # fmt: skip
def test_a_reading_of_another_le_set_projects_exactly(
    reading: HistogramValue, want: tuple[float, ...]
) -> None:
    """Cumulative count at the largest listed le <= each bound, when nothing straddles it."""
    got = project(reading, LAYOUT)
    assert isinstance(got, HistogramValue)
    assert got.bounds is LAYOUT and got.cumulative == want
    assert (got.sum, got.n) == (reading.sum, reading.n)


@pytest.mark.parametrize(
    ("reading", "why"),
    [
        (value_of((0.1, 0.5), (2.0, 3.0), 3.0), "le=0.2 falls inside this reading's bucket "
                                                 "(0.1, 0.5], which holds 1 observations"),
        (value_of((0.1, 0.2, 0.5), (2.0, 2.0, 2.0), 4.0), "le=1.0 falls inside this reading's "
                                                           "bucket (0.5, +Inf], which holds 2"),
        (value_of((), (), 4.0), "le=0.1 falls inside this reading's bucket (-Inf, +Inf]"),
        (value_of((0.2, 0.5, 1.0), (1.0, 1.0, 1.0), 1.0), "le=0.1 falls inside this reading's "
                                                           "bucket (-Inf, 0.2]"),
    ],
)  # fmt: skip
def test_a_reading_that_straddles_a_bound_is_refused_saying_where(
    reading: HistogramValue, why: str
) -> None:
    """Observations in a bucket around a family bound may lie on either side: not exact."""
    got = project(reading, LAYOUT)
    assert isinstance(got, str) and why in got


def test_moments_merge_exactly_across_sources_and_restarts() -> None:
    """The merged moments equal the moments of all the data, whichever source saw it."""
    rng = random.Random(7)
    data = {s: [rng.gauss(10, 3) for _ in range(200)] for s in "abc"}
    m = MomentsSeries()
    for step, cut in enumerate((50, 120, 200), start=1):
        for source, values in data.items():
            m.update(source, MomentsReading.of(values[:cut]), step)
    extra = [rng.gauss(0, 1) for _ in range(30)]
    m.update("a", MomentsReading.of(extra), 9)  # a restarted and saw 30 more
    every = [x for values in data.values() for x in values] + extra
    want = MomentsReading.of(every)
    got = m.value
    assert got.n == want.n
    for a, b in ((got.m1, want.m1), (got.m2, want.m2), (got.m3, want.m3), (got.m4, want.m4)):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def make(cls: type) -> Series:
    """An empty series of ``cls``; a histogram's in LAYOUT."""
    return HistogramSeries(layout=LAYOUT) if cls is HistogramSeries else cls()


@pytest.mark.parametrize("cls", [CounterSeries, GaugeSeries, HistogramSeries, MomentsSeries])
def test_json_round_trip(cls: type) -> None:
    """A series rebuilt from its JSON state continues exactly where it was."""
    values = {
        CounterSeries: (3.0, 1.0),
        GaugeSeries: (3.0, 1.0),
        HistogramSeries: (hist({0.1: 3.0}, 0.3), hist({0.2: 1.0}, 0.2)),
        MomentsSeries: (MomentsReading.of([1.0, 2.0, 4.0]), MomentsReading.of([5.0])),
    }[cls]
    s = make(cls)
    s.update("a", values[0], 1)
    s.update("a", values[1], 2)
    s.update("b", values[0], 1)
    s.forget("b")
    t = make(cls)
    t.load_json(s.to_json())
    assert t.to_json() == s.to_json()
    assert t.ts == s.ts
    assert not t.update("a", values[1], 2)


def test_a_one_source_series_is_one_object_and_others_share_a_dict() -> None:
    """The first source lives in the series' own slots; a counter's total is its value then."""
    s = CounterSeries()
    value = 10.0
    s.update("a", value, 1)
    assert s.more is None and s.parts() == [("a", 0.0, 10.0, 1)]
    assert s.total is value  # no second float per series
    s.update("b", 5.0, 1)
    assert s.more == {"b": (0.0, 5.0, 1)} and s.sources() == 2 and "b" in s and "c" not in s


@pytest.mark.parametrize("cls", [CounterSeries, GaugeSeries, HistogramSeries, MomentsSeries])
def test_forgetting_the_inline_source_moves_the_next_one_in_and_stays_exact(cls: type) -> None:
    """Whichever source leaves, the merged value is what the others (and ``""``) make."""
    values = {
        CounterSeries: (3.0, 4.0),
        GaugeSeries: (3.0, 4.0),
        HistogramSeries: (hist({0.1: 3.0}, 0.3), hist({0.2: 4.0}, 0.8)),
        MomentsSeries: (MomentsReading.of([1.0, 2.0, 6.0]), MomentsReading.of([5.0, 7.0])),
    }[cls]
    merged: Callable[[Any], object] = {
        CounterSeries: lambda s: s.total,
        GaugeSeries: lambda s: s.value,
        HistogramSeries: lambda s: (list(s.buckets()), s.sum, s.count),
        MomentsSeries: lambda s: s.value,
    }[cls]
    s, t = make(cls), make(cls)
    s.update("a", values[0], 1)
    s.update("b", values[1], 2)
    assert s.forget("a") is False
    assert s.src == "b" and s.t == 2
    t.update("b", values[1], 2)
    if cls is not GaugeSeries:  # a's cumulative part stays, as the pseudo-source ""
        t.update("", values[0], 1)
    assert merged(s) == merged(t)
    assert s.forget("b") is True


@pytest.mark.parametrize(
    ("cls", "parts", "message"),
    [
        (CounterSeries, ["a", 0.0, "1", 5], "source 'a': last: expected a number, got str"),
        (CounterSeries, ["a", 0.0, 1.0, 1.5], "source 'a': time: expected a time in ms"),
        (CounterSeries, ["a", 0.0, 1.0, 5, "a", 0.0, 1.0, 6], "source 'a' appears twice"),
        (CounterSeries, ["a", 0.0, 1.0], "expected [source, base, last, time] per source"),
        (CounterSeries, [7, 0.0, 1.0, 5], "source: expected a string, got int"),
        (CounterSeries, ["a", 0.0, 10**400, 5], "source 'a': last: an integer beyond"),
        (GaugeSeries, ["a", 1.0, 2.0, 5], "source 'a': unused: expected null"),
        (
            HistogramSeries,
            ["a", [[], 0, 0], [[0, 1, True, 2], 0, 0], 5],
            "source 'a': last: cumulative: expected a number, got bool",
        ),
        (
            HistogramSeries,
            ["a", [[], 0, 0], [[0, 1], 0, 0], 5],
            "last: cumulative: expected a list of 4 counts",
        ),
        (MomentsSeries, ["a", [0, 0, 0, 0, 0], [-1, 0, 0, 0, 0], 5], "count -1 is not"),
        (MomentsSeries, ["", [0, 0, 0, 0, 0], [1, 0, 0, 0, 0], 5], "no live source"),
    ],
)
def test_a_series_checks_its_json_field_by_field(
    cls: type, parts: list[object], message: str
) -> None:
    """Each wrong field is a ValueError naming the source and the field, never a TypeError."""
    with pytest.raises(ValueError) as raised:
        make(cls).load_json(parts)
    assert message in str(raised.value)


def test_forgetting_a_source_never_takes_a_merged_counter_back() -> None:
    """Fractional counts summed as they come, then one source forgotten: not an ulp lower.

    Recomputed exactly, 18.008000000000003 became 18.008: a reset to Prometheus.
    """
    rng = random.Random(1)
    for _ in range(300):
        series, counts, t = CounterSeries(), dict.fromkeys("abc", 0.0), 0
        for _ in range(30):
            source, t = rng.choice("abc"), t + 1
            counts[source] += rng.choice([0.1, 0.2, 0.7, 1e-3, 3.3])
            series.update(source, counts[source], t)
        shown = series.total
        assert not series.forget("a")
        assert series.total >= shown
        series.update("b", counts["b"] + 1.0, t + 1)
        assert series.total >= shown + 0.5
