"""The exporter's HTTP server: an asyncio loop that speaks HTTP/1.1 via h11 and runs a WSGI app.

A scrape endpoint on a shared host must keep answering whatever other clients do.  So every
connection costs a coroutine and a socket, never a thread; a request must arrive whole within
``request_timeout`` of its start (a client that trickles bytes cannot hold a connection); a
request head over the limit gets 431, with the rest of the request read away so the client
sees the reply rather than a reset; and at the connection cap the oldest connection that has
not sent a whole request is closed to admit the new one, so slow clients cannot lock a
scraper out.  Only complete requests reach the thread pool that runs the app.  No loop polls:
an idle server sleeps in epoll until a socket or a deadline needs it.  See docs/ARCHITECTURE.md
("HTTP") for why no off-the-shelf server was used.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import io
import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

import h11

from .._daemon.logfmt import log
from .app import WSGIApp
from .limits import BACKLOG, HttpLimits, bind, raise_fd_limit

__all__ = ["Server"]

_READ = 16 << 10  # bytes per socket read; with h11's head limit, what a slow client can pin
_LINGER_SECONDS = 2.0  # after an error reply, how long the rest of the request is read away
_LINGER_BYTES = 1 << 20  # ... and how much of it
_EVICTION_LOG_EVERY = 60.0  # seconds between "connection limit reached" warnings


class _RejectError(Exception):
    """A request we answer with an error status, then close the connection."""

    def __init__(self, status: HTTPStatus, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def _error_reply(status: HTTPStatus, detail: str) -> bytes:
    """Raw bytes, since h11 refuses a response before it has parsed a request."""
    body = f"{status.value} {status.phrase}: {detail}\n".encode()
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
        "Server: biometrics\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _call_app(app: WSGIApp, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run the WSGI app to completion in a pool thread; the loop only ever sees bytes."""
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [(status, headers)]
        return chunks.append

    chunks: list[bytes] = []
    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if not started:
        raise RuntimeError("the WSGI app returned without calling start_response")
    return started[0][0], started[0][1], b"".join(chunks)


