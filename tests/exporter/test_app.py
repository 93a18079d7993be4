"""/metrics served by ``serve`` over real HTTP: negotiation, gzip, health, scrapes under load."""

import gzip
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from biometrics import Collector, Counter
from biometrics.exporter import ExporterOptions, serve, wants_openmetrics
from biometrics.prometheus import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    Options,
    SegmentEmitter,
)

from ..helpers import wait_for

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    spool = tmp_path / "spool"
    spool.mkdir()
    c = Collector()
    c.register(Counter("requests_total", help="Requests.")).count(3)
    for i in range(200):
        c.register(Counter(f"padding_{i}_total")).count(i)
    with SegmentEmitter(Options(prefix=str(spool / "w1."))) as e:
        c.emit(e, 1000)
    stop = threading.Event()
    bound: list[int] = []
    ready = threading.Event()
    options = ExporterOptions(spool=str(spool), poll_interval=0.02)

    def on_listening(port: int) -> None:
        bound.append(port)
        ready.set()

    thread = threading.Thread(target=serve, args=(options, "127.0.0.1", 0),
                              kwargs={"stop": stop, "on_listening": on_listening})  # fmt: skip
    thread.start()
    assert ready.wait(10)
    port = bound[0]
    wait_for(lambda: b"requests_total 3" in get(port, "/metrics")[2], "the segment ingested")
    yield port, spool
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def get(
    port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_text_page_by_default(server: tuple[int, Path]) -> None:
    """No Accept: 0.0.4 text with its exact Content-Type, no timestamps."""
    status, headers, body = get(server[0], "/metrics")
    assert status == 200
    assert headers["Content-Type"] == TEXT_CONTENT_TYPE
    assert b"# HELP requests_total Requests.\n# TYPE requests_total counter\n" in body
    assert b"\nrequests_total 3\n" in body
    assert b"biometrics_exporter_scrape_duration_seconds_count" in body


def test_openmetrics_for_prometheus_and_gzip_when_accepted(server: tuple[int, Path]) -> None:
    """Prometheus's own Accept header gets OpenMetrics 1.0, gzipped, ending in # EOF."""
    headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
    status, got, body = get(server[0], "/metrics", headers=headers)
    assert status == 200
    assert got["Content-Type"] == OPENMETRICS_CONTENT_TYPE
    assert got["Content-Encoding"] == "gzip"
    text = gzip.decompress(body).decode()
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    assert "# TYPE requests counter\nrequests_total 3\n" in text


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        ("", False),
        ("text/plain", False),
        ("application/openmetrics-text", True),
        ("application/openmetrics-text;version=0.0.1", False),
        ("application/openmetrics-text;version=1.0.0;q=0.2,text/plain;q=0.5", False),
        (PROMETHEUS_ACCEPT, True),
    ],
)
def test_negotiation(accept: str, openmetrics: bool) -> None:
    """OpenMetrics only for version 1.0.0 (or none), and only when preferred."""
    assert wants_openmetrics(accept) is openmetrics


def test_health_ready_head_404_405(server: tuple[int, Path]) -> None:
    """Probes answer; HEAD has no body; unknown paths 404; other methods 405 with Allow."""
    port = server[0]
    assert get(port, "/-/healthy")[0] == 200
    assert get(port, "/-/ready")[:3:2] == (200, b"Ready\n")
    status, headers, body = get(port, "/metrics", "HEAD")
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) > 0
    assert get(port, "/nope")[0] == 404
    status, headers, _ = get(port, "/metrics", "POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_slow_and_huge_requests_do_not_stall_scrapes(server: tuple[int, Path]) -> None:
    """Half-sent requests hold no worker; an oversized header is refused."""
    port = server[0]
    slow = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
        slow.append(s)
    try:
        started = time.monotonic()
        assert get(port, "/metrics")[0] == 200
        assert time.monotonic() - started < 5
        huge = socket.create_connection(("127.0.0.1", port), timeout=10)
        huge.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        reply = huge.recv(100)
        huge.close()
        assert reply.split(b" ")[1] == b"431"  # Request Header Fields Too Large
    finally:
        for s in slow:
            s.close()


def test_fifty_concurrent_scrapers(server: tuple[int, Path]) -> None:
    """50 scrapers at once all get the whole page."""
    port = server[0]
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: get(port, "/metrics"), range(50)))
    assert all(status == 200 and b"\nrequests_total 3\n" in body for status, _, body in results)
