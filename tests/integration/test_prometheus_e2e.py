"""What a Prometheus user sees: our sensors -> two `serve`s -> the real Prometheus -> PromQL.

Two ``biometrics serve`` instances (each its own spool, state and port) hold different data,
and one real Prometheus (Debian 2.42, which negotiates OpenMetrics) scrapes both, as a fleet
of exporters is queried.  The questions are the ones the issue found answered wrongly:
``sum by (le)`` across instances, ``histogram_quantile`` and "share below a bound" on it, the
type Prometheus stores for our counters, and a prometheus_client app migrated through the
bridge keeping its declared buckets.  The observations are chosen so that every true answer
is known exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PcCounter
from prometheus_client import Histogram as PcHistogram

from biometrics import DEFAULT_BUCKETS, Collector, Counter, Histogram
from biometrics.prometheus import Options
from biometrics.runtime import Emission, PrometheusClientBridge

from ..helpers import api_data, wait_for
from ._prometheus import Prometheus, needs_prometheus
from ._serve import Serve

pytestmark = needs_prometheus

DEADLINE = 15.0
"""Seconds any one answer may take to appear (scrapes run every second)."""

T = TypeVar("T")

LAYOUT = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""The default histogram layout the design fixed (biometrics.DEFAULT_BUCKETS)."""

# Our sensors, per instance: request latencies and a counter.  Together: 100 observations,
# 0.07 x30, 0.09 x30, 0.3 x10, 0.7 x20, 3.0 x10: median 0.09 (bucket (0.05, 0.1]), 70% <= 0.5.
LATENCY = {"a": [0.07] * 30 + [0.3] * 10, "b": [0.09] * 30 + [0.7] * 20 + [3.0] * 10}
HANDLED = {"a": 40, "b": 60}
# The migrated prometheus_client app, one process per instance, buckets declared by the app.
APP_BUCKETS = (0.1, 0.25, 0.5, 1.0)
APP = {"a": [0.2] * 6 + [0.4] * 4, "b": [0.2] * 3 + [0.9] * 7}


def fleet_wide(per_instance: dict[str, list[float]]) -> list[float]:
    return [x for values in per_instance.values() for x in values]


def cumulative(observations: list[float], bounds: tuple[float, ...]) -> dict[float, int]:
    """The exact cumulative count at each bound, +Inf included (Prometheus's ``le`` semantics)."""
    return {b: sum(1 for x in observations if x <= b) for b in (*bounds, math.inf)}


def write_instance(spool: Path, name: str) -> None:
    """One process's emissions into ``spool``: our sensors plus a bridged prometheus_client app.

    Through ``Emission`` (what ``emit_every`` runs), whose final emission finishes the segment.
    """
    collector = Collector()
    latency = collector.register(Histogram("req.seconds", help="Request latency."))
    handled = collector.register(Counter("req.handled", help="Requests handled."))
    for x in LATENCY[name]:
        latency.observe(x)
    handled.count(HANDLED[name])

    registry = CollectorRegistry()
    app_latency = PcHistogram("app_latency_seconds", "App latency.", buckets=APP_BUCKETS,
                              registry=registry)  # fmt: skip
    app_requests = PcCounter("app_requests", "App requests.", registry=registry)
    for x in APP[name]:
        app_latency.observe(x)
        app_requests.inc()

    emission = Emission(3600, collector=collector, system=False,
                        options=Options.per_process(spool, "web", host=name),
                        bridges=[PrometheusClientBridge(registry)])  # fmt: skip
    emission.stop()  # the final emission, its segment finished


@dataclass
class Fleet:
    prometheus: Prometheus
    serves: list[Serve]

    def query(self, promql: str) -> list[dict[str, Any]]:
        return list(self.prometheus.query_data(promql)["result"])

    def value(self, promql: str) -> float | None:
        """A query's one value; None while it has no answer (or several)."""
        return scalar(self.query(promql))

    def metadata(self) -> dict[str, list[dict[str, str]]]:
        return dict(api_data(f"{self.prometheus.url}/api/v1/metadata"))


def until(fetch: Callable[[], T], accept: Callable[[T], bool], what: str) -> T:
    """``fetch()`` until ``accept`` takes its answer, polled at scrape pace within ``DEADLINE``."""
    return wait_for(fetch, what, accept=accept, timeout=DEADLINE, every=0.2)


def between(lower: float, upper: float, value: float | None) -> bool:
    return value is not None and lower < value <= upper


def near(expected: float, value: float | None) -> bool:
    return value is not None and math.isclose(value, expected, rel_tol=1e-12)


def by_le(result: list[dict[str, Any]]) -> dict[float, float]:
    return {float(r["metric"]["le"]): float(r["value"][1]) for r in result}


