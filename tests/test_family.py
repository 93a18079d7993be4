import pytest

from biometrics import Collector, Counter, Family, Histogram, InvalidLabelError
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
