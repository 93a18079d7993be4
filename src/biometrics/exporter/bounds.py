"""What the exporter says when a bound refuses new series: enough to act on, never a flood.

A source over its share refuses every new series it sends, possibly thousands per segment, for
as long as it runs.  So each source's first refusal is logged at once (the operator learns the
source, the bound and a family it was sending), and after that at most one line a minute,
saying how many refusals went unlogged since the previous line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .._daemon.logfmt import log

__all__ = ["DropLog"]

_MAX_TRACKED = 10_000
"""Sources whose refusals are remembered; beyond, quiet ones are forgotten (and may log again)."""


class DropLog:
    """Rate-limited warnings about refused series, per source."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self._last: dict[str, tuple[float, int]] = {}
        """Source -> (when its last line was logged, refusals not logged since)."""

    def dropped(self, source: str, family: str, reason: str, limit: int) -> None:
        """Note one refused series; log it if it is the source's first, or a minute passed."""
        now = self.clock()
        last = self._last.get(source)
        if last is not None and now - last[0] < self.interval:
            self._last[source] = (last[0], last[1] + 1)
            return
        if last is None and len(self._last) >= _MAX_TRACKED:
            self._prune(now)
        self._last[source] = (now, 0)
        flag = "--max-series" if reason == "max_series" else "--max-series-per-source"
        if last is None:
            log(logging.WARNING, f"new series dropped: {flag} reached", source=source,
                family=family, limit=limit)  # fmt: skip
        else:
            log(logging.WARNING, f"new series still dropped: {flag} reached", source=source,
                family=family, limit=limit, suppressed=last[1])  # fmt: skip

    def forget(self, source: str) -> None:
        """The source is gone: its next refusal, if it comes back, is a first one again."""
        self._last.pop(source, None)

    def _prune(self, now: float) -> None:
        quiet = [s for s, (at, n) in self._last.items() if not n and now - at >= self.interval]
        if not quiet:  # all busy: the half that logged longest ago goes
            by_age = sorted(self._last.items(), key=lambda item: item[1][0])
            quiet = [s for s, _ in by_age[: len(by_age) // 2]]
        for source in quiet:
            del self._last[source]
