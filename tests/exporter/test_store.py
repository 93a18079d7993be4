"""The store: merging across sources, per-source mode, bounds, forgetting, and its JSON form."""

import io
import math

import pytest

from biometrics.exporter import MergeRules, Store
from biometrics.exporter.bounds import DropLog
from biometrics.prometheus import parse

from .readings import counter, gauge, histogram, lines


def test_counters_from_many_sources_are_one_series() -> None:
    """Two processes' ``requests_total{route}`` become one sum per route."""
    store = Store()
    store.ingest("web.a.1", [counter("requests_total", 3, 10, route="/"),
                             counter("requests_total", 1, 10, route="/x")])  # fmt: skip
    store.ingest("web.a.2", [counter("requests_total", 4, 11, route="/")])
    store.set_help("requests_total", "Requests.")
    assert lines(store) == ['requests_total{route="/"} 7', 'requests_total{route="/x"} 1']
    assert "# HELP requests_total Requests.\n# TYPE requests_total counter" in store.render()
    assert lines(store, timestamps=True)[0] == 'requests_total{route="/"} 7 11'
    assert store.series_count() == 2 and store.entries == 3


def test_per_source_mode_and_all_mode_label_each_source() -> None:
    """--per-source labels everything; gauge mode ``all`` labels that gauge only."""
    store = Store(MergeRules(per_source=True))
    store.ingest("a", [counter("c_total", 1, 1, source="mine")])
    assert lines(store) == ['c_total{exported_source="mine",source="a"} 1']
    store = Store(MergeRules(gauge_mode="sum", gauges=(("temp_*", "all"),)))
    store.ingest("a", [gauge("temp_c", 20, 1), gauge("load", 1, 1)])
    store.ingest("b", [gauge("temp_c", 22, 1), gauge("load", 2, 1)])
    assert lines(store) == ["load 3.0", 'temp_c{source="a"} 20.0', 'temp_c{source="b"} 22.0']


def test_unknown_gauge_mode_is_refused() -> None:
    """A typo in a mode is an error naming the choices."""
    with pytest.raises(ValueError, match="use one of sum, min, max, latest, all"):
        MergeRules(gauges=(("x", "avg"),))


def test_max_series_drops_new_series_and_counts_them() -> None:
    """Past the bound new series are dropped (counted); existing ones still update."""
    store = Store(max_series=2)
    store.ingest("a", [counter("x_total", 1, 1, k="1"), counter("x_total", 1, 1, k="2")])
    store.ingest("b", [counter("x_total", 5, 1, k="1"), counter("x_total", 1, 1, k="3")])
    store.ingest("a", [counter("x_total", 9, 2, k="1")])
    assert store.dropped_series == 2
    assert lines(store) == ['x_total{k="1"} 9', 'x_total{k="2"} 1']


def test_type_conflicts_drop_the_later_kind() -> None:
    """One name, two types: the first kind seen wins, the other's readings are counted.

    The counter ``x`` is ``x_total`` on the page and holds ``x`` too (its OpenMetrics name).
    """
    store = Store()
    store.ingest("a", [counter("x", 1, 1)])
    assert store.ingest("b", [gauge("x", 5, 1)]) == 0
    assert store.conflicts == 1
    assert lines(store) == ["x_total 1"]


def test_forget_stale_sources() -> None:
    """Gauges of a forgotten source vanish; counters keep its count while others live."""
    store = Store(MergeRules(gauge_mode="sum"))
    store.ingest("old", [counter("c_total", 5, 1_000), gauge("g", 1, 1_000)])
    store.ingest("new", [counter("c_total", 2, 9_000), gauge("g", 2, 9_000)])
    assert store.forget_stale(10_000, 5_000) == ["old"]
    assert lines(store) == ["c_total 7", "g 2.0"]
    assert store.entries == 2
    assert store.ingest("old", [counter("c_total", 5, 1_000)]) == 0  # a late, old segment
    assert lines(store) == ["c_total 7", "g 2.0"]
    assert store.forget_stale(100_000, 5_000) == ["new"]
    assert store.render() == ""


