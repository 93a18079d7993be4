"""One process's ``/metrics`` without a spool: ``start_http_server``, ``make_*_app``.

The ``prometheus_client`` functions of the same names, over a collector (the default one
unless given): each scrape emits the collector into a fresh :class:`SlashMetrics` and renders
it, 0.0.4 text or OpenMetrics 1.0 as the scraper's ``Accept`` prefers (as ``serve``'s page:
:func:`~biometrics.prometheus.negotiation.wants_openmetrics`).  With the default collector the
page also carries the process and runtime series ``emit_every`` adds
(``process_resident_memory_bytes``, ``python_gc_*``, ``biometrics_sys_*``...), read afresh at
each scrape, as ``prometheus_client``'s default registry does.

For one process only: under several workers (gunicorn ``--workers 4``, ``uvicorn
--workers``) each answers with its own counts, so scrapes would jump between workers; write a
spool with ``emit_every`` and run ``biometrics serve`` instead.  A sensor that fails to read
(a raising ``set_function``) is left off the page, counted in
``biometrics_collector_emit_failure_total`` and logged once per exception class; the rest of
the page is served.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ..collector import Collector, default_collector
from ..prometheus import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, SlashMetrics
from ..prometheus.negotiation import gzipped, wants_openmetrics
from ..system import RuntimeSensors, SystemSensors
from .asgi import ASGIApp, Receive, Scope, Send
from .metrics import LOGGER, ROUTE_KEY
from .wsgi import StartResponse, WSGIApp, WSGIEnviron

__all__ = [
    "CLIENT_TIMEOUT",
    "MAX_CONNECTIONS",
    "SCRAPE_ROUTE",
    "MetricsServer",
    "make_asgi_app",
    "make_wsgi_app",
    "start_http_server",
]


class _Page:
    """A collector's page, rendered afresh for each scrape."""

    def __init__(self, collector: Collector | None) -> None:
        self.collector = collector if collector is not None else default_collector()
        self._polls: list[Callable[[], None]] = []
        if collector is None:
            for sensors in (SystemSensors(), RuntimeSensors()):
                sensors.register(self.collector)
                self._polls.append(sensors.poll)
        self._logged: set[type[BaseException]] = set()

    def render(self, accept: str) -> tuple[bytes, str]:
        """The page as ``accept`` prefers it, and its content type."""
        for poll in self._polls:
            with contextlib.suppress(Exception):
                poll()
        page = SlashMetrics()
        try:
            self.collector.emit(page)
        except Exception as e:  # a failing sensor: the rest of the page is still served
            if type(e) not in self._logged:
                self._logged.add(type(e))
                LOGGER.warning("biometrics: a sensor failed to read for /metrics: %r", e)
        if wants_openmetrics(accept):
            return page.render_openmetrics().encode(), OPENMETRICS_CONTENT_TYPE
        return page.render().encode(), TEXT_CONTENT_TYPE


_NOT_GET = b"use GET\n"
SCRAPE_ROUTE = "/metrics"
"""The route label of the page's own requests when the framework names none."""


def make_wsgi_app(collector: Collector | None = None) -> WSGIApp:
    """A WSGI app answering every GET or HEAD with the page (405 to other methods).

    Mount it where the framework takes a WSGI app (werkzeug's ``DispatcherMiddleware``), or
    serve it alone.
    """
    page = _Page(collector)

    def app(environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        environ.setdefault(ROUTE_KEY, SCRAPE_ROUTE)
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [
                ("Content-Type", "text/plain; charset=utf-8"), ("Allow", "GET, HEAD"),
                ("Content-Length", str(len(_NOT_GET))),
            ])  # fmt: skip
            return [_NOT_GET]
        body, content_type = page.render(str(environ.get("HTTP_ACCEPT", "")))
        headers = [("Content-Type", content_type), ("Vary", "Accept, Accept-Encoding")]
        packed = gzipped(body, str(environ.get("HTTP_ACCEPT_ENCODING", "")))
        if packed is not None:
            body = packed
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", [*headers, ("Content-Length", str(len(body)))])
        return [] if method == "HEAD" else [body]

    return app


