"""The HTTP server metrics every web integration shares, and their per-request hot path.

Three families, named as the Prometheus naming guide and most exporters name them:

* ``http_requests_total{method,route,status}`` (counter),
* ``http_request_duration_seconds{method,route,status}`` (histogram, one fixed layout:
  :data:`~biometrics.DEFAULT_BUCKETS` unless ``buckets=`` says otherwise),
* ``http_requests_in_progress{method}`` (gauge, declared ``merge="sum", live_only=True``, so
  ``biometrics serve`` adds the workers' values up and drops a stopped worker's).

Every label is bounded: ``route`` is the route *template* the framework matched
(``/items/{item_id}``), never the raw path, and :data:`UNMATCHED` when nothing matched (a scan
of random URLs makes no new series); ``method`` is one of :data:`METHODS` or :data:`OTHER`;
``status`` is the three-digit code from 100 to 599, and :data:`OTHER` for anything else an app
(or an upstream it proxies) sends, so a broken backend cannot make a series per status.  The
in-flight gauge has no route because a middleware counts a request in before the framework
has routed it.

The hot path is one dict lookup per request for the counter and histogram children (cached by
``(method, route, status)`` as bound methods) plus a locked add and subtract on the gauge.
Nothing here raises into the request: a failure to make a child (another sensor already holds
the name) is logged once and that label set is not counted.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Sequence

from ..buckets import DEFAULT_BUCKETS, checked_layout
from ..collector import Collector, default_collector
from ..errors import InvalidValueError
from ..family import Family
from ..histogram import Histogram
from ..sensors import Counter, Gauge

__all__ = [
    "DURATION",
    "IN_PROGRESS",
    "METHODS",
    "OTHER",
    "REQUESTS",
    "ROUTE_KEY",
    "STATUSES",
    "UNMATCHED",
    "HttpMetrics",
    "http_metrics",
]

LOGGER = logging.getLogger("biometrics.web")

REQUESTS = "http.requests"
DURATION = "http.request.duration.seconds"
IN_PROGRESS = "http.requests.in_progress"

ROUTE_KEY = "biometrics.route"
"""WSGI environ / ASGI scope key where a framework hook leaves the matched route template."""
UNMATCHED = "<unmatched>"
"""The route of a request no route matched (404s, redirects to a trailing slash...)."""
METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
"""Methods that are their own label value; a client can send any token as a method."""
OTHER = "_OTHER"
"""The method label of every other method (OpenTelemetry's name for it), and the status label
of every status outside 100-599."""
STATUSES = frozenset(str(code) for code in range(100, 600))
"""Status labels kept as they are: one set lookup per request bounds the label."""

_Done = tuple[Callable[[], object], Callable[[float], None]]


def _ignore_click() -> None:
    """Stands in for a counter child that could not be made."""


def _ignore_observe(seconds: float) -> None:
    """Stands in for a histogram child that could not be made."""


class HttpMetrics:
    """The three HTTP families of one collector; use :func:`http_metrics` to get the shared one.

    One object per collector, because two families of one name in one collector would make
    their children clash (``DuplicateSensorError``) at the first request.
    """

    __slots__ = ("_done", "_gauges", "bounds", "collector", "duration", "in_progress", "requests")

    def __init__(
        self, collector: Collector | None = None, *, buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> None:
        self.collector = collector if collector is not None else default_collector()
        self.bounds = checked_layout(buckets)
        labels = ["method", "route", "status"]
        self.requests = Family(
            Counter, REQUESTS, labels, collector=self.collector,
            help="HTTP requests answered, by method, route template and status code.",
        )  # fmt: skip
        self.duration = Family(
            Histogram, DURATION, labels, collector=self.collector, buckets=self.bounds,
            help="Time from receiving an HTTP request to the end of its response body.",
        )  # fmt: skip
        self.in_progress = Family(
            Gauge, IN_PROGRESS, ["method"], collector=self.collector, merge="sum",
            live_only=True, help="HTTP requests being answered now.",
        )  # fmt: skip
        self._done: dict[tuple[str, str, str], _Done] = {}
        self._gauges: dict[str, Gauge] = {}

    def enter(self, method: str) -> Gauge:
        """Count a request in; returns what :meth:`leave` needs to count it out."""
        gauge = self._gauges.get(method)
        if gauge is None:
            gauge = self._gauge(method)
        gauge.inc(1.0)
        return gauge

    def leave(
        self, gauge: Gauge | None, method: str, route: str, status: str, seconds: float
    ) -> None:
        """Count a request out: the gauge down, the counter and histogram of its labels up."""
        if gauge is not None:
            gauge.inc(-1.0)
        if status not in STATUSES:
            status = OTHER
        done = self._done.get((method, route, status))
        if done is None:
            done = self._children(method, route, status)
        done[0]()
        done[1](seconds)

    def _gauge(self, method: str) -> Gauge:
        label = method if method in METHODS else OTHER
        try:
            gauge = self.in_progress.labels(label)
        except Exception:
            LOGGER.exception("biometrics: cannot count HTTP requests in progress")
            gauge = Gauge(IN_PROGRESS)  # in no collector: counts nothing anyone reads
        if label == method:
            self._gauges[method] = gauge
        return gauge

    def _children(self, method: str, route: str, status: str) -> _Done:
        key = (method, route, status)
        labels = (method if method in METHODS else OTHER, route, status)
        try:
            done: _Done = (
                self.requests.labels(*labels).click,
                self.duration.labels(*labels).observe,
            )
        except Exception:
            LOGGER.exception("biometrics: cannot count HTTP requests labelled %s", labels)
            done = (_ignore_click, _ignore_observe)
        if labels[0] == method:  # other methods are not cached: a client chooses them
            self._done[key] = done
        return done


_shared: weakref.WeakKeyDictionary[Collector, HttpMetrics] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def http_metrics(
    collector: Collector | None = None, *, buckets: Sequence[float] = DEFAULT_BUCKETS
) -> HttpMetrics:
    """The one :class:`HttpMetrics` of ``collector`` (the default collector when None).

    Every middleware of a process shares it, however many times a framework builds its
    middleware stack.  Asking again with another bucket layout is an ``InvalidValueError``:
    one histogram family has one layout.
    """
    target = collector if collector is not None else default_collector()
    bounds = checked_layout(buckets)
    with _shared_lock:
        found = _shared.get(target)
        if found is None:
            found = _shared[target] = HttpMetrics(target, buckets=bounds)
    if found.bounds != bounds:
        raise InvalidValueError(
            f"{DURATION!r} already has the buckets {list(found.bounds)} in this collector; "
            f"every middleware of a collector must use one layout, not {list(bounds)}"
        )
    return found
