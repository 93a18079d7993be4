"""SIGTERM and SIGINT for a daemon: both stop it cleanly; SIGINT then ends as Ctrl-C does.

``serve`` and ``ship`` stop the same way: a signal sets the daemon's stop event, the work in
hand is finished (a pass, a final snapshot), and only then does a SIGINT surface as
``KeyboardInterrupt`` (the CLI's exit 130), so Ctrl-C never cuts a state file short.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from .logfmt import log

__all__ = ["signals_set"]


@contextlib.contextmanager
def signals_set(stop: threading.Event) -> Iterator[list[int]]:
    """SIGTERM and SIGINT set ``stop`` (when we are the main thread; else the caller stops us).

    Yields the signals received, so that the caller can end a SIGINT as Ctrl-C does.
    """
    previous: dict[signal.Signals, object] = {}
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log(logging.INFO, "stopping", signal=signal.Signals(signum).name)
        received.append(signum)
        # Not stop.set() here: the handler runs on the main thread, which may be inside
        # stop.wait() holding the event's (non-reentrant) lock; setting it from here would
        # deadlock the daemon on SIGTERM.  A bare thread sets it once the lock is free.
        _thread.start_new_thread(stop.set, ())

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
