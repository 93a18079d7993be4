"""Moments: streaming mean, variance, skewness and kurtosis that merge and subtract exactly.

The four central-moment sums follow Pébay (2008) / Chan et al.: two readings of disjoint data
add to the reading of the union, and an earlier reading subtracts from a later one to give the
interval between them.  That makes moments from many processes mergeable with no loss, which the
exporter relies on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from operator import mul, sub

from ._batched import FOLD_AT, BatchedSensor, as_float
from .errors import InvalidValueError

__all__ = ["Moments", "MomentsReading"]

_NAN = math.nan


@dataclass(frozen=True, slots=True)
class MomentsReading:
    """An immutable reading: ``n`` observations and their central-moment sums.

    ``m1`` is the mean; ``m2``, ``m3``, ``m4`` are the sums of squared, cubed and fourth-power
    deviations from it (not the variance etc.; use the methods).  Statistics that are undefined
    for the data (mean of nothing, variance of one value, skewness of constant data) are NaN,
    never an exception.
    """

    n: int = 0
    m1: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    m4: float = 0.0

    def mean(self) -> float:
        """Arithmetic mean; NaN when ``n == 0``."""
        return self.m1 if self.n > 0 else _NAN

    def variance(self) -> float:
        """Sample variance ``m2 / (n - 1)``; NaN when ``n < 2``."""
        return self.m2 / (self.n - 1) if self.n >= 2 else _NAN

    def skewness(self) -> float:
        """``sqrt(n) * m3 / m2**1.5``; NaN when ``m2`` is not positive."""
        m2 = self.m2
        if not m2 > 0.0:
            return _NAN
        # sqrt(m2)**3, not m2**1.5: float ** raises OverflowError where * gives inf.
        root = math.sqrt(m2)
        return math.sqrt(self.n) * self.m3 / (root * root * root)

    def kurtosis(self) -> float:
        """``n * m4 / m2**2`` (not excess kurtosis); NaN when ``m2`` is not positive."""
        m2 = self.m2
        return self.n * self.m4 / (m2 * m2) if m2 > 0.0 else _NAN

    def __add__(self, other: object) -> MomentsReading:
        """The reading of the union of two disjoint data sets."""
        if not isinstance(other, MomentsReading):
            return NotImplemented
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        na, nb = float(self.n), float(other.n)
        n = na + nb
        delta = other.m1 - self.m1
        d2 = delta * delta
        m2 = self.m2 + other.m2 + d2 * na * nb / n
        m3 = (
            self.m3
            + other.m3
            + d2 * delta * na * nb * (na - nb) / (n * n)
            + 3.0 * delta * (na * other.m2 - nb * self.m2) / n
        )
        m4 = (
            self.m4
            + other.m4
            + d2 * d2 * na * nb * (na * na - na * nb + nb * nb) / (n * n * n)
            + 6.0 * d2 * (na * na * other.m2 + nb * nb * self.m2) / (n * n)
            + 4.0 * delta * (na * other.m3 - nb * self.m3) / n
        )
        return MomentsReading(self.n + other.n, self.m1 + delta * nb / n, m2, m3, m4)

    def __sub__(self, other: object) -> MomentsReading:
        """Remove ``other`` (a reading of a subset, e.g. an earlier reading) from ``self``."""
        if not isinstance(other, MomentsReading):
            return NotImplemented
        if other.n == 0:
            return self
        if other.n > self.n:
            raise InvalidValueError(
                f"cannot subtract a reading of {other.n} observations from one of {self.n}: "
                "subtract the earlier reading from the later one"
            )
        if other.n == self.n:
            return MomentsReading()
        nw, nb = float(self.n), float(other.n)
        na = nw - nb
        m1 = (nw * self.m1 - nb * other.m1) / na
        delta = other.m1 - m1
        d2 = delta * delta
        m2 = self.m2 - other.m2 - d2 * na * nb / nw
        m3 = (
            self.m3
            - other.m3
            - d2 * delta * na * nb * (na - nb) / (nw * nw)
            - 3.0 * delta * (na * other.m2 - nb * m2) / nw
        )
        m4 = (
            self.m4
            - other.m4
            - d2 * d2 * na * nb * (na * na - na * nb + nb * nb) / (nw * nw * nw)
            - 6.0 * d2 * (na * na * other.m2 + nb * nb * m2) / (nw * nw)
            - 4.0 * delta * (na * other.m3 - nb * m3) / nw
        )
        return MomentsReading(self.n - other.n, m1, m2, m3, m4)

    @classmethod
    def of(cls, values: list[float]) -> MomentsReading:
        """The reading of a batch, by two passes (more accurate than one-at-a-time updates)."""
        n = len(values)
        if n == 0:
            return cls()
        mean = sum(values) / n
        d = list(map(sub, values, repeat(mean, n)))
        d2 = list(map(mul, d, d))
        return cls(n, mean, sum(d2), sum(map(mul, d2, d)), sum(map(mul, d2, d2)))


class Moments(BatchedSensor):
    """Streaming moments of a series of floats.  ``add`` never raises.

    A non-number slipped past the type checker becomes NaN in the reading (visible, not fatal).
    Infinities and NaN propagate into the reading as IEEE arithmetic dictates.
    """

    __slots__ = ("_state",)

    def __init__(
        self, label: str, *, help: str | None = None, labels: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(label, help=help, labels=labels)
        self._state = MomentsReading()

    def add(self, x: float) -> None:
        """Record one observation."""
        pending = self._pending
        pending.append(x)
        if len(pending) >= FOLD_AT:
            self._fold()

    def _apply(self, batch: list[float]) -> None:
        try:
            reading = MomentsReading.of(batch)
        except TypeError:
            reading = MomentsReading.of([as_float(x) for x in batch])
        self._state = self._state + reading

    def read(self) -> MomentsReading:
        """Everything added so far, as one immutable reading."""
        self._fold()
        return self._state
