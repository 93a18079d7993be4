"""The buffer-then-fold mechanism behind the hot paths of Histogram and Moments.

``observe``/``add`` only append to a ``collections.deque``: one C call that is atomic under the
GIL and internally locked on free-threaded builds, so the hot path takes no Python lock.  The
buffer is folded into the sensor's state in batches (when it reaches ``FOLD_AT`` items, and
before every read) by C-level passes over the batch, under one lock that only folders take.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping

from .sensors import Sensor

FOLD_AT = 1024
"""Pending observations per sensor before the observing thread folds them (bounds memory)."""


def as_float(x: object) -> float:
    """A value for the fold's slow path: junk that slipped past the type checker becomes NaN."""
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


class BatchedSensor(Sensor):
    """A sensor whose hot path appends to ``_pending`` and whose state changes only in folds."""

    __slots__ = ("_fold_lock", "_pending")

    def __init__(
        self, label: str, *, help: str | None = None, labels: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(label, help=help, labels=labels)
        self._pending: deque[float] = deque()
        self._fold_lock = threading.Lock()

    def _fold(self) -> None:
        """Apply everything appended before this call; later appends wait for the next fold."""
        with self._fold_lock:
            pending = self._pending
            popleft = pending.popleft
            batch = [popleft() for _ in range(len(pending))]
            if batch:
                self._apply(batch)

    def _apply(self, batch: list[float]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
