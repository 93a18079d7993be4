"""SlashMetrics: readings rendered in memory as a scrape-ready ``/metrics`` page."""

from __future__ import annotations

import threading

from ._text import Family, FamilyEmitter, Sample, render_page

__all__ = ["SlashMetrics"]


class _Entry:
    __slots__ = ("family", "series")

    def __init__(self, family: Family) -> None:
        self.family = family
        self.series: dict[tuple[str, str], tuple[Sample, int]] = {}


class SlashMetrics(FamilyEmitter):
    """An emitter that keeps the latest reading of every series and renders a page on demand.

    Each family appears once with its ``# HELP``/``# TYPE``, its series together; emitting a
    series again replaces its earlier reading, so there are never duplicate series.  Timestamps
    are left out unless ``timestamps=True`` (Prometheus then stores the reading time, and never
    marks the series stale; see docs/ARCHITECTURE.md).
    """

    def __init__(self, *, timestamps: bool = False) -> None:
        self._timestamps = timestamps
        self._lock = threading.Lock()
        self._families: dict[str, _Entry] = {}

    def _take(self, families: list[Family], now_ms: int) -> None:
        with self._lock:
            for family in families:
                entry = self._families.get(family.name)
                if entry is None:
                    entry = self._families[family.name] = _Entry(family)
                elif entry.family.type != family.type:
                    continue  # two sensors sanitise to one name with different types: first wins
                for sample in family.samples:
                    entry.series[sample[0], sample[1]] = (sample, now_ms)

    def clear(self) -> None:
        """Forget every reading."""
        with self._lock:
            self._families.clear()

    def _entries(self) -> list[tuple[Family, list[tuple[Sample, int | None]]]]:
        stamp = self._timestamps
        with self._lock:
            return [
                (entry.family, [(s, t if stamp else None) for s, t in entry.series.values()])
                for entry in self._families.values()
            ]

    def render(self) -> str:
        """The page in Prometheus text format 0.0.4."""
        return render_page(self._entries())

    def render_openmetrics(self) -> str:
        """The page in OpenMetrics 1.0 (counters as ``_total``, seconds, ``# EOF``)."""
        return render_page(self._entries(), openmetrics=True)