class _MetricsASGIApp:
    """The ASGI page; a class, not a function, so Starlette's ``add_route`` takes it as an app."""

    def __init__(self, page: _Page) -> None:
        self._page = page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            for _ in range(2):  # startup, then shutdown
                message = await receive()
                step = str(message["type"]).removeprefix("lifespan.")
                await send({"type": f"lifespan.{step}.complete"})
                if step == "shutdown":
                    return
            return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        if "route" not in scope:  # FastAPI routes a plain ASGI app without naming its route
            scope.setdefault(ROUTE_KEY, SCRAPE_ROUTE)
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            plain = b"text/plain; charset=utf-8"
            await _answer(send, 405, _NOT_GET, plain, [(b"allow", b"GET, HEAD")])
            return
        headers = scope.get("headers", ())
        accept = b", ".join(v for k, v in headers if k.lower() == b"accept")
        encodings = b", ".join(v for k, v in headers if k.lower() == b"accept-encoding")
        body, content_type = self._page.render(accept.decode("latin-1"))
        extra = [(b"vary", b"Accept, Accept-Encoding")]
        packed = gzipped(body, encodings.decode("latin-1"))
        if packed is not None:
            body = packed
            extra.append((b"content-encoding", b"gzip"))
        await _answer(send, 200, b"" if method == "HEAD" else body, content_type.encode(),
                      extra, length=len(body))  # fmt: skip


def make_asgi_app(collector: Collector | None = None) -> ASGIApp:
    """An ASGI app answering every GET or HEAD with the page (405 to other methods).

    Route it (Starlette, FastAPI: ``app.add_route("/metrics", make_asgi_app())``; a
    ``mount`` answers ``/metrics/`` and redirects ``/metrics`` there) or serve it alone; it
    answers ``lifespan`` and closes websockets.  The page is rendered on the event loop: a
    few milliseconds for thousands of series.
    """
    return _MetricsASGIApp(_Page(collector))


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: list[tuple[bytes, bytes]],
    *,
    length: int | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % (length or len(body)))]
    await send({"type": "http.response.start", "status": status, "headers": headers + extra})
    await send({"type": "http.response.body", "body": body})


MAX_CONNECTIONS = 32
"""Connections :func:`start_http_server` answers at once.  One more is closed unanswered: a
thread and a descriptor each, a flood of clients (or of slow ones) costs the host process at
most this many of either, never its own descriptors.  A scrape takes milliseconds."""
CLIENT_TIMEOUT = 10.0
"""Seconds a client may take over each read or write before its connection is dropped."""


class _Server(ThreadingMixIn, WSGIServer):
    """The stdlib threaded WSGI server, bounded: :data:`MAX_CONNECTIONS`, no stderr noise."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s reverse DNS lookup (``getfqdn``) of the address.

        That lookup can stall the host's start-up for a resolver timeout; the page never uses
        the name.
        """
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection if a slot is free; else it is closed at once."""
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: the slot is free again
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection on its thread, then give its slot back."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out or went away: a debug line, not a traceback.

        The base class prints one on the host's stderr, which any client could then fill.
        """
        LOGGER.debug("biometrics: /metrics client %s: %r", client_address, sys.exc_info()[1])


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(WSGIRequestHandler):
    timeout = CLIENT_TIMEOUT  # a client that sends nothing does not hold a slot for ever

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not logged (every 15 s, for ever)."""


@dataclass(frozen=True, slots=True)
class MetricsServer:
    """What :func:`start_http_server` started: the server and the daemon thread serving it."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The port it listens on (the one the OS chose when asked for port 0)."""
        return int(self.server.server_address[1])

    def close(self) -> None:
        """Stop serving and close the socket (a daemon thread also ends with the process)."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def start_http_server(
    port: int, addr: str = "127.0.0.1", collector: Collector | None = None
) -> MetricsServer:
    """Serve the page on ``addr:port`` from a daemon thread, as ``prometheus_client`` does.

    Listens on loopback by default (``prometheus_client`` listens on every interface; pass
    ``addr="0.0.0.0"`` or ``"::"`` for that).  A port in use raises ``OSError`` here, at the
    call, not later.  At most :data:`MAX_CONNECTIONS` clients are answered at once, each
    dropped after :data:`CLIENT_TIMEOUT` seconds of silence; a client's failure is never
    printed to the host's stderr.
    """
    server_class = _Server6 if ":" in addr else _Server
    server = make_server(addr, port, make_wsgi_app(collector), server_class, _Handler)
    thread = threading.Thread(target=server.serve_forever, name="biometrics-http", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
