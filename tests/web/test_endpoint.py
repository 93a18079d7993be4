import asyncio
import gzip as gz
import logging
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from biometrics import Collector, Counter, Gauge, default_collector
from biometrics.prometheus import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, Sample, parse
from biometrics.web import endpoint, make_asgi_app, make_wsgi_app, start_http_server
from biometrics.web.asgi import Message

from ..helpers import wait_for
from ..integration._prometheus import free_port

OPENMETRICS = "application/openmetrics-text; version=1.0.0, text/plain;q=0.5"


def collector_with_jobs(n: int) -> Collector:
    c = Collector()
    c.register(Counter("jobs.done", help="Jobs.")).count(n)
    return c


def wsgi_get(app: Any, method: str = "GET", accept: str = "") -> tuple[str, dict[str, str], bytes]:
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        got["status"], got["headers"] = status, dict(headers)

    body = b"".join(app({"REQUEST_METHOD": method, "HTTP_ACCEPT": accept}, start_response))
    return got["status"], got["headers"], body


def test_wsgi_app_negotiates_the_format() -> None:
    app = make_wsgi_app(collector_with_jobs(3))
    status, headers, body = wsgi_get(app)
    assert (status, headers["Content-Type"]) == ("200 OK", TEXT_CONTENT_TYPE)
    assert b"\njobs_done_total 3\n" in body
    assert int(headers["Content-Length"]) == len(body)
    status, headers, body = wsgi_get(app, accept=OPENMETRICS)
    assert headers["Content-Type"] == OPENMETRICS_CONTENT_TYPE
    assert body.endswith(b"# EOF\n")
    status, headers, body = wsgi_get(app, "HEAD")
    assert (status, body) == ("200 OK", b"")
    assert int(headers["Content-Length"]) > 0
    status, headers, body = wsgi_get(app, "POST")
    assert (status, headers["Allow"]) == ("405 Method Not Allowed", "GET, HEAD")


def test_a_failing_sensor_leaves_the_rest_of_the_page(caplog: pytest.LogCaptureFixture) -> None:
    c = collector_with_jobs(2)

    def broken() -> float:
        raise ZeroDivisionError("no reading")

    c.register(Gauge("queue.depth")).set_function(broken)
    app = make_wsgi_app(c)
    with caplog.at_level(logging.WARNING, logger="biometrics.web"):
        for _ in range(3):
            status, _, body = wsgi_get(app)
    assert status == "200 OK"
    assert b"\njobs_done_total 2\n" in body
    assert b"queue_depth" not in body
    assert len(caplog.records) == 1  # once per exception class


def asgi_get(app: Any, scope: dict[str, Any]) -> list[Message]:
    sent: list[Message] = []
    messages = [{"type": "lifespan.shutdown"}, {"type": "lifespan.startup"}]

    async def receive() -> Message:
        return messages.pop()

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    return sent


def test_asgi_app_answers_http_lifespan_and_websockets() -> None:
    app = make_asgi_app(collector_with_jobs(5))
    headers = [(b"accept", OPENMETRICS.encode())]
    start, body = asgi_get(app, {"type": "http", "method": "GET", "headers": headers})
    assert start["status"] == 200
    assert (b"content-type", OPENMETRICS_CONTENT_TYPE.encode()) in start["headers"]
    assert b"\njobs_done_total 5\n" in body["body"]
    start, body = asgi_get(app, {"type": "http", "method": "HEAD", "headers": []})
    assert (start["status"], body["body"]) == (200, b"")
    start, _ = asgi_get(app, {"type": "http", "method": "DELETE"})
    assert start["status"] == 405
    lifespan = asgi_get(app, {"type": "lifespan"})
    assert [m["type"] for m in lifespan] == [
        "lifespan.startup.complete", "lifespan.shutdown.complete",
    ]  # fmt: skip
    assert asgi_get(app, {"type": "websocket"}) == [{"type": "websocket.close", "code": 1000}]


def test_start_http_server_serves_the_default_collector_with_runtime_series() -> None:
    jobs = default_collector().register(Counter("web.test.jobs", help="Jobs."))
    jobs.count(7)
    server = start_http_server(free_port())
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
            page = r.read()
        values = {
            (s.name, s.labels): s.value
            for s in parse(page.splitlines(keepends=True), strict=True)
            if isinstance(s, Sample)
        }
        assert values[("web_test_jobs_total", ())] == 7
        assert values[("process_resident_memory_bytes", ())] > 0
        assert values[("process_open_fds", ())] > 0
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}/", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405
    finally:
        server.close()
        default_collector().unregister(jobs)
    assert not server.thread.is_alive()


def test_start_http_server_on_ipv6_loopback() -> None:
    try:
        server = start_http_server(0, "::1", collector_with_jobs(1))
    except OSError as e:  # no IPv6 on this machine
        pytest.skip(f"no IPv6 loopback: {e}")
    try:
        with urllib.request.urlopen(f"http://[::1]:{server.port}/metrics", timeout=10) as r:
            assert b"\njobs_done_total 1\n" in r.read()
    finally:
        server.close()


def closed(client: socket.socket) -> bool:
    """Whether the server closed ``client`` (a reset too: it had unread bytes from us)."""
    try:
        return client.recv(1) == b""
    except ConnectionResetError:
        return True


def test_start_http_server_bounds_connections_and_keeps_stderr_quiet(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A flood of silent clients holds at most MAX_CONNECTIONS threads; the rest are closed
    at once, a timed-out client prints nothing, and scrapes work again once they are gone."""
    monkeypatch.setattr(endpoint._Handler, "timeout", 3.0)
    server = start_http_server(0, collector=collector_with_jobs(1))
    threads = threading.active_count()
    silent: list[socket.socket] = []
    try:
        for _ in range(endpoint.MAX_CONNECTIONS + 20):
            client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            client.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never the rest of the head
            silent.append(client)
        refused = [c for c in silent[endpoint.MAX_CONNECTIONS :] if closed(c)]
        assert len(refused) == 20  # closed unanswered, not queued behind the others
        assert threading.active_count() <= threads + endpoint.MAX_CONNECTIONS
        wait_for(lambda: threading.active_count() <= threads, "the silent clients to time out")
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
            assert b"\njobs_done_total 1\n" in r.read()
    finally:
        for client in silent:
            client.close()
        server.close()
    assert "Traceback" not in capfd.readouterr().err


def test_a_page_is_gzipped_for_a_scraper_that_takes_it() -> None:
    """As serve's page: 1 KiB or more and ``Accept-Encoding: gzip`` give a gzipped body."""
    collector = Collector()
    for i in range(60):
        collector.register(Counter(f"jobs.{i}")).click()
    app = make_wsgi_app(collector)
    got: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], *exc: object
    ) -> Callable[[bytes], object]:
        got.append((status, headers))
        return lambda data: None

    plain = b"".join(app({"REQUEST_METHOD": "GET"}, start_response))
    packed = b"".join(app({"REQUEST_METHOD": "GET", "HTTP_ACCEPT_ENCODING": "gzip"},
                          start_response))  # fmt: skip
    assert len(plain) >= 1024 and ("Content-Encoding", "gzip") not in got[0][1]
    assert ("Content-Encoding", "gzip") in got[1][1]

    def jobs(page: bytes) -> list[bytes]:  # the collector's own counters move between scrapes
        return [line for line in page.splitlines() if line.startswith(b"jobs_")]

    assert jobs(gz.decompress(packed)) == jobs(plain) and len(jobs(plain)) == 60
    assert len(packed) < len(plain)
    assert dict(got[1][1])["Content-Length"] == str(len(packed))
