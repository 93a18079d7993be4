"""``biometrics top``: a spool's or an endpoint's snapshots, turned into frames, shown.

A terminal gets the live curses view; anything else (a pipe, a file, ``--once``) one frame
of plain text, made of two readings ``interval`` apart so that it has rates.  A reading that
fails (the endpoint down, the spool gone) never ends a live view: the last frame stays, with
the failure as a problem, until a reading succeeds again.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from .._clock import now_ms
from ..errors import BiometricsError
from .model import Frame, History, Snapshot, compare
from .read import SpoolReader, fetch_snapshot
from .view import render, run_curses

__all__ = ["Top", "TopOptions", "top"]


@dataclass(frozen=True, slots=True)
class TopOptions:
    """What to watch and how: seconds between readings, the rate window, the stale threshold."""

    target: str
    """A spool directory, or an ``http(s)://`` URL (``/metrics`` if it names no path)."""
    interval: float = 2.0
    window: float = 10.0
    """Rates span the oldest reading within this many seconds (at least the previous one)."""
    stale_after: float = 60.0
    include_self: bool = False
    """Show ``biometrics_*`` self-instrumentation in the lists too."""
    timeout: float = 10.0
    """Seconds a URL has to answer."""

    def __post_init__(self) -> None:
        for name in ("interval", "window", "stale_after", "timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise BiometricsError(f"{name} must be positive, not {value!r}")

    @property
    def is_url(self) -> bool:
        """Whether the target is an endpoint rather than a spool."""
        return self.target.startswith(("http://", "https://"))

    @property
    def url(self) -> str:
        """The page to GET: the target, with ``/metrics`` if it names no path."""
        scheme, _, rest = self.target.partition("://")
        host, slash, path = rest.partition("/")
        return f"{scheme}://{host}/{path}" if slash and path else f"{scheme}://{host}/metrics"


class Top:
    """Readings of one target, and the frame each makes against the history."""

    def __init__(self, options: TopOptions, *, clock: Callable[[], int] = now_ms) -> None:
        self.options = options
        self.clock = clock
        self.failed: str | None = None
        """Why the last reading failed; None if it succeeded."""
        self._history = History(int(options.window * 1000))
        self._last: Frame | None = None
        self._spool: SpoolReader | None = None
        if not options.is_url:
            if not os.path.isdir(options.target):
                raise BiometricsError(f"{options.target}: not a directory (a spool) or a URL")
            self._spool = SpoolReader(options.target)

    @property
    def title(self) -> str:
        """What the view is of."""
        return self.options.url if self.options.is_url else self.options.target

    def read(self) -> Snapshot:
        """One snapshot now; :class:`BiometricsError` if the target cannot be read."""
        now = self.clock()
        if self._spool is not None:
            return self._spool.read(now)
        return fetch_snapshot(self.options.url, now, timeout=self.options.timeout)

    def frame(self) -> Frame:
        """The frame of a fresh reading; after a failure the last one, the failure added."""
        try:
            snapshot = self.read()
        except (BiometricsError, OSError) as e:
            self.failed = str(e)
            if self._last is None:
                return compare(None, Snapshot(self.clock(), problems=(self.failed,)))
            return dataclasses.replace(self._last,
                                       problems=(*self._last.problems, self.failed))  # fmt: skip
        self.failed = None
        base = self._history.push(snapshot)
        options = self.options
        self._last = compare(base, snapshot, stale_after_ms=int(options.stale_after * 1000),
                             include_self=options.include_self)  # fmt: skip
        return self._last


def top(
    options: TopOptions, out: TextIO, *, live: bool, stop: threading.Event | None = None
) -> int:
    """Watch ``options.target``: live (curses, until q) or one plain-text frame into ``out``.

    The plain frame takes two readings ``interval`` apart; exit 1 if the last one failed, 130
    if ``stop`` was set before it.
    """
    stop = stop or threading.Event()
    watcher = Top(options)
    if live:
        return run_curses(watcher.frame, title=watcher.title, interval=options.interval,
                          stop=stop)  # fmt: skip
    watcher.frame()
    if stop.wait(options.interval):
        return 130
    frame = watcher.frame()
    out.write("\n".join(render(frame, None, None, title=watcher.title)) + "\n")
    out.flush()
    return 1 if watcher.failed is not None else 0