def test_json_round_trip_renders_the_same() -> None:
    """A store rebuilt from its JSON renders byte-for-byte the same page."""
    store = Store()
    store.ingest("a", [counter("c_total", 5, 1), gauge("g", 1.5, 1),
                       histogram("h", (0.5, 1.0), (2.0, 2.0), (0.7, 3.0), 1)])  # fmt: skip
    store.set_help("g", "A gauge.")
    again = Store()
    again.load_json(store.to_json())
    assert again.render(openmetrics=True) == store.render(openmetrics=True)
    assert again.entries == store.entries
    assert again.ingest("a", [counter("c_total", 5, 1)]) == 0


def test_openmetrics_page_names_counter_samples_total_and_ends_in_eof() -> None:
    """OpenMetrics: counter family without ``_total``, samples with it, ``# EOF`` last."""
    store = Store()
    store.ingest("a", [counter("c_total", 5, 1)])
    assert store.render(openmetrics=True) == "# TYPE c counter\nc_total 5\n# EOF\n"


def test_sums_that_overflow_render_and_reload() -> None:
    """1e308 from two sources: +Inf on the page, no crash, and the snapshot loads back."""
    import json

    store = Store(MergeRules(gauges=(("g", "sum"),)))
    store.ingest("a", [counter("c_total", 1e308, 1), gauge("g", 1e308, 1)])
    store.ingest("b", [counter("c_total", 1e308, 1), gauge("g", 1e308, 1)])
    assert lines(store) == ["c_total +Inf", "g +Inf"]
    again = Store(MergeRules(gauges=(("g", "sum"),)))
    again.load_json(json.loads(json.dumps(store.to_json())))
    assert lines(again) == ["c_total +Inf", "g +Inf"]
    again.ingest("b", [counter("c_total", 1.0, 2), gauge("g", 1.0, 2)])  # b restarts
    assert lines(again) == ["c_total +Inf", "g 1e+308"]


def test_a_summed_gauge_of_plus_and_minus_inf_is_nan_then_recovers() -> None:
    """``--gauge x=sum`` over +Inf and -Inf is NaN (no crash); it recovers when one moves."""
    store = Store(MergeRules(gauges=(("x", "sum"),)))
    store.ingest("a", [gauge("x", math.inf, 1)])
    store.ingest("b", [gauge("x", -math.inf, 1)])
    assert lines(store) == ["x NaN"]
    store.ingest("b", [gauge("x", 2.0, 2)])
    assert lines(store) == ["x +Inf"]
    store.ingest("a", [gauge("x", 1.0, 2)])
    assert lines(store) == ["x 3.0"]


def test_a_name_two_kinds_claim_keeps_the_first() -> None:
    """Histogram ``h`` then a plain ``h_count`` elsewhere: one ``h_count`` on the page."""
    store = Store()
    heard: list[tuple[str, str]] = []
    store.ingest("a", [histogram("h", (1.0,), (2.0,), (1.5, 2.0), 1)])
    applied = store.ingest("b", [counter("h_count", 9, 1), counter("h_bucket", 1, 1)],
                           on_conflict=lambda r, held: heard.append((r.family, held)))  # fmt: skip
    assert applied == 0 and store.conflicts == 2
    assert heard == [("h_count", "the histogram h"), ("h_bucket", "the histogram h")]
    page = lines(store)
    assert page.count("h_count 2") == 1 and not [x for x in page if x.startswith("h_count 9")]
    store.ingest("c", [counter("x_count", 1, 1)])
    heard.clear()
    store.ingest("d", [histogram("x", (), (), (0.0, 0.0), 1)],
                  on_conflict=lambda r, held: heard.append((r.family, held)))  # fmt: skip
    assert heard == [("x", "the counter x_count_total")]  # a counter's page name


