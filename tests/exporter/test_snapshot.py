"""The snapshot: written as version 3, versions 1 and 2 still read, damage always a clear error."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from biometrics import MomentsReading, StateError
from biometrics.exporter import DurableState, MergeRules, Store
from biometrics.exporter.snapshot import STATE_FORMAT
from biometrics.prometheus import HistogramValue, Reading

RULES = MergeRules(gauges=(("g", "sum"),))

V2: dict[str, Any] = {
    "format": STATE_FORMAT,
    "version": 2,
    "sources": {"a": 10, "b": 12},
    "tombstones": {"old": 3},
    "helps": {"c_total": "Counts."},
    "families": {
        "c_total": {"kind": "counter", "mode": "", "series": [
            '{k="1"}', 2, "a", 2.0, 3.0, 10, "", 4.0, 0.0, 0,
            '{k="2"}', 1, "b", 0.0, 1.0, 12,
        ]},
        "g": {"kind": "gauge", "mode": "sum", "series": ["", 2, "a", 1.5, None, 10,
                                                          "b", 2.5, None, 12]},
        "h": {"kind": "histogram", "mode": "", "series": [
            '{p="x\\"y"}', 1, "b", [[], 0.0, 0.0], [[[0.5, 2.0], [1.0, 1.0]], 1.7, 3.0], 12,
        ]},
        "m": {"kind": "moments", "mode": "", "series": [
            "", 1, "a", [0, 0.0, 0.0, 0.0, 0.0], [3, 2.0, 2.0, 0.0, 4.0], 10,
        ]},
    },
}  # fmt: skip
"""The previous release's snapshot: histograms without a layout, as non-empty buckets."""

V3: dict[str, Any] = {
    **V2,
    "version": 3,
    "families": {
        **V2["families"],
        "h": {"kind": "histogram", "mode": "", "layout": [0.5, 1.0], "series": [
            '{p="x\\"y"}', 1, "b", [[], 0.0, 0.0], [[2.0, 3.0], 1.7, 3.0], 12,
        ]},
    },
}  # fmt: skip
"""Every kind, a retired source (``""``), an escaped label value, two sources in a series; a
histogram family with its layout, its values cumulative per le."""

V1: dict[str, Any] = {
    **V2,
    "version": 1,
    "families": {
        "c_total": {"kind": "counter", "mode": "", "series": [
            [[["k", "1"]], {"a": [2.0, 3.0, 10], "": [4.0, 0.0, 0]}],
            [[["k", "2"]], {"b": [0.0, 1.0, 12]}],
        ]},
        "g": {"kind": "gauge", "mode": "sum", "series": [[[], {"a": [1.5, 10], "b": [2.5, 12]}]]},
        "h": {"kind": "histogram", "mode": "", "series": [
            [[["p", 'x"y']], {"b": [[[], 0.0, 0.0], [[[0.5, 2.0], [1.0, 1.0]], 1.7, 3.0], 12]}],
        ]},
        "m": {"kind": "moments", "mode": "", "series": [
            [[], {"a": [[0, 0.0, 0.0, 0.0, 0.0], [3, 2.0, 2.0, 0.0, 4.0], 10]}],
        ]},
    },
}  # fmt: skip
"""The same state as the previous release wrote it (series as [label pairs, {source: ...}])."""

PAGE = [
    'c_total{k="1"} 9',
    'c_total{k="2"} 1',
    "g 4.0",
    'h_bucket{p="x\\"y",le="0.5"} 2',
    'h_bucket{p="x\\"y",le="1.0"} 3',
    'h_bucket{p="x\\"y",le="+Inf"} 3',
    'h_sum{p="x\\"y"} 1.7',
    'h_count{p="x\\"y"} 3',
]


def lines(store: Store) -> list[str]:
    page = store.render().splitlines()
    return [x for x in page if not x.startswith("#") and not x.startswith("m_")]


def loaded(data: dict[str, Any]) -> Store:
    store = Store(RULES)
    store.load_json(json.loads(json.dumps(data)))
    return store


def test_our_version_loads_and_writes_back_the_same() -> None:
    """Version 3 loads to the page it was written from, and is written back unchanged."""
    store = loaded(V3)
    assert lines(store) == PAGE
    assert "m_count 3\n" in store.render() and "# HELP c_total Counts.\n" in store.render()
    assert store.entries == 6 and store.source_series("a") == 3
    assert store.to_json() == V3
    assert store.ingest("a", [Reading("counter", "c_total", (("k", "1"),), 3.0, 10)]) == 0


