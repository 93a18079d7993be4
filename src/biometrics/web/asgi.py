"""ASGI middleware: every HTTP request counted and timed until its response body is sent.

``app.add_middleware(BiometricsASGIMiddleware)`` (Starlette, FastAPI) or
``app = BiometricsASGIMiddleware(app)`` around any ASGI app.  Only ``http`` scopes are
counted; websockets and lifespan pass straight through.  The latency ends when the last body
message (``more_body`` false, or a ``http.response.pathsend``) has been handed to the server,
so a streamed response is timed to its end; when the app returns without one, its return ends
it.  An exception out of the app counts as status 500 and propagates unchanged; an app that
returns without starting a response is counted 500 too (the server answers that).

The route label is read when the response ends, after routing: a string in
``scope["biometrics.route"]``, else the ``path_format`` of the route Starlette (and so
FastAPI) leaves in ``scope["route"]``, else ``route(scope)`` when given, else
``"<unmatched>"``.  Behind a Starlette ``Mount`` the route is the one matched inside the
mounted app, without the mount's prefix.  FastAPI names the route of its own path operations
only: a plain Starlette route or mount added to a FastAPI app is ``"<unmatched>"`` (the page
of :func:`~biometrics.web.make_asgi_app` labels its own requests ``/metrics``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from ..buckets import DEFAULT_BUCKETS
from ..collector import Collector
from ..sensors import Gauge
from .metrics import LOGGER, ROUTE_KEY, UNMATCHED, HttpMetrics, http_metrics

__all__ = ["ASGIApp", "BiometricsASGIMiddleware", "Message", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Exchange:
    """One request's state and its ``send``, which notes the status and the body's end."""

    __slots__ = ("_send", "done", "gauge", "method", "middleware", "scope", "started", "status")

    def __init__(self, middleware: BiometricsASGIMiddleware, scope: Scope, send: Send) -> None:
        self.middleware = middleware
        self.scope = scope
        self._send = send
        self.status = 0
        self.done = False
        self.method = method = str(scope.get("method", "GET"))
        self.gauge: Gauge = middleware.metrics.enter(method)
        self.started = time.perf_counter()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":  # a bad status is the server's to refuse, not ours
            status = message.get("status")
            self.status = int(status) if isinstance(status, int) else 0
        elif (
            kind == "http.response.body" and not message.get("more_body", False)
        ) or kind == "http.response.pathsend":
            await self._send(message)
            self.finish(failed=False)
            return
        await self._send(message)

    def finish(self, *, failed: bool) -> None:
        if self.done:
            return
        self.done = True
        seconds = time.perf_counter() - self.started
        try:
            status = "500" if failed or not self.status else str(self.status)
            route = self.middleware.route_of(self.scope)
            self.middleware.metrics.leave(self.gauge, self.method, route, status, seconds)
        except Exception:  # never into the request
            LOGGER.exception("biometrics: failed to count an ASGI request")


class BiometricsASGIMiddleware:
    """Counts, times and tracks in flight every HTTP request to ``app`` (see the module doc).

    ``collector`` defaults to the default collector; ``buckets`` is the latency layout, one
    per collector; ``route(scope)`` gives the route template where neither a hook nor
    Starlette's routing does.  Frameworks may build their middleware more than once: every
    instance of one collector shares one set of families.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        collector: Collector | None = None,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        route: Callable[[Scope], str | None] | None = None,
    ) -> None:
        self.app = app
        self.metrics: HttpMetrics = http_metrics(collector, buckets=buckets)
        self._route = route

    def route_of(self, scope: Scope) -> str:
        """The route label of a request the app has routed."""
        found = scope.get(ROUTE_KEY)
        if found is None:
            matched = scope.get("route")
            if matched is not None:
                found = getattr(matched, "path_format", None) or getattr(matched, "path", None)
        if found is None and self._route is not None:
            found = self._route(scope)
        return str(found) if found is not None else UNMATCHED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(self, scope, send)
        try:
            await self.app(scope, receive, exchange.send)
        except BaseException:
            exchange.finish(failed=True)
            raise
        exchange.finish(failed=False)