def test_one_source_cannot_take_every_other_sources_room() -> None:
    """Over its share a source's new series are dropped (counted by reason); others still fit."""
    store = Store(max_series=10, max_series_per_source=3)
    store.ingest("greedy", [counter("x_total", 1, 1, k=str(i)) for i in range(8)])
    store.ingest("modest", [counter("x_total", 1, 1, k="0"), counter("y_total", 1, 1)])
    store.ingest("greedy", [counter("x_total", 5, 2, k="0"), counter("x_total", 1, 2, k="9")])
    assert store.source_series("greedy") == 3 and store.source_series("modest") == 2
    assert store.dropped == {"max_series": 0, "max_series_per_source": 6}
    assert store.dropped_series == 6
    assert lines(store) == ['x_total{k="0"} 6', 'x_total{k="1"} 1', 'x_total{k="2"} 1',
                            "y_total 1"]  # fmt: skip
    store.forget_stale(10, 5)  # both forgotten: greedy's share is free again
    store.ingest("greedy", [counter("x_total", 1, 20, k=str(i)) for i in range(3, 6)])
    assert store.source_series("greedy") == 3 and store.dropped_series == 6


def test_the_whole_bound_is_counted_apart_from_the_share() -> None:
    """A full store refuses with reason ``max_series`` even a source well within its share."""
    store = Store(max_series=2, max_series_per_source=2)
    store.ingest("a", [counter("x_total", 1, 1, k="1"), counter("x_total", 1, 1, k="2")])
    store.ingest("b", [counter("x_total", 1, 1, k="3")])
    assert store.dropped == {"max_series": 1, "max_series_per_source": 0}


def test_drops_are_logged_at_first_then_once_a_minute_per_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """First refusal of each source at once; then one line a minute with what was suppressed."""
    now = [0.0]
    logged: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr("biometrics.exporter.bounds.log",
                        lambda level, event, **fields: logged.append((event, fields)))  # fmt: skip
    store = Store(max_series_per_source=1)
    store.drop_log = DropLog(clock=lambda: now[0])
    store.ingest("a", [counter("x_total", 1, 1, k=str(i)) for i in range(5)])  # 4 dropped
    store.ingest("b", [counter("y_total", 1, 1, k=str(i)) for i in range(2)])  # 1 dropped
    now[0] = 59.0
    store.ingest("a", [counter("z_total", 1, 2)])
    assert [(e, f["source"]) for e, f in logged] == [
        ("new series dropped: --max-series-per-source reached", "a"),
        ("new series dropped: --max-series-per-source reached", "b"),
    ]
    now[0] = 60.0
    store.ingest("a", [counter("w_total", 1, 3)])
    event, fields = logged[-1]
    assert event == "new series still dropped: --max-series-per-source reached"
    assert fields == {"source": "a", "family": "w_total", "limit": 1, "suppressed": 4}
    assert len(logged) == 3 and store.dropped_series == 7


def test_forgotten_series_leave_the_page_and_come_back_once() -> None:
    """A series forgotten between scrapes is gone from the page; re-created, it is there once."""
    store = Store()
    store.ingest("a", [counter("x_total", 1, 1, k="1"), counter("x_total", 1, 1, k="2")])
    store.ingest("b", [counter("x_total", 1, 9, k="3")])
    assert len(lines(store)) == 3
    store.forget_stale(10, 5)
    assert lines(store) == ['x_total{k="3"} 1']
    store.ingest("a", [counter("x_total", 4, 11, k="1")])
    assert lines(store) == ['x_total{k="1"} 4', 'x_total{k="3"} 1']
    assert len(store._families["x_total"].order) == 2


LES = (0.1, 0.25, 0.5, 1.0)


def bucket_lines(store: Store, name: str = "h") -> dict[str, list[tuple[str, float]]]:
    """Per rendered label set (le left out), the page's ``(le, value)`` bucket lines in order."""
    out: dict[str, list[tuple[str, float]]] = {}
    for line in lines(store):
        if line.startswith(name + "_bucket{"):
            labels, value = line[len(name) + 8 :].rsplit("} ", 1)
            rest, le = labels.rsplit('le="', 1)
            out.setdefault(rest.rstrip(","), []).append((le[:-1], float(value)))
    return out


