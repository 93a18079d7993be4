"""``biometrics serve`` and ``biometrics ship`` as functions: lifecycle and signals.

``serve`` first checks the spool and the state and takes the state's lock, so a start-up error
names the path at fault before anything listens; then it brings HTTP up (health answers while
the state loads), ingests until SIGTERM, SIGINT or ``stop``, and writes a final snapshot.  With
shipping on, the exporter moves each consumed segment into an outbox instead of deleting it,
and a shipper thread delivers the outbox: a slow or absent remote never holds up the /metrics
page.  SIGINT ends like Ctrl-C anywhere in Python: after the clean stop, ``KeyboardInterrupt``
is raised (the CLI turns it into exit 130).
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

from ..errors import BiometricsError
from ..prometheus import Emitter, Options
from ._logging import log
from ._preflight import SpoolError, check_directory, check_state_files
from ._selfmetrics import SensorSet
from ._spool import lock_state
from .daemon import Exporter, ExporterOptions
from .http import HttpLimits, Server, make_app

if TYPE_CHECKING:
    from .ship import ShipOptions, Shipper

__all__ = ["DeadlineError", "SpoolError", "address", "serve", "ship"]


class DeadlineError(BiometricsError, TimeoutError):
    """``ship(once=True)`` could not deliver everything before its deadline."""


def address(host: str, port: int) -> str:
    """``host:port`` as an operator types it: ``[::1]:9464``, ``*:9464`` for all interfaces."""
    if not host:
        return f"*:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextlib.contextmanager
def _signals_set(stop: threading.Event) -> Iterator[list[int]]:
    """SIGTERM and SIGINT set ``stop`` (when we are the main thread; else the caller stops us).

    Yields the signals received, so that the caller can end a SIGINT as Ctrl-C does.
    """
    previous: dict[signal.Signals, object] = {}
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log(logging.INFO, "stopping", signal=signal.Signals(signum).name)
        received.append(signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _check_exporter(options: ExporterOptions, *, create: bool) -> int:
    """Check the spool and the state, and lock the state; returns the lock's fd.

    The lock is held until the exporter takes it itself (after binding), so the only error
    left after "listening" is a state that cannot be loaded.
    """
    check_directory(options.spool, "spool", create=create)
    for option, path in (("--archive", options.archive),
                         ("--quarantine", options.quarantine_path)):  # fmt: skip
        if path is not None and os.path.lexists(path):
            check_directory(path, option)
    state = options.state_path
    check_state_files([state, state + ".journal", state + ".lock"])
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
    from .ship import Shipper  # noqa: PLC0415 - needs the ship extra

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
        with _signals_set(stop) as received:
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


def ship(
    options: ShipOptions,
    *,
    stop: threading.Event | None = None,
    once: bool = False,
    metrics_dir: str | None = None,
    metrics_interval: float = 10.0,
    deadline: float = 300.0,
) -> int:
    """Ship ``options.spool`` until stopped (or, with ``once``, until it is drained).

    Returns 0, or 1 when ``once`` ended with segments quarantined or stopped early.  With
    ``once``, raises :class:`DeadlineError` (saying what blocked) when the spool could not be
    drained within ``deadline`` seconds: a receiver that is down must fail a cron job, not
    hang it.  With ``metrics_dir``, the shipper's own metrics are written there as segments
    every ``metrics_interval`` seconds, for a ``biometrics serve`` of that directory.  The
    start-up errors are those of ``Shipper.open`` (nothing is created but the state); after
    SIGINT, ``KeyboardInterrupt`` is raised once the shipper has stopped cleanly.
    """
    from .ship import Shipper  # noqa: PLC0415 - needs the ship extra

    stop = stop or threading.Event()
    until = time.monotonic() + deadline if once else None
    shipper = Shipper(options)
    emitter = None
    drained = False
    try:
        shipper.open()
        if metrics_dir is not None:
            check_directory(metrics_dir, "--self-metrics-dir", create=True)
            emitter = Emitter(Options(prefix=f"{metrics_dir}/biometrics-ship.",
                                      flush_interval=metrics_interval))  # fmt: skip
        log(logging.INFO, "shipping", spool=options.spool, url=options.remote.url)
        with _signals_set(stop) as received:
            last_emit = 0.0
            while not stop.is_set():
                drained = shipper.ship_pass(stop, deadline=until)
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
    if signal.SIGINT in received:
        raise KeyboardInterrupt
    if until is not None and not drained and time.monotonic() >= until:
        raise _deadline_error(shipper, deadline)
    return 0 if not once or (drained and not shipper.metrics.quarantined.read()) else 1


def _deadline_error(shipper: Shipper, deadline: float) -> DeadlineError:
    opts = shipper.options
    left = int(shipper.metrics.backlog.read())
    if shipper.blocked is not None:
        from .ship import blocked_fix  # noqa: PLC0415 - needs the ship extra

        fix = blocked_fix(shipper.blocked)
    else:
        fix = f"check that the receiver at {opts.remote.url} is up and reachable"
    return DeadlineError(
        f"not finished within --deadline {deadline:g}s; {left} segment(s) stay in "
        f"{opts.spool} (last answer: {shipper.last_failure or 'none'}); {fix}, then run again"
    )


def _emit(metrics: SensorSet, emitter: Emitter) -> None:
    try:
        metrics.emit(emitter, time.time_ns() // 1_000_000)
        emitter.flush()
    except OSError as e:
        log(logging.WARNING, "cannot write the shipper's own metrics", error=str(e))
