"""Failures of our own code running inside a host: counted by kind, logged without flooding.

An emission thread, a Celery signal receiver: each failure is counted in a labelled counter on
the page, and each kind is logged when first seen, then at most every ``LOG_EVERY_SECONDS``
with the number of failures not logged in between, so a full disk is one line every five
minutes, not one per interval.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from ..collector import Collector
from ..sensors import Counter

__all__ = ["LOG_EVERY_SECONDS", "FailureLog"]

LOG_EVERY_SECONDS = 300.0
"""A failure of one kind is logged when first seen, then at most this often (with a count)."""

Say = Callable[[str, BaseException, str], None]
"""``say(kind, error, more)``: log one failure; ``more`` is "" or " (N more since ...)"."""


class FailureLog:
    """Counts failures in ``name{label=kind}`` and says each kind at most every 5 minutes."""

    __slots__ = ("_counters", "_help", "_label", "_logged", "_name", "_say", "collector")

    def __init__(self, collector: Collector, name: str, label: str, help: str, say: Say) -> None:
        self.collector = collector
        self._name, self._label, self._help, self._say = name, label, help, say
        self._counters: dict[str, Counter] = {}
        self._logged: dict[str, tuple[float, int]] = {}

    def counter(self, kind: str) -> Counter | None:
        """The counter of ``kind``'s failures, if any was counted."""
        return self._counters.get(kind)

    def forget_logged(self) -> None:
        """Start the logging afresh (a forked child: its log is its own)."""
        self._logged = {}

    def failed(self, kind: str, error: BaseException) -> None:
        """Count one failure of ``kind``; log it unless one was logged in the last 5 minutes."""
        counter = self._counters.get(kind)
        if counter is None:
            counter = Counter(self._name, labels={self._label: kind}, help=self._help)
            self._counters[kind] = counter
            self.collector.register_missing(counter)
        counter.click()
        now = time.monotonic()
        last, suppressed = self._logged.get(kind, (-LOG_EVERY_SECONDS, 0))
        if now - last < LOG_EVERY_SECONDS:
            self._logged[kind] = (last, suppressed + 1)
            return
        self._logged[kind] = (now, 0)
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        with contextlib.suppress(Exception):
            self._say(kind, error, more)