def test_every_source_shows_every_bucket_of_the_family_layout() -> None:
    """One source busy, one that observed a single value: the same le set on the page."""
    store = Store()
    store.ingest("a", [histogram("h", LES, (5.0, 9.0, 12.0, 20.0), (15.0, 22.0), 1, host="a")])
    store.ingest("b", [histogram("h", LES, (0.0, 0.0, 0.0, 1.0), (0.8, 1.0), 1, host="b")])
    got = bucket_lines(store)
    assert [le for le, _ in got['host="a"']] == [le for le, _ in got['host="b"']] == [
        "0.1", "0.25", "0.5", "1.0", "+Inf"]  # fmt: skip
    assert got['host="b"'] == [("0.1", 0), ("0.25", 0), ("0.5", 0), ("1.0", 1), ("+Inf", 1)]
    store.ingest("c", [histogram("h", LES, (1.0, 1.0, 1.0, 1.0), (0.05, 1.0), 1, host="b")])
    assert bucket_lines(store)['host="b"'] == [
        ("0.1", 1), ("0.25", 1), ("0.5", 1), ("1.0", 2), ("+Inf", 2)]  # fmt: skip


def test_another_le_set_is_projected_exactly_onto_the_family_layout() -> None:
    """A finer writer (a deploy added bounds), or one whose extra buckets are empty: exact."""
    store = Store()
    store.ingest("a", [histogram("h", LES, (1.0, 2.0, 3.0, 4.0), (1.0, 4.0), 1)])
    finer = (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 5.0)
    counts = (0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 4.0)
    store.ingest("b", [histogram("h", finer, counts, (3.0, 4.0), 1)])
    coarser = (0.1, 1.0)  # (0.1, 1.0] holds nothing: 0.25 and 0.5 are exact too
    store.ingest("c", [histogram("h", coarser, (2.0, 2.0), (0.1, 3.0), 1)])
    assert bucket_lines(store)[""] == [
        ("0.1", 4), ("0.25", 6), ("0.5", 7), ("1.0", 9), ("+Inf", 11)]  # fmt: skip
    assert store.layout_conflicts == 0 and store.conflicts == 0


def test_a_reading_that_straddles_a_family_bound_is_dropped_counted_and_reported() -> None:
    """Observations in a bucket around a family bound cannot be placed: reported at the line.

    Not the segment's fault (it is not quarantined); the source's other readings still count.
    """
    store = Store()
    store.ingest("a", [histogram("h", LES, (1.0, 2.0, 3.0, 4.0), (1.0, 4.0), 1)])
    before = lines(store)
    text = (b'# TYPE h histogram\nh_bucket{le="0.1"} 1 7\nh_bucket{le="1.0"} 3 7\n'
            b'h_bucket{le="+Inf"} 3 7\nh_sum 1.2 7\nh_count 3 7\n'
            b"# TYPE c counter\nc 2 7\n")  # fmt: skip
    parsed = parse(io.BytesIO(text), path="b.7.prom")
    store.ingest_segment("b", parsed, 7)
    assert [str(p) for p in parsed.problems] == [
        "b.7.prom:6: histogram h reading does not fit the family's bucket layout (the le set of "
        "the first reading taken): the family's bound le=0.25 falls inside this reading's "
        "bucket (0.1, 1.0], which holds 2 observations; reading dropped"
    ]
    assert parsed.malformed == []
    assert (store.conflicts, store.layout_conflicts) == (1, 1)
    assert [x for x in lines(store) if x[0] == "h"] == [x for x in before if x[0] == "h"]
    assert "c_total 2" in lines(store)