class Server:
    """The app on ``host:port`` (``""``: every interface; port 0: any) in a background thread.

    The socket is bound here, so a taken address raises ``OSError`` before anything starts,
    and ``port`` is the bound one.
    """

    def __init__(self, app: WSGIApp, host: str, port: int, limits: HttpLimits | None = None):
        self.app = app
        self.limits = limits or HttpLimits()
        self.host = host
        self._sock = bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        self.connection_limit = self.limits.connection_limit
        self._pool = ThreadPoolExecutor(self.limits.threads, thread_name_prefix="biometrics-app")
        self._thread = threading.Thread(target=self._run, name="biometrics-http", daemon=True)
        self._running = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Connections without a whole request yet, longest waiting first: whom to evict.
        self._waiting: dict[asyncio.StreamWriter, None] = {}
        self._evicted = 0
        self._evicted_logged_at = -_EVICTION_LOG_EVERY

    @property
    def open_connections(self) -> int:
        """Connections open now (read without locking: for tests and diagnostics)."""
        return len(self._tasks)

    def start(self) -> Server:
        """Begin serving (connections made before this wait in the listen backlog)."""
        self.connection_limit = raise_fd_limit(self.limits.connection_limit)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5) -> None:
        """Stop accepting, close every connection, and join the loop's thread."""
        if self._thread.is_alive() and self._running.wait(timeout):
            assert self._loop is not None and self._stopping is not None
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout)
        self._sock.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the loop's thread ----------------------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        # asyncio listens again with its own backlog (100 by default): keep ours
        server = await asyncio.start_server(self._connection, sock=self._sock, limit=_READ,
                                            backlog=BACKLOG)  # fmt: skip
        self._running.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        # drain() then waits until every byte is with the kernel, which still delivers them
        # after the close below: asyncio's abort() drops what it holds itself.
        writer.transport.set_write_buffer_limits(high=0)
        try:
            if len(self._tasks) > self.connection_limit and not self._evict_one():
                return  # every connection is busy with a whole request: refuse this one
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, h11.LocalProtocolError) as e:
            log(logging.DEBUG, "connection ended", error=str(e))
        except asyncio.CancelledError:
            # Only stop() cancels, and it awaits us; ending normally keeps asyncio's stream
            # callback (3.11) from reporting the cancellation as an unhandled error.
            pass
        except Exception as e:  # one connection's surprise must not reach the loop
            log(logging.ERROR, "connection failed", error=repr(e))
        finally:
            self._waiting.pop(writer, None)
            self._tasks.discard(task)
            writer.transport.abort()

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest without sending a whole request."""
        if not self._waiting:
            return False
        oldest = next(iter(self._waiting))
        del self._waiting[oldest]
        oldest.transport.abort()
        self._evicted += 1
        now = time.monotonic()
        if now - self._evicted_logged_at >= _EVICTION_LOG_EVERY:
            log(logging.WARNING, "connection limit reached; closing the oldest unfinished ones",
                connection_limit=self.connection_limit, closed_so_far=self._evicted)  # fmt: skip
            self._evicted_logged_at = now
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests on one connection, one at a time, until either side closes or a limit hits."""
        loop = asyncio.get_running_loop()
        limits = self.limits
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_request_header_size)
        peer = writer.get_extra_info("peername") or ("", 0)
        deadline = loop.time() + limits.request_timeout  # a new connection: from the accept
        while True:
            self._waiting[writer] = None
            try:
                got = await self._read_request(conn, reader, deadline)
            except _RejectError as e:
                await self._reject(reader, writer, e)
                return
            if got is None:
                return
            self._waiting.pop(writer, None)
            request, body = got
            await self._respond(conn, writer, request, body, peer)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # Connection: close, HTTP/1.0, or a body we did not read
            conn.start_next_cycle()
            if not conn.trailing_data[0]:  # idle until the next request starts
                self._waiting[writer] = None
                try:
                    data = await asyncio.wait_for(reader.read(_READ), limits.idle_timeout)
                except TimeoutError:
                    return
                if not data:
                    return
                conn.receive_data(data)
            deadline = loop.time() + limits.request_timeout  # kept alive: from its first byte

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, deadline: float
    ) -> tuple[h11.Request, bytes] | None:
        """The next whole request by ``deadline``, or None when the client closed between two."""
        limits = self.limits
        received = len(conn.trailing_data[0])
        request: h11.Request | None = None
        body = bytearray()
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    try:
                        event = conn.next_event()
                    except h11.RemoteProtocolError as e:
                        raise _RejectError(HTTPStatus(e.error_status_hint), str(e)) from e
                    if event is h11.NEED_DATA:
                        data = await reader.read(_READ)
                        received += len(data)
                        conn.receive_data(data)
                    elif isinstance(event, h11.Request):
                        # h11 bounds only an incomplete head; a whole one read at once is ours
                        if received - len(conn.trailing_data[0]) > limits.max_request_header_size:
                            raise _RejectError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                                          "request head over the limit")  # fmt: skip
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > limits.max_request_body_size:
                            raise _RejectError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                          "request body over the limit")  # fmt: skip
                    elif isinstance(event, h11.EndOfMessage):
                        assert request is not None
                        return request, bytes(body)
                    elif isinstance(event, h11.ConnectionClosed):
                        return None
        except TimeoutError:
            if not received:
                return None  # never said anything: nobody to tell
            raise _RejectError(HTTPStatus.REQUEST_TIMEOUT, "request not received in time") from None
        return None  # unreachable; the loop only returns or raises

    async def _reject(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reject: _RejectError
    ) -> None:
        """Send the error, then read away what the client is still sending.

        Closing with unread input makes the kernel send a reset, and a client still writing
        its request would see that instead of our status.
        """
        log(logging.DEBUG, "request rejected", status=reject.status.value, detail=str(reject))
        writer.write(_error_reply(reject.status, str(reject)))
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(_LINGER_SECONDS):
                await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
                drained = 0
                while drained < _LINGER_BYTES:
                    chunk = await reader.read(_READ)
                    if not chunk:
                        break
                    drained += len(chunk)

    async def _respond(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        body: bytes,
        peer: tuple[Any, ...],
    ) -> None:
        """Run the app in the pool and send its reply within ``idle_timeout``."""
        environ = self._environ(request, body, peer)
        loop = asyncio.get_running_loop()
        try:
            status, headers, payload = await loop.run_in_executor(
                self._pool, _call_app, self.app, environ
            )
        except Exception as e:  # the app's bug must not end the server
            log(logging.ERROR, "request failed", path=environ["PATH_INFO"], error=repr(e))
            status, headers = "500 Internal Server Error", [("Content-Type", "text/plain")]
            payload = b"internal error\n"
        code, _, reason = status.partition(" ")
        names = {name.lower() for name, _ in headers}
        extra = [("Date", email.utils.formatdate(usegmt=True)), ("Server", "biometrics")]
        if "content-length" not in names:
            extra.append(("Content-Length", str(len(payload))))
        response = h11.Response(status_code=int(code), reason=reason.encode("latin-1"),
                                headers=[*headers, *extra])  # fmt: skip
        out = [conn.send(response)]
        if payload and request.method != b"HEAD":
            out.append(conn.send(h11.Data(data=payload)))
        out.append(conn.send(h11.EndOfMessage()))
        writer.write(b"".join(part for part in out if part))
        await asyncio.wait_for(writer.drain(), self.limits.idle_timeout)

    def _environ(self, request: h11.Request, body: bytes, peer: tuple[Any, ...]) -> dict[str, Any]:
        """PEP 3333's environ: latin-1 strings, headers as ``HTTP_*``."""
        path, _, query = request.target.partition(b"?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method.decode("ascii"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query.decode("latin-1"),
            "SERVER_NAME": self.host or "0.0.0.0",
            "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": f"HTTP/{request.http_version.decode('ascii')}",
            "REMOTE_ADDR": str(peer[0]).removeprefix("::ffff:"),  # IPv4 on a dual-stack socket
            "REMOTE_PORT": str(peer[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for raw_name, raw_value in request.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            if "_" in name:
                continue  # X_Forwarded_For would pose as X-Forwarded-For
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ
