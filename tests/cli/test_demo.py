"""``biometrics demo``: the whole pipeline with nothing to configure."""

from ..helpers import scrape, wait_for
from ._helpers import port_of, run_in_thread


def test_demo_serves_its_workers_metrics() -> None:
    """The main job: workers emit, serve merges, /metrics shows their requests, Ctrl-C stops."""
    thread, stop, out, codes = run_in_thread(["demo", "--workers", "2", "--listen", "127.0.0.1:0",
                                              "--log-level", "warning"])  # fmt: skip
    try:
        port = port_of(out)
        page = wait_for(lambda: scrape(port), "the workers' requests on the page",
                        accept=lambda page: "http_requests_total{" in page, timeout=60,
                        every=0.1)  # fmt: skip
        assert "http_request_duration_seconds_bucket{" in page
        assert "http_response_bytes_mean " in page
    finally:
        stop.set()
        thread.join(30)
    assert codes == [0]
