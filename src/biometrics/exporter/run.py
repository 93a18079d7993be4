"""``biometrics serve`` as a function: lifecycle and signals.

``serve`` first checks the spool and the state and takes the state's lock, so a start-up error
names the path at fault before anything listens; then it brings HTTP up (health answers while
the state loads), ingests until SIGTERM, SIGINT or ``stop``, and writes a final snapshot.  With
shipping on, the exporter moves each consumed segment into an outbox instead of deleting it,
and a shipper thread delivers the outbox: a slow or absent remote never holds up the /metrics
page.  SIGINT ends like Ctrl-C anywhere in Python: after the clean stop, ``KeyboardInterrupt``
is raised (the CLI turns it into exit 130).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._daemon.logfmt import log
from .._daemon.preflight import check_places
from .._daemon.safe_open import lock_state
from .._daemon.signals import signals_set
from ..errors import SpoolError
from .app import make_app
from .daemon import Exporter
from .limits import HttpLimits
from .options import ExporterOptions
from .server import Server

if TYPE_CHECKING:
    from ..ship import ShipOptions, Shipper

__all__ = ["address", "serve"]


def address(host: str, port: int) -> str:
    """``host:port`` as an operator types it: ``[::1]:9464``, ``*:9464`` for all interfaces."""
    if not host:
        return f"*:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_exporter(options: ExporterOptions, *, create: bool) -> int:
    """Check the spool and the state, and lock the state; returns the lock's fd.

    The lock is held until the exporter takes it itself (after binding), so the only error
    left after "listening" is a state that cannot be loaded.
    """
    state = options.state_path
    places = [("--archive", options.archive), ("--quarantine", options.quarantine_path)]
    check_places(options.spool, places, [state, state + ".journal", state + ".lock"],
                 create=create)  # fmt: skip
    return lock_state(state + ".lock", f"state {state}", "give this one its own --state")


def serve(
    options: ExporterOptions,
    host: str = "127.0.0.1",
    port: int = 9464,
    *,
    limits: HttpLimits | None = None,
    stop: threading.Event | None = None,
    on_listening: Callable[[int], object] | None = None,
    ship: ShipOptions | None = None,
    create: bool = False,
) -> int:
    """Run the exporter until stopped; returns the exit code (0 after a clean stop).

    Given ``ship``, a shipper delivers the exporter's outbox, ``ship.spool``.  The spool must
    exist unless ``create``.  Raises, before anything is bound: :class:`SpoolError` for the
    spool, ``--archive`` or ``--quarantine``, :class:`~biometrics.errors.StateError` if the
    state is in use or unusable, and the shipper's start-up errors (see ``Shipper.open``);
    then ``OSError`` (or ``ValueError``) if the address cannot be bound, and
    ``StateError`` if the state cannot be loaded.  After SIGINT, ``KeyboardInterrupt``.
    """
    stop = stop or threading.Event()
    if ship is not None:
        options = dataclasses.replace(options, outbox=ship.spool)
    lock = [_check_exporter(options, create=create)]

    def release() -> None:
        if lock:
            os.close(lock.pop())

    shipper = None
    try:
        if ship is not None:
            shipper = _open_shipper(ship)
        received = _run(options, host=host, port=port, limits=limits, stop=stop,
                        on_listening=on_listening, shipper=shipper, release=release)  # fmt: skip
    except BaseException:
        if shipper is not None:
            shipper.close()  # idempotent: _run may have closed it already
        raise
    finally:
        release()
    if signal.SIGINT in received:
        raise KeyboardInterrupt
    return 0


def _open_shipper(options: ShipOptions) -> Shipper:
    from ..ship import Shipper  # noqa: PLC0415 - needs the ship extra

    shipper = Shipper(options)  # checks the secret files first
    try:
        try:
            os.makedirs(options.spool, exist_ok=True)  # the outbox, beside the state
        except OSError as e:
            raise SpoolError(e.errno, f"cannot create the outbox {options.spool}: "
                             f"{e.strerror}; check the state directory or point --state "
                             "elsewhere", options.spool) from e  # fmt: skip
        shipper.open()
    except BaseException:
        shipper.close()
        raise
    return shipper


def _run(
    options: ExporterOptions,
    *,
    host: str,
    port: int,
    limits: HttpLimits | None,
    stop: threading.Event,
    on_listening: Callable[[int], object] | None,
    shipper: Shipper | None,
    release: Callable[[], None],
) -> list[int]:
    """Bind, load, ingest until stopped; returns the signals received.  Closes ``shipper``."""
    received: list[int] = []
    exporter = Exporter(options)
    server = Server(make_app(exporter), host, port, limits).start()
    shipping: threading.Thread | None = None
    try:
        with signals_set(stop) as received:
            log(logging.INFO, "listening",
                address=f"http://{address(host, server.port)}/metrics",
                spool=options.spool)  # fmt: skip
            if on_listening is not None:
                on_listening(server.port)
            release()
            exporter.open()
            try:
                if shipper is not None:
                    shipping = _start_shipper(shipper, exporter, stop)
                    shipper = None  # the thread closes it
                exporter.run(stop)
            finally:
                if shipping is not None:
                    shipping.join()
                exporter.close()
    finally:
        if shipper is not None:
            shipper.close()
        server.stop()
    log(logging.INFO, "stopped", state=options.state_path)
    return received


def _start_shipper(shipper: Shipper, exporter: Exporter, stop: threading.Event) -> threading.Thread:
    exporter.also_shown.append(shipper.metrics)

    def run() -> None:
        try:
            shipper.run(stop)
        finally:
            shipper.close()

    thread = threading.Thread(target=run, name="biometrics-ship", daemon=True)
    thread.start()
    return thread
