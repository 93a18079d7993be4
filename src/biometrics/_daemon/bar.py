"""A one-line progress bar for long runs over many files, drawn only on a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["ProgressBar"]

_WIDTH = 30


class ProgressBar:
    """``files [#######.......] 120/400``, redrawn at most every ``interval`` seconds.

    Draws nothing when ``stream`` is not a terminal (a pipe, a file, CI logs) or when there are
    fewer than ``min_total`` items; ``close()`` erases what it drew.
    """

    def __init__(
        self,
        stream: TextIO,
        what: str = "files",
        *,
        min_total: int = 20,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(isatty and isatty())
        self._stream, self._what, self._min = stream, what, min_total
        self._interval, self._clock = interval, clock
        self._last = float("-inf")
        self._drawn = 0

    def __call__(self, done: int, total: int) -> None:
        """Show ``done`` of ``total``; a callable so it can be passed as a progress callback."""
        if not self.enabled or total < self._min:
            return
        now = self._clock()
        if done < total and now - self._last < self._interval:
            return
        self._last = now
        filled = _WIDTH * done // total
        line = f"\r{self._what} [{'#' * filled}{'.' * (_WIDTH - filled)}] {done}/{total}"
        self._drawn = len(line) - 1
        self._stream.write(line)
        self._stream.flush()

    def close(self) -> None:
        """Erase the bar, so the tool's own output starts on a clean line."""
        if self._drawn:
            self._stream.write("\r" + " " * self._drawn + "\r")
            self._stream.flush()
            self._drawn = 0
