"""``biometrics serve`` and ``biometrics ship`` as functions: lifecycle and signals.

``serve`` brings HTTP up first (health answers while the state loads), then ingests until
SIGTERM, SIGINT or ``stop``, then writes a final snapshot.  With shipping on, the exporter moves
each consumed segment into an outbox instead of deleting it, and a shipper thread delivers the
outbox: a slow or absent remote never holds up the /metrics page.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING

from ..prometheus import Emitter, Options
from ._logging import log
from ._selfmetrics import SensorSet
from .daemon import Exporter, ExporterOptions
from .http import HttpLimits, Server, make_app

if TYPE_CHECKING:
    from .ship import ShipOptions

__all__ = ["serve", "ship"]


@contextlib.contextmanager
def _signals_set(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (when we are the main thread; else the caller stops us)."""
    previous: dict[signal.Signals, object] = {}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log(logging.INFO, "stopping", signal=signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def serve(
    options: ExporterOptions,
    host: str = "127.0.0.1",
    port: int = 9464,
    *,
    limits: HttpLimits | None = None,
    stop: threading.Event | None = None,
    on_listening: Callable[[int], object] | None = None,
    ship: ShipOptions | None = None,
) -> int:
    """Run the exporter until stopped; returns the exit code (0 after a clean stop).

    Given ``ship``, a shipper delivers the exporter's outbox, ``ship.spool``.  Raises
    :class:`~biometrics.errors.StateError` if the state cannot be locked or loaded,
    and ``OSError`` if the address cannot be bound.
    """
    stop = stop or threading.Event()
    if ship is not None:
        options = dataclasses.replace(options, outbox=ship.spool)
    exporter = Exporter(options)
    server = Server(make_app(exporter), host, port, limits).start()
    shipping: threading.Thread | None = None
    try:
        with _signals_set(stop):
            log(logging.INFO, "listening", address=f"http://{host}:{server.port}/metrics",
                spool=options.spool)  # fmt: skip
            if on_listening is not None:
                on_listening(server.port)
            exporter.open()
            try:
                if ship is not None:
                    shipping = _start_shipper(ship, exporter, stop)
                exporter.run(stop)
            finally:
                if shipping is not None:
                    shipping.join()
                exporter.close()
    finally:
        server.stop()
    log(logging.INFO, "stopped", state=options.state_path)
    return 0


def _start_shipper(
    options: ShipOptions, exporter: Exporter, stop: threading.Event
) -> threading.Thread:
    from .ship import Shipper  # noqa: PLC0415 - needs the ship extra

    shipper = Shipper(options)
    shipper.open()
    exporter.also_shown.append(shipper.metrics)

    def run() -> None:
        try:
            shipper.run(stop)
        finally:
            shipper.close()

    thread = threading.Thread(target=run, name="biometrics-ship", daemon=True)
    thread.start()
    return thread


def ship(
    options: ShipOptions,
    *,
    stop: threading.Event | None = None,
    once: bool = False,
    metrics_dir: str | None = None,
    metrics_interval: float = 10.0,
) -> int:
    """Ship ``options.spool`` until stopped (or, with ``once``, until it is drained).

    Returns 0, or 1 when ``once`` ended with segments left or quarantined.  With
    ``metrics_dir``, the shipper's own metrics are written there as segments every
    ``metrics_interval`` seconds, for a ``biometrics serve`` of that directory.
    """
    from .ship import Shipper  # noqa: PLC0415 - needs the ship extra

    stop = stop or threading.Event()
    emitter = None
    if metrics_dir is not None:
        os.makedirs(metrics_dir, exist_ok=True)
        emitter = Emitter(Options(prefix=f"{metrics_dir}/biometrics-ship.",
                                  flush_interval=metrics_interval))  # fmt: skip
    shipper = Shipper(options)
    shipper.open()
    log(logging.INFO, "shipping", spool=options.spool, url=options.remote.url)
    drained = False
    try:
        with _signals_set(stop):
            last_emit = 0.0
            while not stop.is_set():
                drained = shipper.ship_pass(stop)
                if emitter is not None and (
                    once or time.monotonic() - last_emit >= metrics_interval
                ):
                    _emit(shipper.metrics, emitter)
                    last_emit = time.monotonic()
                if once:
                    break
                stop.wait(options.poll_interval)
    finally:
        shipper.close()
        if emitter is not None:
            emitter.close()
    log(logging.INFO, "stopped", samples_sent=shipper.metrics.sent.read())
    return 0 if not once or (drained and not shipper.metrics.quarantined.read()) else 1


def _emit(metrics: SensorSet, emitter: Emitter) -> None:
    try:
        metrics.emit(emitter, time.time_ns() // 1_000_000)
        emitter.flush()
    except OSError as e:
        log(logging.WARNING, "cannot write the shipper's own metrics", error=str(e))