def scalar(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if len(result) == 1 else None


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Two serves with different data, scraped every second by one real Prometheus."""
    root = tmp_path_factory.mktemp("e2e")
    serves: list[Serve] = []
    prometheus: Prometheus | None = None
    try:
        for name in LATENCY:
            spool = root / name / "spool"
            spool.mkdir(parents=True)
            write_instance(spool, name)
            serves.append(Serve(spool, root / name / "state.json").start())
        targets = ", ".join(f"'127.0.0.1:{s.port}'" for s in serves)
        (root / "prometheus").mkdir()
        prometheus = Prometheus(
            root / "prometheus",
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: fleet\n"
            f"    static_configs:\n      - targets: [{targets}]\n",
        ).start()
        result = Fleet(prometheus, serves)
        until(partial(result.value, 'count(up{job="fleet"} == 1)'),
              lambda n: n == 2, "both serves scraped")  # fmt: skip
        until(partial(result.value, "count(req_seconds_count)"),
              lambda n: n == 2, "both instances' histograms stored")  # fmt: skip
        yield result
    finally:
        if prometheus is not None:
            prometheus.stop()
        for serve in serves:
            if serve.proc is not None and serve.proc.poll() is None:
                assert serve.stop() == 0


def test_sum_by_le_is_exact_at_every_declared_bound(fleet: Fleet) -> None:
    """Both instances expose every bucket of the layout, so the fleet sum is exact per ``le``."""
    assert DEFAULT_BUCKETS == LAYOUT, "the default layout is the one the design fixed"
    expected = cumulative(fleet_wide(LATENCY), LAYOUT)
    got = until(lambda: by_le(fleet.query("sum by (le) (req_seconds_bucket)")),
                lambda g: g == expected, "sum by (le) of the fleet's buckets")  # fmt: skip
    assert set(got) == {*LAYOUT, math.inf}, "one le set: the declared layout, +Inf"
    count = until(partial(fleet.value, "sum(req_seconds_count)"), lambda n: n == 100,
                  "fleet _count")  # fmt: skip
    assert count == expected[math.inf]


def test_histogram_quantile_lands_in_the_bucket_of_the_true_quantile(fleet: Fleet) -> None:
    """The fleet-wide quantile estimate sits in the bucket holding the true quantile."""
    values = sorted(fleet_wide(LATENCY))
    for q in (0.25, 0.5, 0.75, 0.95):
        truth = values[math.ceil(q * len(values)) - 1]
        upper = next(b for b in LAYOUT if truth <= b)
        lower = max((b for b in LAYOUT if b < upper), default=0.0)
        promql = f"histogram_quantile({q}, sum by (le) (req_seconds_bucket))"
        until(partial(fleet.value, promql), partial(between, lower, upper),
              f"{promql} in ({lower}, {upper}] (true {truth})")  # fmt: skip


def test_share_below_a_bound_is_the_true_share(fleet: Fleet) -> None:
    """``bucket{le=B} / count`` across the fleet is the true share of observations <= B."""
    values = fleet_wide(LATENCY)
    for bound in ("0.1", "0.5"):
        truth = sum(1 for x in values if x <= float(bound)) / len(values)
        promql = f'sum(req_seconds_bucket{{le="{bound}"}}) / sum(req_seconds_count)'
        until(partial(fleet.value, promql), partial(near, truth), f"{promql} == {truth}")


def test_counters_are_stored_as_counters(fleet: Fleet) -> None:
    """``/api/v1/metadata`` types our counters ``counter`` (not ``unknown``) and ``x_total``
    holds the fleet's sum: ours, the bridged app's, and the collector's own."""
    until(partial(fleet.value, "sum(req_handled_total)"), lambda n: n == 100,
          "sum(req_handled_total)")  # fmt: skip
    until(partial(fleet.value, "sum(app_requests_total)"), lambda n: n == 20,
          "sum(app_requests_total)")  # fmt: skip
    families = ("req_handled", "app_requests", "biometrics_collector_emit_counter")

    def types(metadata: dict[str, list[dict[str, str]]]) -> dict[str, set[str]]:
        # Prometheus keys metadata by family: "x" when it scraped OpenMetrics, "x_total" in 0.0.4.
        return {
            f: {m["type"] for n in (f, f"{f}_total") for m in metadata.get(n, [])} for f in families
        }

    until(lambda: types(fleet.metadata()), lambda t: all(v == {"counter"} for v in t.values()),
          "metadata types of our counters")  # fmt: skip


def test_a_bridged_prometheus_client_histogram_keeps_its_declared_buckets(fleet: Fleet) -> None:
    """A migrated app's ``le="0.25"`` SLO query answers, and its ``le`` set is the app's own."""
    until(partial(fleet.value, 'sum(app_latency_seconds_bucket{le="0.25"})'),
          lambda n: n == 9, 'sum(app_latency_seconds_bucket{le="0.25"})')  # fmt: skip
    expected = cumulative(fleet_wide(APP), APP_BUCKETS)
    got = until(lambda: by_le(fleet.query("sum by (le) (app_latency_seconds_bucket)")),
                lambda g: g == expected, "the app's buckets, summed")  # fmt: skip
    assert set(got) == {*APP_BUCKETS, math.inf}
