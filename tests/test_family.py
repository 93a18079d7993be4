import pytest

from biometrics import (
    Collector,
    Counter,
    DuplicateSensorError,
    Family,
    Gauge,
    Histogram,
    InvalidLabelError,
)
from biometrics.prometheus import SlashMetrics
from biometrics.testing import RecordingEmitter


def test_children_are_created_once_and_registered_lazily() -> None:
    """labels() returns the same child for the same values and registers it on first use."""
    c = Collector()
    requests = Family(Counter, "http.requests", ["method", "code"], help="Requests.", collector=c)
    assert requests.children() == []
    get_ok = requests.labels("GET", 200)
    assert requests.labels(method="GET", code="200") is get_ok
    get_ok.click()
    requests.labels("POST", "500").count(2)
    e = RecordingEmitter()
    c.emit(e, 1)
    mine = [(r[2], r[3]) for r in e.readings if r[1] == "http.requests"]
    assert mine == [({"method": "GET", "code": "200"}, 1), ({"method": "POST", "code": "500"}, 2)]
    assert get_ok.help == "Requests."


def test_sensor_options_reach_every_child() -> None:
    """Keyword options such as sig_figs configure each child."""
    f = Family(Histogram, "latency", ["route"], sig_figs=3, collector=Collector())
    assert len(f.labels("/").bounds) > len(Histogram("x").bounds)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("GET",), {}), (("GET", "200", "x"), {}), ((), {"method": "GET"}), (("GET",), {"code": "1"})],
)
def test_wrong_label_values_are_clear_errors(args: tuple[str, ...], kwargs: dict[str, str]) -> None:
    """Missing, extra or mixed label values name the expected labels."""
    f = Family(Counter, "x", ["method", "code"], collector=Collector())
    with pytest.raises(InvalidLabelError, match="method"):
        f.labels(*args, **kwargs)


def test_bad_label_names_are_refused_up_front() -> None:
    """Label names are validated when the family is declared."""
    with pytest.raises(InvalidLabelError):
        Family(Counter, "x", ["bad-name"])
    with pytest.raises(InvalidLabelError, match="repeat"):
        Family(Counter, "x", ["a", "a"])
    with pytest.raises(InvalidLabelError, match="sequence"):
        Family(Counter, "x", "method")


def test_a_removed_child_leaves_the_family_and_the_next_emission() -> None:
    """remove() by position or by name; asking again makes a new child counting from zero."""
    c = Collector()
    f = Family(Counter, "http.requests", ["route"], collector=c)
    f.labels("/old").count(5)
    f.labels("/new").click()
    assert f.remove("/old") is True
    assert f.remove("/old") is False  # already gone: not an error, as in prometheus_client
    e = RecordingEmitter()
    c.emit(e, 1)
    assert [r[2] for r in e.readings if r[1] == "http.requests"] == [{"route": "/new"}]
    again = f.labels("/old")
    assert again.read() == 0
    assert f.remove(route="/new") is True
    assert [s.labels for s in f.children()] == [{"route": "/old"}]


def test_remove_checks_its_label_values() -> None:
    """A wrong number of values is an error, not a silent no-op."""
    f = Family(Counter, "x", ["method", "code"], collector=Collector())
    with pytest.raises(InvalidLabelError, match="method"):
        f.remove("GET")


def test_clear_removes_every_child_and_frees_the_label() -> None:
    """After clear() nothing is emitted; the collector no longer holds the label at all."""
    c = Collector()
    f = Family(Gauge, "temp", ["room"], collector=c)
    f.labels("a").set(1.0)
    f.labels("b").set(2.0)
    f.clear()
    assert f.children() == []
    assert [s for s in c.sensors() if s.label == "temp"] == []
    c.register(Counter("temp"))  # the label is free for another kind again


def test_a_removed_child_leaves_a_kept_slash_page() -> None:
    """SlashMetrics keeps readings between emissions, but not those of a removed child."""
    c = Collector()
    f = Family(Histogram, "latency", ["route"], collector=c, buckets=[0.1, 1.0])
    f.labels("/a").observe(0.05)
    f.labels("/b").observe(0.5)
    page = SlashMetrics()
    c.emit(page, 1)
    assert 'route="/a"' in page.render()
    f.remove("/a")
    c.emit(page, 2)
    assert 'route="/a"' not in page.render()
    assert 'latency_bucket{route="/b",le="1.0"} 1' in page.render()
    f.labels("/a").observe(0.05)
    c.emit(page, 3)
    assert 'latency_count{route="/a"} 1' in page.render_openmetrics()


def test_gauge_families_carry_one_merge_declaration() -> None:
    """merge/live_only reach every child; a gauge declaring otherwise under the label is refused."""
    c = Collector()
    f = Family(Gauge, "in_flight", ["route"], collector=c, merge="sum", live_only=True)
    assert f.labels("/").merge_declaration == "sum live"
    with pytest.raises(DuplicateSensorError, match="merge"):
        c.register(Gauge("in_flight", labels={"route": "/x"}, merge="max"))
    c.register(Gauge("in_flight", labels={"route": "/y"}, merge="sum", live_only=True))