@pytest.mark.parametrize("data", [V1, V2], ids=["version 1", "version 2"])
def test_older_versions_load_all_but_their_layoutless_histograms(
    data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counters, gauges and moments as before; histograms are left out, and the log says so.

    They had no layout to show them in; the sources' next readings bring them back.
    """
    logged: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr("biometrics.exporter.store.log",
                        lambda level, event, **kw: logged.append((event, kw)))  # fmt: skip
    store = loaded(data)
    assert lines(store) == [x for x in PAGE if not x.startswith("h_")]
    assert store.entries == 5 and store.source_series("a") == 3
    assert store.to_json() == {**V3, "families": {k: v for k, v in V3["families"].items()
                                                   if k != "h"}}  # fmt: skip
    assert len(logged) == 1 and logged[0][1] == {"families": "h"}
    assert "histograms of an older snapshot left out" in logged[0][0]
    value = HistogramValue((0.5, 1.0), (1.0, 1.0), 0.2, 1.0)
    assert store.ingest("b", [Reading("histogram", "h", (), value, 13)]) == 1
    assert 'h_bucket{le="1.0"} 1' in lines(store)


def test_a_live_store_round_trips_through_its_snapshot() -> None:
    """Restarts, forgetting, every kind: rebuilt from JSON it renders and continues the same."""
    store = Store(RULES)
    for source, ts in (("a", 1), ("b", 2)):
        store.ingest(source, [
            Reading("counter", "c_total", (("k", "1"),), 5.0, ts),
            Reading("gauge", "g", (), 1.5, ts),
            Reading("histogram", "h", (), HistogramValue((0.5,), (2.0,), 0.7, 2.0), ts),
            Reading("moments", "m", (), MomentsReading.of([1.0, 2.0, 4.0]), ts),
        ])  # fmt: skip
    store.ingest("a", [Reading("counter", "c_total", (("k", "1"),), 1.0, 3)])  # a restarted
    store.ingest("c", [Reading("counter", "c_total", (("k", "1"),), 1.0, 9)])
    assert store.forget_stale(5, 0) == ["a", "b"]  # their counts stay, as source ""
    assert 'c_total{k="1"} 12\n' in store.render()
    again = Store(RULES)
    again.load_json(json.loads(json.dumps(store.to_json())))
    assert again.render(openmetrics=True) == store.render(openmetrics=True)
    assert again.to_json() == store.to_json() and again.entries == store.entries == 1
    step = [Reading("counter", "c_total", (("k", "1"),), 2.0, 10)]
    assert again.ingest("c", step) == store.ingest("c", step) == 1
    assert again.render() == store.render()


def at(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A deep copy of ``data`` with the item at ``path`` replaced."""
    out = copy.deepcopy(data)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


DAMAGE = [
    (V3, ("sources",), [], "sources: expected an object, got list"),
    (V3, ("tombstones", "old"), "3", "tombstones: source 'old': expected a time in ms"),
    (V3, ("helps", "c_total"), 7, "helps: 'c_total': expected a string, got int"),
    (V3, ("version",), True, "version: True is not one of (1, 2, 3)"),
    (V3, ("families",), [], "families: expected an object, got list"),
    (V3, ("families", "c_total", "series", 3), "2.0",
     "family 'c_total': series '{k=\"1\"}': source 'a': base: expected a number, got str"),
    (V3, ("families", "c_total", "series", 5), -1, "source 'a': time: expected a time in ms"),
    (V3, ("families", "c_total", "series", 1), 9, "source count 9 does not fit the list"),
    (V3, ("families", "c_total", "series", 0), "k=1", "'k=1' is not a rendered label set"),
    (V3, ("families", "c_total", "series", 2), "zz", "source 'zz' is not in sources"),
    (V3, ("families", "c_total", "series", 6), "a", "source 'a' appears twice"),
    (V3, ("families", "c_total", "series", 10), '{k="1"}', "series '{k=\"1\"}' appears twice"),
    (V3, ("families", "c_total", "kind"), "summary", "family 'c_total': kind: 'summary' is not"),
    (V3, ("families", "c_total", "mode"), "sum", "mode: 'sum' is not one of ''"),
    (V3, ("families", "g", "series", 4), 0.0, "family 'g': series '': source 'a': unused: "
                                              "expected null"),
    (V3, ("families", "h", "series", 4, 0, 0), "x", "last: cumulative: expected a number"),
    (V3, ("families", "h", "series", 4, 0), [2.0], "expected a list of 2 counts"),
    (V3, ("families", "h", "series", 4), {"buckets": []}, "last: expected a list of 3"),
    (V3, ("families", "h", "layout"), [1.0, 0.5], "family 'h': layout: bucket bounds must "
                                                  "increase strictly"),
    (V3, ("families", "h", "layout"), [0.5, 1.0, 1e400], "layout: +Inf is implicit"),
    (V3, ("families", "h", "layout"), None, "layout: expected a list of bucket bounds"),
    (V3, ("families", "h", "layout"), [0.5, "1"], "layout: bucket bound '1' is not a number"),
    (V3, ("families", "m", "series", 4, 0), 1.5, "last: count 1.5 is not a whole number"),
    (V3, ("families", "m", "series", 2), "", "series '': no live source"),
    (V3, ("families", "c_total", "series"), {}, "series: expected a list, got dict"),
    (V3, ("families", "h_count"), {"kind": "counter", "mode": "", "series": []},
     "renders h_count"),
    (V3, ("families", "bad name"), {"kind": "counter", "mode": "", "series": []},
     "family 'bad name': not a metric name"),
    (V1, ("families", "c_total", "series", 0, 0), [["k", 1]], "is not [name, value]"),
    (V1, ("families", "c_total", "series", 0, 0), [["k", "1"], ["k", "2"]], "repeated"),
    (V1, ("families", "c_total", "series", 0, 1), {"a": [1.0, 10]}, "expected a list of 3"),
    (V1, ("families", "g", "series", 0), "x", "series item 0: expected [label pairs, "
                                             "contributions]"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "path", "value", "message"), DAMAGE)
def test_a_damaged_snapshot_says_what_is_wrong_and_where(
    data: dict[str, Any], path: tuple[Any, ...], value: Any, message: str
) -> None:
    """ValueError naming the family, series and field; the store is left as it was."""
    store = loaded(V3)
    before = store.render()
    with pytest.raises(ValueError) as raised:
        store.load_json(json.loads(json.dumps(at(data, path, value))))
    assert message in str(raised.value)
    assert store.render() == before and store.entries == 6


def test_the_daemon_refuses_a_damaged_snapshot_naming_it_and_the_way_out(tmp_path: Path) -> None:
    """``"sources": []`` once gave an AttributeError traceback; now a StateError to act on."""
    state = tmp_path / "s.json"
    for content, why in (
        (json.dumps(at(V2, ("sources",), [])), "damaged (sources: expected an object, got list)"),
        ("[" * 100_000, "unreadable (maximum recursion depth exceeded"),
    ):
        state.write_text(content)
        with pytest.raises(StateError) as raised:
            DurableState(state).load(Store())
        assert str(state) in str(raised.value) and "move it aside" in str(raised.value)
        assert why in str(raised.value)
        assert state.read_text() == content


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON tree where a value could be swapped for garbage."""
    out = [prefix] if prefix else []
    items: list[tuple[Any, Any]] = []
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    for key, child in items:  # bounded: the tree is finite
        out += paths(child, (*prefix, key))
    return out


PLACES = [(base, p) for base in (V1, V2, V3) for p in paths(base)]


def outcome(path: Path, content: bytes) -> str:
    """What loading ``content`` as the snapshot does: "loaded" or "refused", nothing else."""
    path.write_bytes(content)
    store = Store(RULES)
    try:
        assert DurableState(path).load(store)
    except StateError as e:
        assert str(path) in str(e)
        assert store.entries == 0 and store.render() == ""
        return "refused"
    return "loaded"


@settings(
    max_examples=300, deadline=2_000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(PLACES), JSON)
def test_garbage_anywhere_in_a_snapshot_is_refused_never_a_crash(
    tmp_path: Path, place: tuple[dict[str, Any], tuple[Any, ...]], garbage: Any
) -> None:
    """Any item of a good snapshot swapped for any JSON: loaded, or a StateError; no traceback."""
    base, where = place
    assert outcome(tmp_path / "s.json", json.dumps(at(base, where, garbage)).encode()) in (
        "loaded", "refused")  # fmt: skip


@settings(
    max_examples=200, deadline=2_000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(JSON | st.binary(max_size=64).map(bytes.hex) | st.dictionaries(
    st.sampled_from(["format", "version", "sources", "tombstones", "helps", "families"]),
    JSON))  # fmt: skip
def test_garbage_snapshots_are_always_a_state_error(tmp_path: Path, garbage: Any) -> None:
    """Whole files of JSON garbage (or with the right keys, wrong everything else): refused."""
    if isinstance(garbage, dict) and "format" in garbage:
        garbage["format"] = STATE_FORMAT
    expected = ("refused", "loaded") if isinstance(garbage, dict) else ("refused",)
    assert outcome(tmp_path / "s.json", json.dumps(garbage).encode()) in expected
