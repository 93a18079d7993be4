"""The HTTP server's own limits, with a small app: what is tested is the connection handling."""

import http.client
import resource
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from biometrics.exporter import HttpLimits, Server

from ..helpers import read_until_closed, wait_for

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def echo_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("a bug in the app")
    body = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {environ['REMOTE_ADDR']}\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body.encode()]


@pytest.fixture
def limited() -> Iterator[Server]:
    limits = HttpLimits(connection_limit=20, request_timeout=1.0, idle_timeout=2.0,
                        max_request_body_size=1024)  # fmt: skip
    server = Server(echo_app, "127.0.0.1", 0, limits).start()
    yield server
    server.stop()


def test_keep_alive_and_pipelining(limited: Server) -> None:
    """Two requests sent at once on one connection get two replies, in order, on it."""
    with socket.create_connection(("127.0.0.1", limited.port), timeout=5) as s:
        s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")  # fmt: skip
        data = read_until_closed(s, 5)
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.index(b"GET /a 127.0.0.1") < data.index(b"HTTP/1.1 200 OK", 1)
    assert b"HEAD /b" not in data  # HEAD: headers only
    assert b"\r\nDate: " in data and b"\r\nServer: biometrics" in data


def test_kept_alive_connection_closed_when_idle(limited: Server) -> None:
    """After a reply, a silent connection is closed at ``idle_timeout``, not before."""
    with socket.create_connection(("127.0.0.1", limited.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        data = read_until_closed(s, 6)
    assert data.startswith(b"HTTP/1.1 200 OK") and data.count(b"HTTP/1.1") == 1
    assert 1.5 < time.monotonic() - started < 5


def test_trickled_request_gets_408_at_the_deadline(limited: Server) -> None:
    """Bytes that keep arriving do not extend the deadline: the whole head is due in time."""
    with socket.create_connection(("127.0.0.1", limited.port), timeout=5) as s:
        started = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\n")
        closed, reply = False, b""
        for _ in range(40):  # a header line every 0.1 s, at most 4 s
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                closed = True
                break
            s.settimeout(0.1)
            try:
                reply = s.recv(4096)
            except TimeoutError:
                continue
            closed = True
            break
        elapsed = time.monotonic() - started
    assert closed, "the server never closed a request trickled for 4 s"
    assert 0.8 < elapsed < 2.5
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout")


def test_silent_connection_closed_at_the_deadline_without_reply(limited: Server) -> None:
    """A connection that never sends is closed after ``request_timeout``, with nothing said."""
    with socket.create_connection(("127.0.0.1", limited.port), timeout=5) as s:
        started = time.monotonic()
        assert read_until_closed(s, 4) == b""
    assert 0.8 < time.monotonic() - started < 3


def test_oversized_body_gets_413(limited: Server) -> None:
    """A body over ``max_request_body_size`` is refused before the app sees it."""
    conn = http.client.HTTPConnection("127.0.0.1", limited.port, timeout=5)
    try:
        conn.request("POST", "/", body=b"x" * 4096)
        assert conn.getresponse().status == 413
    finally:
        conn.close()


def test_app_error_is_500_and_the_server_goes_on(limited: Server) -> None:
    """An exception in the app answers 500; the next request is served normally."""
    for path, status in (("/boom", 500), ("/fine", 200)):
        conn = http.client.HTTPConnection("127.0.0.1", limited.port, timeout=5)
        try:
            conn.request("GET", path)
            assert conn.getresponse().status == status
        finally:
            conn.close()


def test_connection_cap_closes_the_oldest_unfinished() -> None:
    """At the cap a new client is still served: the longest-waiting idle connection goes."""
    limits = HttpLimits(connection_limit=20, request_timeout=30)  # no deadline within the test
    server = Server(echo_app, "127.0.0.1", 0, limits).start()
    idle: list[socket.socket] = []
    try:
        for _ in range(20):
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
            wait_for(lambda: server.open_connections >= len(idle),  # accepted in this order
                     f"connection {len(idle)} accepted", timeout=5, every=0.01)  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/after-cap")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"GET /after-cap 127.0.0.1\n")
        conn.close()
        assert read_until_closed(idle[0], 5) == b""  # the oldest: closed, long before 30 s
        idle[-1].settimeout(0.1)
        with pytest.raises(TimeoutError):
            idle[-1].recv(1)  # the newest: still open
    finally:
        for s in idle:
            s.close()
        server.stop()


@pytest.mark.parametrize(("host", "target"), [("::1", "::1"), ("", "127.0.0.1"), ("", "::1")])
def test_ipv6_and_every_interface(host: str, target: str) -> None:
    """``--listen`` hands over an IPv6 address unbracketed, or "" for every interface."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        server = Server(echo_app, host, 0).start()
    except OSError as e:
        pytest.skip(f"cannot bind IPv6 here: {e}")
    try:
        conn = http.client.HTTPConnection(target, server.port, timeout=5)
        conn.request("GET", "/v6")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == f"GET /v6 {target}\n".encode()
        conn.close()
    finally:
        server.stop()


def test_taken_address_raises_oserror_before_start() -> None:
    """Binding happens in the constructor, so ``serve`` can report the address in use."""
    first = Server(echo_app, "127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            Server(echo_app, "127.0.0.1", first.port)
    finally:
        first.stop()


def test_open_file_limit_raised_to_the_hard_limit() -> None:
    """1,000 connections need more descriptors than the usual soft limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 512:
        pytest.skip(f"hard limit {hard}: nothing to raise to")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    try:
        server = Server(echo_app, "127.0.0.1", 0).start()
        server.stop()
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
        assert server.connection_limit == min(HttpLimits().connection_limit, hard - 128)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 512), hard))
