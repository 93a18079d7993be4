"""A gunicorn config module: ``gunicorn -c python:biometrics.gunicorn app:app``.

The master serves the merged /metrics of every worker (recycled ones included) from a thread,
and every worker emits from its fork on; the app needs nothing but its own sensors, registered
on the default collector.  Configured by environment variables, read when the master is ready:

- ``BIOMETRICS_SPOOL``: the spool (created mode 0700 if missing; keep it to keep the totals
  across restarts).  Unset: a private temporary directory, removed at exit.
- ``BIOMETRICS_LISTEN``: ``HOST:PORT`` of /metrics (``127.0.0.1:9464``), ``:PORT`` for every
  interface, or ``off`` (emit only; run ``biometrics serve`` yourself).
- ``BIOMETRICS_INTERVAL``: seconds between emissions (10).
- ``BIOMETRICS_JOB``: the segments' name (``gunicorn``).
- ``BIOMETRICS_FORGET_AFTER``: how long an exited worker's series stay its own (``1h``; its
  counts stay in the totals; more than two intervals, or live workers would be counted again),
  or ``off``.

Only gunicorn hook names are defined here (gunicorn takes every setting name a config module
defines), so your own config can take them too: ``from biometrics.gunicorn import when_ready,
post_worker_init, worker_exit, on_exit``, or call them from your own hooks of those names.
"""

from __future__ import annotations

from .integrations.gunicorn import GunicornMetrics as _GunicornMetrics

__all__ = ["on_exit", "post_worker_init", "when_ready", "worker_exit"]

_metrics = _GunicornMetrics()

when_ready = _metrics.when_ready
post_worker_init = _metrics.post_worker_init
worker_exit = _metrics.worker_exit
on_exit = _metrics.on_exit
