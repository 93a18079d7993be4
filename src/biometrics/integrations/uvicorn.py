"""uvicorn (and any ASGI server): each worker process emits from its lifespan startup to shutdown.

``uvicorn --workers N`` spawns its workers (``multiprocessing`` spawn, not fork): each imports
the app afresh, and the supervisor neither imports it nor offers a hook.  So emission starts in
each worker, when the server starts the app's lifespan, under the worker's own prefix
(``<job>.<host>.<pid>.``), and stops at lifespan shutdown, after the worker's last request:
its final emission and ``# END``, so a SIGTERM or Ctrl-C to uvicorn loses no count.  A worker
uvicorn replaces is a new source; the exporter keeps the old one's counts.

The exporter is a ``biometrics serve`` beside uvicorn (a second process, or a systemd unit or
container of its own): it must outlive the workers to read their final emissions, which no
worker can promise, and there is exactly one of it whatever ``--workers`` says.

Configured by the environment, read at lifespan startup: ``BIOMETRICS_SPOOL`` (required: every
worker and ``serve`` must agree on it; created mode 0700 if missing), ``BIOMETRICS_INTERVAL``
(10 s), ``BIOMETRICS_JOB`` (``uvicorn``).  A bad setting is logged and the app served without
metrics.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from ..collector import Collector, default_collector
from ..errors import InvalidValueError
from ..prometheus import Options
from ..runtime import Emission, emit_every, ensure_spool
from ..web.asgi import ASGIApp, Message, Receive, Scope, Send
from .gunicorn import SPOOL_MODE, Settings, other_emissions

__all__ = ["ASGIApp", "EmittingApp", "emitting"]

LOGGER = logging.getLogger("biometrics")


class EmittingApp:
    """``app`` with this process's emission tied to its lifespan (see :func:`emitting`)."""

    def __init__(self, app: ASGIApp, *, job: str = "uvicorn", collector: Collector | None = None):
        self.app = app
        self.job = job
        self.collector = collector if collector is not None else default_collector()
        self.emission: Emission | None = None
        self._pid = 0
        """The process whose emission this is (0: none tried yet)."""

    def start(self) -> Emission | None:
        """Start this process's emission from the environment, once; None if it cannot."""
        if self._pid == os.getpid():
            return self.emission
        self._pid = os.getpid()
        self.emission = None
        try:
            settings = Settings.from_env(job=self.job)
            if settings.spool is None:
                raise InvalidValueError("BIOMETRICS_SPOOL is not set: name the spool every worker "
                                  "and `biometrics serve` share")  # fmt: skip
            ensure_spool(settings.spool, SPOOL_MODE)
            others = other_emissions(None, self.collector)
            if others:  # the app's own emit_every: a second would count everything twice
                LOGGER.warning("biometrics: the app runs emit_every itself; process %s emits "
                               "through it, ended at lifespan shutdown", os.getpid())  # fmt: skip
                self.emission = others[0]
                return self.emission
            options = Options.per_process(settings.spool, settings.job)
            self.emission = emit_every(settings.interval, collector=self.collector,
                                       options=options)  # fmt: skip
        except Exception as e:  # the app must never fail for its metrics
            LOGGER.error("biometrics: no metrics from process %s: %s", os.getpid(), e)
        return self.emission

    def stop(self) -> None:
        """The final emission and ``# END``; idempotent, never raises."""
        emission, self.emission = self.emission, None
        if emission is not None:
            emission.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            if self._pid != os.getpid():  # a server with lifespan off: start at first use
                self.start()
            await self.app(scope, receive, send)
            return
        self.start()
        heard = answered = False

        async def receive_inner() -> Message:
            nonlocal heard
            heard = True
            return await receive()

        async def send_inner(message: Message) -> None:
            nonlocal answered
            answered = answered or message["type"].startswith("lifespan.")
            if message["type"].startswith("lifespan.shutdown."):
                self.stop()  # before the server is told it may exit
            await send(message)

        try:
            await self.app(scope, receive_inner, send_inner)
        except Exception:
            if heard and answered:
                self.stop()  # its startup failed, or its shutdown did: the process is ending
                raise
            if heard:
                # It took the startup message and raised without a lifespan answer: an app
                # without lifespan that reads first.  uvicorn's default (``--lifespan auto``)
                # then serves it anyway, so the emission goes on (atexit ends it).
                raise
            LOGGER.debug("biometrics: the app has no lifespan; biometrics answers it")
        else:
            if heard:
                self.stop()
                return
        await _own_lifespan(receive, send, self.stop)


async def _own_lifespan(receive: Receive, send: Send, stop: Callable[[], None]) -> None:
    """The lifespan protocol for an app that does not speak it: startup, then shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


def emitting(app: ASGIApp, *, job: str = "uvicorn", collector: Collector | None = None) -> ASGIApp:
    """Wrap an ASGI ``app`` so that each process serving it emits its metrics.

    ``app = emitting(app)`` at the end of your module; ``uvicorn module:app --workers N``.  The
    emission starts at lifespan startup (or at the first request when lifespan is off) and
    stops at lifespan shutdown; ``atexit`` is the fallback.  The app's own lifespan, if any,
    runs as before.  ``collector``: what is emitted (default: the default collector).
    """
    return EmittingApp(app, job=job, collector=collector)
