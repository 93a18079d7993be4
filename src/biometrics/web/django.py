"""Django: a middleware that counts, times and tracks requests, and an app that starts emission.

Imported only by Django users (it imports Django).  In ``settings.py``::

    INSTALLED_APPS = [..., "biometrics.web.django.BiometricsConfig"]
    MIDDLEWARE = ["biometrics.web.django.BiometricsMiddleware", ...]   # first

The middleware labels a request by ``request.resolver_match.route`` with a leading ``/``
(``/items/<int:pk>/``, includes joined; a ``re_path`` gives its pattern), ``"<unmatched>"``
when the URLconf matched nothing.  First in ``MIDDLEWARE`` it sees the response of every
other middleware and the 500 Django makes of a view's exception; a streamed response is timed
to the end of its body (a ``FileResponse`` the server sends with ``sendfile`` is done when the
view returns).  It works under WSGI and ASGI (sync and async).

``BiometricsConfig.ready()`` starts :func:`~biometrics.runtime.emit_every` when the setting
``BIOMETRICS_SPOOL`` (or else the environment variable of that name) names a spool, with
``BIOMETRICS_JOB`` (default ``"django"``) and ``BIOMETRICS_INTERVAL`` (seconds, default 10)
likewise; without a spool it starts nothing (serve the page with
:func:`~biometrics.web.make_wsgi_app` or :func:`~biometrics.web.start_http_server` instead).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

import django.conf
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.apps import AppConfig
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse

from ..prometheus import Options
from ..runtime import Emission, emit_every
from ..sensors import Gauge
from .metrics import LOGGER, UNMATCHED, HttpMetrics, http_metrics

__all__ = ["BiometricsConfig", "BiometricsMiddleware", "start_emission"]

GetResponse = Callable[[HttpRequest], HttpResponseBase]
AsyncGetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


def _route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None or match.route is None:
        return UNMATCHED
    return "/" + str(match.route)


class _Finish:
    """Counts one request out, once, however its response ends."""

    __slots__ = ("done", "gauge", "method", "metrics", "request", "started")

    def __init__(self, metrics: HttpMetrics, request: HttpRequest) -> None:
        self.metrics = metrics
        self.request = request
        self.done = False
        self.method = method = str(request.method or "GET")
        self.gauge: Gauge = metrics.enter(method)
        self.started = time.perf_counter()

    def __call__(self, status: int) -> None:
        if self.done:
            return
        self.done = True
        seconds = time.perf_counter() - self.started
        try:
            self.metrics.leave(self.gauge, self.method, _route(self.request), str(status), seconds)
        except Exception:  # never into the request
            LOGGER.exception("biometrics: failed to count a Django request")

    def response(self, response: HttpResponseBase) -> HttpResponseBase:
        """Finish now, or at the end of a streamed body."""
        status = response.status_code
        if not isinstance(response, StreamingHttpResponse) or (
            getattr(response, "file_to_stream", None) is not None
        ):
            self(status)
            return response
        try:
            body: Any = response.streaming_content
            if response.is_async:
                response.streaming_content = self._async_body(body, status)
            else:
                response.streaming_content = self._body(body, status)
        except Exception:
            LOGGER.exception("biometrics: cannot time a Django streaming response")
            self(status)
        return response

    def _body(self, body: Iterable[object], status: int) -> Iterator[object]:
        failed = False
        try:
            yield from body
        except GeneratorExit:
            raise
        except BaseException:
            failed = True
            raise
        finally:
            self(500 if failed else status)

    async def _async_body(self, body: AsyncIterator[object], status: int) -> AsyncIterator[object]:
        failed = False
        try:
            async for part in body:
                yield part
        except GeneratorExit:
            raise
        except BaseException:
            failed = True
            raise
        finally:
            self(500 if failed else status)


class BiometricsMiddleware:
    """Django middleware (sync and async) over the default collector's HTTP families."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse | AsyncGetResponse) -> None:
        self.get_response = get_response
        self.metrics = http_metrics()
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self._acall(request)
        finish = _Finish(self.metrics, request)
        try:
            response = self.get_response(request)
        except BaseException:
            finish(500)
            raise
        assert isinstance(response, HttpResponseBase)
        return finish.response(response)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        finish = _Finish(self.metrics, request)
        try:
            response = await self.get_response(request)  # type: ignore[misc]
        except BaseException:
            finish(500)
            raise
        return finish.response(response)


_emission: Emission | None = None
_emission_lock = threading.Lock()


def _setting(name: str, default: str | None) -> str | None:
    value = getattr(django.conf.settings, name, None)  # (a lazy object: not bound at import)
    if value is None:
        value = os.environ.get(name, default)
    return None if value is None else str(value)


def start_emission() -> Emission | None:
    """Start ``emit_every`` from the settings (see the module docstring), once per process.

    None when no spool is configured or the emission could not start (logged: a metrics
    problem never stops the site).
    """
    global _emission  # noqa: PLW0603 - one emission per process, as emit_every's thread
    with _emission_lock:
        if _emission is not None:
            return _emission
        spool = _setting("BIOMETRICS_SPOOL", None)
        if not spool:
            return None
        try:
            job = _setting("BIOMETRICS_JOB", "django") or "django"
            interval = float(_setting("BIOMETRICS_INTERVAL", "10") or 10)
            _emission = emit_every(interval, options=Options.per_process(spool, job))
        except Exception:
            LOGGER.exception("biometrics: cannot start emitting to %s", spool)
            return None
        return _emission


class BiometricsConfig(AppConfig):
    """``INSTALLED_APPS`` entry ``"biometrics.web.django.BiometricsConfig"``: starts emission."""

    name = "biometrics.web.django"
    label = "biometrics"
    verbose_name = "biometrics"

    def ready(self) -> None:
        """Django is set up: start emitting (see :func:`start_emission`)."""
        start_emission()
