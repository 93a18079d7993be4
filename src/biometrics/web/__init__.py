"""HTTP servers instrumented, and one process's ``/metrics`` served without a spool.

Middleware: :class:`BiometricsWSGIMiddleware`, :class:`BiometricsASGIMiddleware` (Starlette,
FastAPI), :func:`biometrics.web.flask.instrument` and
:class:`biometrics.web.django.BiometricsMiddleware` (those two modules import their framework,
so only their users import them).  All of them count ``http_requests_total``, time
``http_request_duration_seconds`` and track ``http_requests_in_progress`` (see
:mod:`.metrics`).  Serving: :func:`start_http_server`, :func:`make_wsgi_app`,
:func:`make_asgi_app`, as ``prometheus_client`` names them.  Standard library only.
"""

from .asgi import BiometricsASGIMiddleware
from .endpoint import MetricsServer, make_asgi_app, make_wsgi_app, start_http_server
from .metrics import OTHER, ROUTE_KEY, UNMATCHED, HttpMetrics, http_metrics
from .wsgi import BiometricsWSGIMiddleware

__all__ = [
    "OTHER",
    "ROUTE_KEY",
    "UNMATCHED",
    "BiometricsASGIMiddleware",
    "BiometricsWSGIMiddleware",
    "HttpMetrics",
    "MetricsServer",
    "http_metrics",
    "make_asgi_app",
    "make_wsgi_app",
    "start_http_server",
]
