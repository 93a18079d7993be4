"""The real Prometheus (Debian 2.42) stores our counters as counters, named ``x_total``.

It negotiates OpenMetrics, where a counter family ``x`` must have the sample ``x_total``; a
counter exposed as ``x`` was stored as type ``unknown``.  A SlashMetrics page is scraped in
both formats (one target each), and ``serve`` (which answers OpenMetrics to Prometheus) merges
a Rust file's counter ``rust_jobs`` with our ``rust_jobs_total`` into one series.
"""

from __future__ import annotations

import http.server
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from functools import partial
from operator import eq
from pathlib import Path
from typing import Any

import pytest

from biometrics import Collector, Counter, Moments
from biometrics.prometheus import Options, SegmentEmitter, SlashMetrics
from biometrics.prometheus.exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from biometrics.system import SystemSensors

from ..helpers import api_data, wait_for
from ._prometheus import Prometheus, needs_prometheus
from ._serve import Serve

pytestmark = needs_prometheus
NOW = 1_726_547_192_000


class PageServer:
    """SlashMetrics on loopback: ``/om`` in OpenMetrics, ``/text`` in 0.0.4, whatever is asked."""

    def __init__(self, page: SlashMetrics) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                om = self.path.startswith("/om")
                body = (page.render_openmetrics() if om else page.render()).encode()
                self.send_response(200)
                self.send_header("Content-Type", OPENMETRICS_CONTENT_TYPE if om else
                                 TEXT_CONTENT_TYPE)  # fmt: skip
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                outer.scrapes[om] += 1

            def log_message(self, *args: object) -> None:
                pass

        self.scrapes = {True: 0, False: 0}
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def busy_page() -> SlashMetrics:
    """Counters with and without ``_total``, the collector's and the system's, and moments."""
    collector = Collector()
    collector.register(Counter("http.requests", help="Requests.")).count(5)
    collector.register(Counter("jobs.done_total", help="Jobs.")).count(2)
    sizes = collector.register(Moments("response.size.bytes", help="Sizes."))
    for x in (10.0, 20.0, 60.0):
        sizes.add(x)
    SystemSensors().register(collector).poll()
    page = SlashMetrics()
    collector.emit(page, NOW)
    return page


@pytest.fixture
def pages() -> Iterator[PageServer]:
    server = PageServer(busy_page())
    yield server
    server.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / f"rust.{NOW}.prom").write_text(f"# TYPE rust_jobs counter\nrust_jobs 4 {NOW}\n")
    collector = Collector()
    collector.register(Counter("rust.jobs")).count(3)  # ours: rust_jobs_total
    with SegmentEmitter(Options(prefix=spool / "ours.")) as e:
        collector.emit(e, NOW)
    server = Serve(spool, tmp_path / "state.json").start()
    yield server
    assert server.stop() == 0


@pytest.fixture
def prometheus(tmp_path: Path, pages: PageServer, serve: Serve) -> Iterator[Prometheus]:
    jobs = [("om", pages.port, "/om"), ("text", pages.port, "/text"),
            ("serve", serve.port, "/metrics")]  # fmt: skip
    config = "global:\n  scrape_interval: 1s\nscrape_configs:\n" + "".join(
        f"  - job_name: {job}\n    metrics_path: {path}\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        for job, port, path in jobs
    )
    (tmp_path / "prom").mkdir()
    server = Prometheus(tmp_path / "prom", config)
    try:
        yield server.start()
    finally:
        server.stop()


def api(prometheus: Prometheus, path: str, **params: str) -> Any:
    return api_data(f"{prometheus.url}{path}?{urllib.parse.urlencode(params)}")


def target_types(prometheus: Prometheus, job: str) -> dict[str, str]:
    """``metric -> type`` as Prometheus stored the metadata of ``job``'s target."""
    data = api(prometheus, "/api/v1/targets/metadata", match_target=f'{{job="{job}"}}')
    return {entry["metric"]: entry["type"] for entry in data}


def test_prometheus_stores_our_counters_as_counters_in_both_formats(
    pages: PageServer, prometheus: Prometheus
) -> None:
    """Metadata says ``counter`` (never ``unknown``), the series is ``x_total``, either format."""
    for job in ("om", "text"):
        wait_for(partial(prometheus.query, f'http_requests_total{{job="{job}"}}'),
                 f"{job}: http_requests_total", accept=partial(eq, 5), timeout=60)  # fmt: skip
        assert prometheus.query(f'jobs_done_total{{job="{job}"}}') == 2
        assert prometheus.query(f'http_requests{{job="{job}"}}') is None
    assert pages.scrapes[True] > 0 and pages.scrapes[False] > 0
    om, text = target_types(prometheus, "om"), target_types(prometheus, "text")
    assert om["http_requests"] == "counter" and om["jobs_done"] == "counter"
    assert text["http_requests_total"] == "counter" and text["jobs_done_total"] == "counter"
    assert om["biometrics_sys_utime"] == text["biometrics_sys_utime_total"] == "counter"
    assert om["biometrics_collector_emit_counter"] == "counter"
    assert "unknown" not in om.values() and "unknown" not in text.values()
    everywhere = api(prometheus, "/api/v1/metadata")
    assert {m["type"] for m in everywhere["http_requests"]} == {"counter"}


def test_moments_are_a_summary_with_sum_and_count(prometheus: Prometheus) -> None:
    """``rate(m_sum)/rate(m_count)`` is possible; the merge state ``_m2``.. is not stored."""
    for job in ("om", "text"):
        wait_for(partial(prometheus.query, f'response_size_bytes_sum{{job="{job}"}}'),
                 f"{job}: response_size_bytes_sum", accept=partial(eq, 90.0),
                 timeout=60)  # fmt: skip
        assert prometheus.query(f'response_size_bytes_count{{job="{job}"}}') == 3
        assert prometheus.query(f'response_size_bytes_mean{{job="{job}"}}') == 30.0
        assert prometheus.query(f'response_size_bytes_m2{{job="{job}"}}') is None
        assert target_types(prometheus, job)["response_size_bytes"] == "summary"


def test_serve_merges_a_rust_counter_with_ours_as_one_counter(prometheus: Prometheus) -> None:
    """Rust's ``rust_jobs`` (4) and our ``rust_jobs_total`` (3): one counter series, 7."""
    wait_for(lambda: prometheus.query('rust_jobs_total{job="serve"}') == 7,
             "serve: rust_jobs_total", timeout=60)  # fmt: skip
    assert prometheus.query('rust_jobs{job="serve"}') is None
    assert target_types(prometheus, "serve")["rust_jobs"] == "counter"
