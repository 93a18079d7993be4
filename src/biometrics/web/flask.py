"""Flask: the WSGI middleware around ``app.wsgi_app`` plus a hook that names the route.

Imported only by Flask users (it imports Flask).  ``instrument(app)`` labels each request by
its ``url_rule`` (``/items/<int:item_id>``, blueprint prefixes included), which Flask knows
only inside the request context: a first ``before_request`` function copies it into the WSGI
environ, where the middleware reads it once the response is made.  Requests that match no
rule (404, 405 on a path with no rule) are ``"<unmatched>"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flask

from ..buckets import DEFAULT_BUCKETS
from ..collector import Collector
from .metrics import LOGGER, ROUTE_KEY
from .wsgi import BiometricsWSGIMiddleware

__all__ = ["instrument"]


def _note_route() -> None:
    try:
        rule = flask.request.url_rule
        if rule is not None:
            flask.request.environ[ROUTE_KEY] = rule.rule
    except Exception:  # never into the request
        LOGGER.exception("biometrics: cannot read the Flask route")


def instrument(
    app: flask.Flask,
    *,
    collector: Collector | None = None,
    buckets: Sequence[float] = DEFAULT_BUCKETS,
) -> flask.Flask:
    """Count, time and track every request ``app`` answers; returns ``app``.

    Call it once, after creating the app (blueprints may be registered before or after).
    """
    app.wsgi_app = BiometricsWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, collector=collector, buckets=buckets
    )
    app.before_request_funcs.setdefault(None, []).insert(0, _note_route)
    return app
