"""A small remote-write receiver on loopback for the answers Prometheus won't give on demand.

Each request is decoded and recorded; ``answer`` (a callable given the request number and the
decoded series) picks the reply: an HTTP status with optional headers and body, ``"reset"`` to
drop the connection without a reply, or ``("slow", seconds, status)`` to reply late.  Each
request records when it arrived and was answered, so tests can see which were in flight at once.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from biometrics.ship import decode

Decoded = list[tuple[tuple[tuple[str, str], ...], list[tuple[int, float]]]]
Reply = int | str | tuple[Any, ...]


@dataclass
class Request:
    number: int
    headers: dict[str, str]
    body: bytes
    series: Decoded
    arrived: float
    status: int | None = None
    answered: float | None = None


@dataclass
class Receiver:
    answer: Callable[[int, Decoded], Reply] = lambda n, s: 204
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    number = len(receiver.requests)
                    request = Request(number, dict(self.headers), body, decode(body),
                                      time.monotonic())  # fmt: skip
                    receiver.requests.append(request)
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                try:
                    self._reply(request, receiver.answer(number, request.series))
                finally:
                    self._answered(request)

            def _answered(self, request: Request) -> None:
                """Before the client can read the answer: it may send the next one at once."""
                with receiver.lock:
                    if request.answered is None:
                        receiver.in_flight -= 1
                        request.answered = time.monotonic()

            def _reply(self, request: Request, reply: Any) -> None:
                if reply == "reset":
                    self._answered(request)
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    return
                headers: dict[str, str] = {}
                text = b""
                if isinstance(reply, tuple) and reply[0] == "slow":
                    time.sleep(reply[1])
                    reply = reply[2]
                if isinstance(reply, tuple):
                    reply, headers, text = reply[0], reply[1], reply[2].encode()
                assert isinstance(reply, int)
                request.status = reply
                self._answered(request)
                self.send_response(reply)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/write"

    def accepted(self) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
        """Every sample of the requests answered 2xx, per series, in arrival order."""
        out: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
        with self.lock:
            for request in self.requests:
                if request.status is not None and 200 <= request.status < 300:
                    for labels, samples in request.series:
                        out.setdefault(labels, []).extend(samples)
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
