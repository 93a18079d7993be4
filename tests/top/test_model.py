"""Rates, quantiles and problems from two snapshots, against numbers worked out by hand."""

import math

import pytest

from biometrics.top import (
    Buckets,
    History,
    SeriesKey,
    Snapshot,
    SourceInfo,
    SourceState,
    compare,
    histogram_quantile,
    snapshot_from_page,
)

INF = math.inf
T0 = 1_700_000_000_000
BOUNDS = (0.1, 0.5, 1.0, INF)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.1, 0.04),  # rank 4 of 40 in the first bucket: 0 + 0.1 * 4/10
        (0.5, 0.3),  # rank 20: second bucket (10..30), 0.1 + 0.4 * 10/20
        (0.9, 0.8),  # rank 36: third bucket (30..40), 0.5 + 0.5 * 6/10
        (0.99, 0.98),  # rank 39.6: 0.5 + 0.5 * 9.6/10
        (1.0, 1.0),  # rank 40: the top of the last finite bucket holding it
        (0.0, 0.0),
    ],
)
def test_quantile_interpolates_inside_the_bucket(q: float, expected: float) -> None:
    """The way PromQL's histogram_quantile does: linear within the bucket holding the rank."""
    assert histogram_quantile(q, BOUNDS, (10, 30, 40, 40)) == pytest.approx(expected)


def test_quantile_edge_cases_follow_prometheus() -> None:
    """+Inf gives the last finite bound; no events, no +Inf or one bucket give NaN; q outside
    [0, 1] gives -Inf/+Inf; a non-positive first bound is returned as is; a count that goes
    down is lifted to stay monotonic."""
    assert histogram_quantile(0.5, BOUNDS, (0, 0, 0, 5)) == 1.0
    assert math.isnan(histogram_quantile(0.5, BOUNDS, (0, 0, 0, 0)))
    assert math.isnan(histogram_quantile(0.5, (0.1, 0.5), (1, 2)))
    assert math.isnan(histogram_quantile(0.5, (INF,), (3,)))
    assert math.isnan(histogram_quantile(math.nan, BOUNDS, (1, 2, 3, 4)))
    assert histogram_quantile(-0.1, BOUNDS, (1, 2, 3, 4)) == -INF
    assert histogram_quantile(1.1, BOUNDS, (1, 2, 3, 4)) == INF
    assert histogram_quantile(0.2, (-1.0, 0.0, INF), (5, 10, 10)) == -1.0
    # unsorted input, and a torn 15 -> 12: taken as 15, so rank 10 lands in (0.1, 0.5]
    assert histogram_quantile(0.5, (0.5, 0.1, INF, 1.0), (15, 5, 20, 12)) == pytest.approx(0.3)


PAGE = """\
# TYPE jobs_total counter
jobs_total{queue="a"} 30
jobs_total{queue="b"} 5
# TYPE depth gauge
depth 7.5
# TYPE lat histogram
lat_bucket{le="0.1"} 10
lat_bucket{le="0.5"} 30
lat_bucket{le="1.0"} 40
lat_bucket{le="+Inf"} 40
lat_sum 12.5
lat_count 40
# TYPE size summary
size_count 4
size_sum 8.0
loose 3
this is not a sample
"""


def test_snapshot_sorts_a_page_by_kind_and_reports_bad_lines() -> None:
    """Counters, gauges (untyped ones too), histograms whole; a summary's count is a counter."""
    snap = snapshot_from_page(PAGE, T0, path="p")
    assert snap.counters == {
        SeriesKey("jobs_total", (("queue", "a"),)): 30,
        SeriesKey("jobs_total", (("queue", "b"),)): 5,
        SeriesKey("size_count"): 4,
    }
    assert snap.gauges == {SeriesKey("depth"): 7.5, SeriesKey("loose"): 3}
    assert snap.histograms == {SeriesKey("lat"): Buckets(BOUNDS, (10, 30, 40, 40), 12.5, 40)}
    assert len(snap.problems) == 1 and snap.problems[0].startswith("p:17: not a sample line")
    assert str(SeriesKey("jobs_total", (("queue", "a"),))) == 'jobs_total{queue="a"}'


def test_snapshot_reads_openmetrics_counters() -> None:
    """OpenMetrics names the family x and its sample x_total."""
    snap = snapshot_from_page("# TYPE x counter\nx_total 3\n# EOF\n", T0)
    assert snap.counters == {SeriesKey("x_total"): 3}


def _counters(**values: float) -> dict[SeriesKey, float]:
    return {SeriesKey(k): v for k, v in values.items()}


