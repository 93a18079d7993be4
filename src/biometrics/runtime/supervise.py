"""Run a command and emit its ``biometrics.sys.*`` usage: the seed's ``with-system-metrics``.

``getrusage(RUSAGE_CHILDREN)`` only covers children that have been waited for, so while the
command runs its usage is read from ``/proc/<pid>`` (Linux; the command and the children *it*
has waited for), and the exact figure is taken from ``getrusage`` once it has exited.  Both are
deltas from a baseline taken before the start; the counters only ever go up.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from .. import _clock
from ..collector import Collector
from ..prometheus.segment_emitter import Options, SegmentEmitter
from ..system import SystemSensors, proc_usage, rusage_values

__all__ = ["supervise"]

_FORWARDED = (signal.SIGINT, signal.SIGTERM)


def _children() -> dict[str, int]:
    return rusage_values(resource.getrusage(resource.RUSAGE_CHILDREN))


def supervise(
    command: Sequence[str],
    *,
    poll_seconds: float = 1.0,
    options: Options | None = None,
    clock: Callable[[], int] = _clock.now_ms,
    started: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> int:
    """Run ``command``, emitting its usage every ``poll_seconds`` and once when it exits.

    Returns its exit code, or 128 + the signal that killed it.  SIGINT and SIGTERM received
    meanwhile (in the main thread) are passed on to it.  Raises ``OSError`` when it cannot be
    started.  ``started`` is called with the running process (for tests and embedding).
    """
    collector = Collector()
    sensors = SystemSensors().register(collector)
    baseline = _children()
    running: list[subprocess.Popen[bytes]] = []
    early: list[int] = []
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():

        def forward(signum: int, _frame: FrameType | None) -> None:
            if not running:
                early.append(signum)  # before the start: delivered right after it
                return
            with contextlib.suppress(OSError):
                running[0].send_signal(signum)

        previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        process = subprocess.Popen(list(command))
    except BaseException:
        _restore(previous)
        raise
    running.append(process)
    for signum in early:
        with contextlib.suppress(OSError):
            process.send_signal(signum)
    if started is not None:
        started(process)
    try:
        with SegmentEmitter(options) as emitter:
            collector.register(emitter.failures)

            def emit(usage: dict[str, int]) -> None:
                sensors.update(usage)
                with contextlib.suppress(Exception):  # a full disk must not lose the exit code
                    collector.emit(emitter, clock())

            while True:
                try:
                    code = process.wait(poll_seconds)
                    break
                except subprocess.TimeoutExpired:
                    try:
                        so_far = proc_usage(process.pid)
                    except (OSError, ValueError, KeyError, IndexError):
                        sensors.errors.click()
                        so_far = {}
                    emit(so_far)
            final = _children()
            emit({k: final[k] - baseline[k] for k in final})
    finally:
        _restore(previous)
    return code if code >= 0 else 128 - code


def _restore(previous: dict[int, object]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]
