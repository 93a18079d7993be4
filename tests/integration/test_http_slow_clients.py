"""Slowloris and oversized heads against a real `serve` process, over real loopback sockets.

The server runs in its own process (its own descriptors and CPU, as in production), with a
short ``request_timeout`` so the deadline can be watched within the test's time budget.
"""

from __future__ import annotations

import http.client
import resource
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from biometrics import Collector, Counter
from biometrics.prometheus import Options, SegmentEmitter

from ..helpers import read_until_closed, wait_for

SLOW = 1000
REQUEST_TIMEOUT = 3.0

SERVER = """
import sys
from biometrics.exporter import ExporterOptions, HttpLimits, serve
spool, state, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
serve(ExporterOptions(spool=spool, state=state), "127.0.0.1", 0,
      limits=HttpLimits(request_timeout=timeout),
      on_listening=lambda port: print(port, flush=True))
"""


def scrape(port: int, timeout: float = 2.0) -> tuple[int, bytes, float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        return response.status, response.read(), time.monotonic() - started
    finally:
        conn.close()


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("slow")
    spool = tmp / "spool"
    spool.mkdir()
    c = Collector()
    c.register(Counter("requests_total", help="Requests.")).count(3)
    with SegmentEmitter(Options(prefix=str(spool / "w1."))) as e:
        c.emit(e, 1000)
    argv = [sys.executable, "-c", SERVER, str(spool), str(tmp / "state.json"), str(REQUEST_TIMEOUT)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        bound = int(proc.stdout.readline())
        wait_for(lambda: b"\nrequests_total 3\n" in scrape(bound, 5)[1], "the segment ingested")
        yield bound
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def enough_descriptors(wanted: int) -> None:
    """This process holds the client ends: lift its own soft limit, or skip."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"open-file hard limit {hard} is below {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def test_scrapes_answered_while_1000_slow_connections_are_held_then_cut(port: int) -> None:
    """1,000 clients trickling a request head: scrapes still take < 2 s; each slow one is
    answered 408 and closed at the deadline although it keeps sending."""
    enough_descriptors(SLOW + 256)
    sel = selectors.DefaultSelector()
    opened: dict[socket.socket, float] = {}
    closed: dict[socket.socket, float] = {}
    replies: dict[socket.socket, bytes] = {}
    try:
        for _ in range(SLOW):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: slow\r\n")  # never finished
            s.setblocking(False)
            opened[s] = time.monotonic()
            replies[s] = b""
            sel.register(s, selectors.EVENT_READ)
        scrapes = [scrape(port) for _ in range(20)]
        scraped_at = time.monotonic()
        assert all(status == 200 and b"\nrequests_total 3\n" in body
                   for status, body, _ in scrapes)  # fmt: skip
        slowest = max(took for _, _, took in scrapes)
        assert slowest < 2.0, f"a scrape took {slowest:.2f}s with {SLOW} slow connections"

        # Keep trickling (a header line every 0.5 s) until the server cuts each one.
        deadline = time.monotonic() + REQUEST_TIMEOUT + 10
        next_drip = time.monotonic()
        while len(closed) < SLOW and time.monotonic() < deadline:
            if time.monotonic() >= next_drip:
                for s in opened.keys() - closed.keys():
                    try:
                        s.send(b"X-Slow: 1\r\n")
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed[s] = time.monotonic()
                next_drip += 0.5
            for key, _ in sel.select(timeout=0.05):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                try:
                    chunk = ready.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                replies[ready] += chunk
                if not chunk:
                    closed[ready] = time.monotonic()
                    sel.unregister(ready)
        assert len(closed) == SLOW, f"{SLOW - len(closed)} slow connections never closed"
        assert min(closed.values()) > scraped_at, "slow connections were cut before the scrapes"
        held = sorted(closed[s] - opened[s] for s in opened)
        assert held[0] > REQUEST_TIMEOUT - 0.5, f"closed after {held[0]:.2f}s, before the deadline"
        assert held[-1] < REQUEST_TIMEOUT + 2, f"held {held[-1]:.2f}s, past the deadline"
        timed_out = sum(r.startswith(b"HTTP/1.1 408 Request Timeout") for r in replies.values())
        assert timed_out == SLOW
    finally:
        sel.close()
        for s in opened:
            s.close()


def test_20_kib_header_gets_431_whole_or_trickled(port: int) -> None:
    """431, never a reset: the server reads the rest of the request away before closing."""
    head = b"GET /metrics HTTP/1.1\r\nHost: big\r\nX-Big: " + b"a" * (20 << 10) + b"\r\n\r\n"
    for piece in (len(head), 1024):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            for i in range(0, len(head), piece):  # every write must succeed
                s.sendall(head[i : i + piece])
                time.sleep(0.002)
            reply = read_until_closed(s, 5)
        assert reply.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), reply[:80]
        assert b"\r\nConnection: close\r\n" in reply
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics", headers={"X-Big": "a" * (20 << 10)})
        assert conn.getresponse().status == 431
    finally:
        conn.close()
    assert scrape(port)[0] == 200  # and the server is fine