def test_rates_from_two_readings_busiest_first_and_resets() -> None:
    """(new - old) / seconds; a counter that went down restarted from 0; no old reading, no
    rate.  Busiest first, then by total."""
    old = Snapshot(T0, _counters(a_total=10, b_total=100, c_total=50))
    new = Snapshot(T0 + 2000, _counters(a_total=30, b_total=100, c_total=4, d_total=9))
    frame = compare(old, new)
    assert frame.window_s == 2.0
    assert [(r.key.name, r.rate) for r in frame.counters] == [
        ("a_total", 10.0),
        ("c_total", 2.0),
        ("b_total", 0.0),
        ("d_total", None),
    ]
    first = compare(None, new)
    assert first.window_s is None
    assert all(r.rate is None for r in first.counters)


def test_histogram_window_quantiles_and_fallback() -> None:
    """Quantiles over what happened in the window; with no event in it, since the start."""
    key = SeriesKey("lat")
    old = Snapshot(T0, histograms={key: Buckets(BOUNDS, (10, 10, 10, 10))})
    new = Snapshot(T0 + 4000, histograms={key: Buckets(BOUNDS, (10, 30, 40, 40))})
    (row,) = compare(old, new).histograms
    assert row.windowed and row.rate == pytest.approx(30 / 4) and row.count == 40
    # the window's 30 events: 20 in (0.1, 0.5], 10 in (0.5, 1]; rank 15 -> 0.1 + 0.4 * 15/20
    assert row.quantiles[0] == pytest.approx(0.4)
    (same,) = compare(new, Snapshot(T0 + 8000, histograms=new.histograms)).histograms
    assert not same.windowed and same.rate == 0.0
    assert same.quantiles == pytest.approx((0.3, 0.8, 0.98))
    reset = Snapshot(T0 + 9000, histograms={key: Buckets(BOUNDS, (1, 1, 1, 1))})
    (after,) = compare(new, reset).histograms
    assert after.rate is None and not after.windowed and after.quantiles[0] == pytest.approx(0.05)


def test_sources_states_and_stale_problems() -> None:
    """Live within the threshold, stale past it (a problem line), stopped after # END."""
    sources = (
        SourceInfo("fresh", T0 - 1000, 1),
        SourceInfo("silent", T0 - 120_000, 2),
        SourceInfo("done", T0 - 300_000, 0, ended=True),
    )
    frame = compare(None, Snapshot(T0, sources=sources), stale_after_ms=60_000)
    assert [(s.name, s.state, s.age_s) for s in frame.sources] == [
        ("fresh", SourceState.LIVE, 1.0),
        ("silent", SourceState.STALE, 120.0),
        ("done", SourceState.STOPPED, 300.0),
    ]
    assert frame.problems == ("source silent is stale: no emission for 120 s",)


def test_self_metrics_hidden_but_their_failures_are_problems() -> None:
    """biometrics_* self-counters leave the list unless asked for; a failure count that grew
    in the window is a problem, one that did not is not."""
    fail = SeriesKey("biometrics_emit_failure_total", (("kind", "ENOSPC"),))
    quiet = SeriesKey("biometrics_collector_emit_counter_total")
    old = Snapshot(T0, {fail: 2, quiet: 10, SeriesKey("x_total"): 1})
    grown = Snapshot(T0 + 1000, {fail: 3, quiet: 20, SeriesKey("x_total"): 1})
    frame = compare(old, grown)
    assert [r.key.name for r in frame.counters] == ["x_total"]
    assert frame.problems == ('biometrics_emit_failure_total{kind="ENOSPC"} = 3, 1/s now',)
    assert compare(grown, Snapshot(T0 + 2000, grown.counters)).problems == ()
    assert len(compare(old, grown, include_self=True).counters) == 3
    assert compare(None, grown).problems == ('biometrics_emit_failure_total{kind="ENOSPC"} = 3',)


def test_history_spans_the_window() -> None:
    """The base is the newest reading at least a window old; the previous one at least."""
    history = History(10_000)
    assert history.push(Snapshot(T0)) is None
    bases = [history.push(Snapshot(T0 + s * 2000)) for s in range(1, 8)]
    assert [(b.taken_ms - T0) // 1000 for b in bases if b is not None] == [0, 0, 0, 0, 0, 2, 4]
    short = History(1_000)
    short.push(Snapshot(T0))
    short.push(Snapshot(T0 + 2000))
    base = short.push(Snapshot(T0 + 4000))
    assert base is not None and base.taken_ms == T0 + 2000
