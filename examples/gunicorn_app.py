"""A WSGI app counted with biometrics under gunicorn: many workers, one merged /metrics.

Run it (spool dir first, then the exporter, then the app)::

    mkdir -p /tmp/spool
    biometrics serve /tmp/spool --listen 127.0.0.1:9464 &
    BIOMETRICS_SPOOL=/tmp/spool gunicorn --preload --workers 4 examples.gunicorn_app:app

Every worker writes its own segments (``app.<host>.<pid>.<epoch_ms>.prom``); ``biometrics
serve`` sums them, so ``app_requests_total`` on http://127.0.0.1:9464/metrics counts every
request whichever worker served it.  ``--preload`` is safe: emission starts in the master and
each forked worker gets its own prefix and thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from biometrics import Counter, Histogram, default_collector
from biometrics.prometheus import Options
from biometrics.runtime import emit_every

collector = default_collector()
requests = collector.register(Counter("app.requests", help="Requests served."))
latency = collector.register(Histogram("app.request.seconds", help="Time to answer."))

interval = float(os.environ.get("BIOMETRICS_INTERVAL", "10"))
# Each emission finishes its segment, so serve shows it within one poll of the emission.
emission = emit_every(
    interval, options=Options.per_process(os.environ.get("BIOMETRICS_SPOOL", "."), "app")
)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer every path with the worker's pid, counting and timing each request."""
    with latency.time():
        requests.click()
        body = f"served by {os.getpid()}\n".encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]
