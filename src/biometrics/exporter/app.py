"""The exporter's HTTP face as a WSGI app: ``/metrics`` in the format the scraper asks for.

WSGI keeps the app apart from the server that runs it (:mod:`.server`), so it can be tested
without sockets and mounted elsewhere.  Prometheus says which format it wants in ``Accept``
(OpenMetrics 1.0 first, then the 0.0.4 text); a page of a thousand bytes or more is gzipped
when the scraper accepts it, at level 1: a page is compressed afresh for every scrape, so it
must be cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..prometheus import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from ..prometheus.negotiation import gzipped, wants_openmetrics
from .daemon import Exporter

__all__ = ["StartResponse", "WSGIApp", "make_app", "wants_openmetrics"]

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def make_app(exporter: Exporter) -> WSGIApp:
    """``/metrics``, ``/-/healthy``, ``/-/ready``; 404 elsewhere, 405 for methods but GET/HEAD."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path not in ("/metrics", "/-/healthy", "/-/ready", "/"):
            return _reply(start_response, "404 Not Found", b"not found; try /metrics\n", method)
        if method not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", b"use GET\n", method,
                          [("Allow", "GET, HEAD")])  # fmt: skip
        if path != "/metrics":
            status, text = _simple(path, exporter.ready.is_set())
            return _reply(start_response, status, text, method)
        openmetrics = wants_openmetrics(environ.get("HTTP_ACCEPT", ""))
        body = exporter.page(openmetrics=openmetrics).encode()
        headers = [
            ("Content-Type", OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE),
            ("Vary", "Accept, Accept-Encoding"),
        ]
        packed = gzipped(body, environ.get("HTTP_ACCEPT_ENCODING", ""))
        if packed is not None:
            body = packed
            headers.append(("Content-Encoding", "gzip"))
        return _reply(start_response, "200 OK", body, method, headers)

    return app


def _simple(path: str, ready: bool) -> tuple[str, bytes]:
    if path == "/-/healthy":
        return "200 OK", b"Healthy\n"
    if path == "/-/ready":
        return ("200 OK", b"Ready\n") if ready else ("503 Service Unavailable", b"loading state\n")
    return "200 OK", b"biometrics exporter: see /metrics\n"


def _reply(
    start_response: StartResponse,
    status: str,
    body: bytes,
    method: str,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = headers or [("Content-Type", "text/plain; charset=utf-8")]
    headers.append(("Content-Length", str(len(body))))
    start_response(status, headers)
    return [] if method == "HEAD" else [body]