def test_a_family_layout_survives_its_snapshot() -> None:
    """Reloaded, the family keeps its layout: a later reading is projected (or refused) alike."""
    import json

    store = Store()
    store.ingest("a", [histogram("h", LES, (1.0, 2.0, 3.0, 4.0), (1.0, 4.0), 1)])
    data = json.loads(json.dumps(store.to_json()))
    assert data["families"]["h"]["layout"] == list(LES)
    again = Store()
    again.load_json(data)
    assert again.render() == store.render()
    finer = (0.1, 0.2, 0.25, 0.5, 1.0)
    step = [histogram("h", finer, (1.0, 1.0, 2.0, 3.0, 5.0), (2.0, 5.0), 2)]
    assert again.ingest("a", step) == store.ingest("a", step) == 1
    assert again.render() == store.render()
    assert bucket_lines(again)[""][-2:] == [("1.0", 5), ("+Inf", 5)]
    refused = [histogram("h", (1.0,), (6.0,), (2.0, 6.0), 3)]
    assert again.ingest("a", refused) == store.ingest("a", refused) == 0


RUST_AND_OURS = (
    # the Rust crate: counter http_requests, moments without the merge state, HELP unsuffixed
    b"# HELP http_requests Requests.\n# TYPE http_requests counter\nhttp_requests 4 5\n",
    # ours: http_requests_total, moments with _m2.._m4
    b"# TYPE http_requests_total counter\nhttp_requests_total 3 5\n# HELP m_count Sizes.\n"
    b"# TYPE m_count counter\nm_count 3 5\n# TYPE m_mean gauge\nm_mean 2.0 5\n"
    b"# TYPE m_variance gauge\nm_variance 1.0 5\n# TYPE m_skewness gauge\nm_skewness 0.0 5\n"
    b"# TYPE m_kurtosis gauge\nm_kurtosis 1.5 5\n# TYPE m_m2 gauge\nm_m2 2.0 5\n"
    b"# TYPE m_m3 gauge\nm_m3 0.0 5\n# TYPE m_m4 gauge\nm_m4 2.0 5\n",
)


def test_a_rust_counter_and_ours_are_one_total_series_in_both_formats() -> None:
    """Rust's ``http_requests`` and our ``http_requests_total`` merge; moments are a summary."""
    store = Store()
    for source, text in zip(("rust", "ours"), RUST_AND_OURS, strict=True):
        parsed = parse(io.BytesIO(text), path=f"{source}.5.prom")
        store.ingest_segment(source, parsed, 5)
        assert parsed.problems == []
    page = store.render()
    assert "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n" in page
    assert "\nhttp_requests_total 7\n" in page and "\nhttp_requests " not in page
    assert "# HELP m Sizes.\n# TYPE m summary\nm_count 3\nm_sum 6.0\n" in page
    assert "# TYPE m_mean gauge\nm_mean 2.0\n" in page and "m_m2" not in page
    om = store.render(openmetrics=True)
    assert "# HELP http_requests Requests.\n# TYPE http_requests counter\n" in om
    assert "\nhttp_requests_total 7\n" in om and "unknown" not in om
    assert "# TYPE m summary\nm_count 3\nm_sum 6.0\n" in om and om.endswith("# EOF\n")


def test_a_snapshot_from_before_total_names_continues_under_the_new_name() -> None:
    """A counter family saved as ``jobs`` loads as ``jobs_total`` (help too), and the source's
    next reading continues it instead of starting a second, frozen family."""
    import json

    store = Store()
    store.ingest("a", [counter("jobs_total", 5, 1)])
    store.set_help("jobs_total", "Jobs.")
    data = json.loads(json.dumps(store.to_json()))
    data["families"]["jobs"] = data["families"].pop("jobs_total")
    data["helps"]["jobs"] = data["helps"].pop("jobs_total")
    again = Store()
    again.load_json(data)
    assert lines(again) == ["jobs_total 5"]
    again.ingest("a", [counter("jobs", 6, 2)])  # a Rust writer's name for it
    assert lines(again) == ["jobs_total 6"]
    assert "# HELP jobs_total Jobs.\n" in again.render()
    data["families"]["jobs_total"] = data["families"]["jobs"]
    with pytest.raises(ValueError, match="'jobs' is a counter, now named 'jobs_total'"):
        Store().load_json(data)
