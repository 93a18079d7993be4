import logging

import pytest

from biometrics import Collector, DuplicateSensorError, Gauge, InvalidValueError
from biometrics.web import OTHER, HttpMetrics, http_metrics

from ._pages import duration_count, in_progress, requests, samples


def test_one_shared_set_per_collector_and_one_layout() -> None:
    c = Collector()
    first = http_metrics(c, buckets=[0.1, 1])
    assert http_metrics(c, buckets=[0.1, 1.0, float("inf")]) is first
    assert http_metrics(Collector()) is not first
    with pytest.raises(InvalidValueError, match="one layout"):
        http_metrics(c, buckets=[0.5])


def test_leave_counts_by_labels_and_the_gauge_returns_to_zero() -> None:
    c = Collector()
    m = HttpMetrics(c, buckets=[0.1, 1])
    gauges = [m.enter("GET") for _ in range(3)]
    assert in_progress(samples(c), "GET") == 3.0
    for g in gauges:
        m.leave(g, "GET", "/a/{id}", "200", 0.05)
    values = samples(c)
    assert requests(values, "GET", "/a/{id}", "200") == 3
    assert duration_count(values, "GET", "/a/{id}", "200") == 3
    le = (("le", "0.1"), ("method", "GET"), ("route", "/a/{id}"), ("status", "200"))
    assert values[("http_request_duration_seconds_bucket", le)] == 3
    assert in_progress(values, "GET") == 0.0


def test_unknown_methods_share_one_label() -> None:
    c = Collector()
    m = HttpMetrics(c)
    for method in ("FOO", "BAR", "get"):
        m.leave(m.enter(method), method, "/", "405", 0.001)
    values = samples(c)
    assert requests(values, OTHER, "/", "405") == 3
    assert in_progress(values, OTHER) == 0.0
    assert not [k for k in values if ("method", "FOO") in k[1]]


def test_a_name_clash_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    c = Collector()
    c.register(Gauge("http.requests", labels={"method": "GET", "route": "/", "status": "200"}))
    c.register(Gauge("http.requests.in_progress", labels={"method": "GET"}))
    m = HttpMetrics(c)
    with caplog.at_level(logging.ERROR, logger="biometrics.web"):
        for _ in range(3):
            m.leave(m.enter("GET"), "GET", "/", "200", 0.01)
    assert len(caplog.records) == 2  # once for the gauge, once for the label set: cached
    assert "cannot count" in caplog.records[0].getMessage()
    with pytest.raises(DuplicateSensorError):
        m.requests.labels("GET", "/", "200")


def test_statuses_outside_100_to_599_share_one_label() -> None:
    c = Collector()
    m = HttpMetrics(c)
    for status in ("99", "600", "1234", "abc", "2", "ééé", "", "200"):
        m.leave(m.enter("GET"), "GET", "/", status, 0.001)
    values = samples(c)
    assert requests(values, "GET", "/", OTHER) == 7
    assert requests(values, "GET", "/", "200") == 1
    assert len([k for k in values if k[0] == "http_requests_total"]) == 2
    assert len(m._done) == 2  # the hot path's cache is bounded too
