"""``biometrics serve`` as a function.

HTTP comes up first (health answers while the state loads), then ingest runs until SIGTERM,
SIGINT or ``stop``, then a final snapshot is written.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from ._logging import log
from .daemon import Exporter, ExporterOptions
from .http import HttpLimits, Server, make_app

__all__ = ["serve"]


def serve(
    options: ExporterOptions,
    host: str = "127.0.0.1",
    port: int = 9464,
    *,
    limits: HttpLimits | None = None,
    stop: threading.Event | None = None,
    on_listening: Callable[[int], object] | None = None,
) -> int:
    """Run the exporter until stopped; returns the exit code (0 after a clean stop).

    Raises :class:`~biometrics.errors.StateError` if the state cannot be locked or loaded,
    and ``OSError`` if the address cannot be bound.
    """
    stop = stop or threading.Event()
    exporter = Exporter(options)
    server = Server(make_app(exporter), host, port, limits).start()
    previous: dict[signal.Signals, object] = {}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log(logging.INFO, "stopping", signal=signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        log(logging.INFO, "listening", address=f"http://{host}:{server.port}/metrics",
            spool=options.spool)  # fmt: skip
        if on_listening is not None:
            on_listening(server.port)
        exporter.open()
        try:
            exporter.run(stop)
        finally:
            exporter.close()
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
    log(logging.INFO, "stopped", state=options.state_path)
    return 0
