"""``biometrics ship`` as a function: the lifecycle, the signals, ``--once`` and its deadline.

A shipper run by cron with ``--once`` must fail when the receiver is down, not hang: the pass
gets a deadline, and missing it raises :class:`~biometrics.errors.DeadlineError` saying what
blocked and what to fix.  The shipper's own metrics can be written as segments, so a
``biometrics serve`` of that directory shows them.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from .._clock import now_ms
from .._daemon.logfmt import log
from .._daemon.preflight import check_directory
from .._daemon.selfmetrics import SensorSet
from .._daemon.signals import signals_set
from ..errors import DeadlineError
from ..prometheus.segment_emitter import Options, SegmentEmitter
from .delivery import blocked_fix
from .options import ShipOptions
from .shipper import Shipper

__all__ = ["ship"]


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
    ``once``, raises :class:`~biometrics.errors.DeadlineError` (saying what blocked) when the
    spool could not be drained within ``deadline`` seconds: a receiver that is down must fail a
    cron job, not hang it.  With ``metrics_dir``, the shipper's own metrics are written there as
    segments every ``metrics_interval`` seconds, for a ``biometrics serve`` of that directory.
    The start-up errors are those of :meth:`Shipper.open` (nothing is created but the state);
    after SIGINT, ``KeyboardInterrupt`` is raised once the shipper has stopped cleanly.
    """
    stop = stop or threading.Event()
    until = time.monotonic() + deadline if once else None
    shipper = Shipper(options)
    emitter = None
    drained = False
    try:
        shipper.open()
        if metrics_dir is not None:
            check_directory(metrics_dir, "--self-metrics-dir", create=True)
            emitter = SegmentEmitter(Options(prefix=f"{metrics_dir}/biometrics-ship.",
                                             flush_interval=metrics_interval))  # fmt: skip
        log(logging.INFO, "shipping", spool=options.spool, url=options.remote.url)
        with signals_set(stop) as received:
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
        fix = blocked_fix(shipper.blocked)
    else:
        fix = f"check that the receiver at {opts.remote.url} is up and reachable"
    return DeadlineError(
        f"not finished within --deadline {deadline:g}s; {left} segment(s) stay in "
        f"{opts.spool} (last answer: {shipper.last_failure or 'none'}); {fix}, then run again"
    )


def _emit(metrics: SensorSet, emitter: SegmentEmitter) -> None:
    try:
        metrics.emit(emitter, now_ms())
        emitter.flush()
    except OSError as e:
        log(logging.WARNING, "cannot write the shipper's own metrics", error=str(e))
