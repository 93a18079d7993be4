"""WSGI middleware: every request counted and timed until its response body is done.

``app = BiometricsWSGIMiddleware(app)`` (Flask: :func:`biometrics.web.flask.instrument`).  The
latency runs from the call until the body is done: its iteration ended (the server asks for
the next chunk only once it has handed the last one to the socket, so a streamed body is timed
to its end), or was abandoned (a client gone), or, if the server never iterated, it closed the
iterable.  Not waiting for ``close()`` alone matters: a server that forgets it would leave the
request uncounted and the in-flight gauge up for ever.  A list body (already made) and a
``wsgi.file_wrapper`` (sent by ``sendfile``) are done when the app returns; the file wrapper is
passed through untouched so the server can still use ``sendfile``.  An exception out of the
app, or out of the body while it is iterated, counts as status 500 and propagates unchanged.
Each request is counted once, whichever of these comes first.

The route label is read after the app has run, when the framework has routed: a string left
in ``environ["biometrics.route"]`` (what the Flask hook does), else ``route(environ)`` when
given, else ``"<unmatched>"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

from ..buckets import DEFAULT_BUCKETS
from ..collector import Collector
from ..sensors import Gauge
from .metrics import LOGGER, ROUTE_KEY, UNMATCHED, HttpMetrics, http_metrics

__all__ = ["BiometricsWSGIMiddleware", "StartResponse", "WSGIApp", "WSGIEnviron"]

WSGIEnviron = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]


class _Request:
    """One request's state: its own ``start_response``, the in-flight gauge, the start time."""

    __slots__ = (
        "done", "environ", "failed", "gauge", "method", "middleware", "start", "started", "status",
    )  # fmt: skip

    def __init__(
        self, middleware: BiometricsWSGIMiddleware, environ: WSGIEnviron, start: StartResponse
    ) -> None:
        self.middleware = middleware
        self.environ = environ
        self.start = start
        self.status = ""
        self.failed = False
        self.done = False
        self.method = method = str(environ.get("REQUEST_METHOD", "GET"))
        self.gauge: Gauge = middleware.metrics.enter(method)
        self.started = time.perf_counter()

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        self.status = status
        if exc_info is None:
            return self.start(status, headers)
        return self.start(status, headers, exc_info)

    def finish(self) -> None:
        """Count the request out, the first time only."""
        if self.done:
            return
        self.done = True
        seconds = time.perf_counter() - self.started
        try:
            status = "500" if self.failed or not self.status else self.status[:3]
            route = self.middleware.route_of(self.environ)
            self.middleware.metrics.leave(self.gauge, self.method, route, status, seconds)
        except Exception:  # never into the request
            LOGGER.exception("biometrics: failed to count a WSGI request")


class _Body:
    """The app's response iterable, seen through: finishes the request when it is done."""

    __slots__ = ("_body", "_request")

    def __init__(self, body: Iterable[bytes], request: _Request) -> None:
        self._body = body
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except GeneratorExit:  # abandoned: the client went away, the server stopped asking
            raise
        except BaseException:
            self._request.failed = True
            raise
        finally:
            self._request.finish()

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        except BaseException:
            self._request.failed = True
            raise
        finally:
            self._request.finish()


class BiometricsWSGIMiddleware:
    """Counts, times and tracks in flight every request to ``app`` (see the module docstring).

    ``collector`` defaults to the default collector (what ``emit_every`` and
    :func:`~biometrics.web.make_wsgi_app` read); ``buckets`` is the latency layout, one per
    collector; ``route(environ)`` gives the route template where no framework hook does.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        collector: Collector | None = None,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        route: Callable[[WSGIEnviron], str | None] | None = None,
    ) -> None:
        self.app = app
        self.metrics: HttpMetrics = http_metrics(collector, buckets=buckets)
        self._route = route

    def route_of(self, environ: WSGIEnviron) -> str:
        """The route label of a request the app has answered."""
        found = environ.get(ROUTE_KEY)
        if found is None and self._route is not None:
            found = self._route(environ)
        return str(found) if found is not None else UNMATCHED

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        request = _Request(self, environ, start_response)
        try:
            body = self.app(environ, request.start_response)
        except BaseException:
            request.failed = True
            request.finish()
            raise
        kind = type(body)
        if kind is list or kind is tuple:
            request.finish()
            return body
        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(wrapper, type) and isinstance(body, wrapper):
            request.finish()  # sendfile: the server needs the wrapper itself
            return body
        return _Body(body, request)
