"""SlashMetrics: readings rendered in memory as a scrape-ready ``/metrics`` page."""

from __future__ import annotations

import threading

from ..moments import Moments
from ..sensors import Sensor
from .exposition import (
    ExpositionFamily,
    FamilyEmitter,
    RenderedSample,
    moments_page_families,
    render_page,
)

__all__ = ["SlashMetrics"]


class _Entry:
    __slots__ = ("family", "series")

    def __init__(self, family: ExpositionFamily) -> None:
        self.family = family
        self.series: dict[tuple[str, str], tuple[RenderedSample, int]] = {}


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
        self._owners: dict[tuple[str, str, str], Sensor] = {}
        """(family, sample name, labels) -> the sensor that wrote it last, so a removed
        sensor's series leave the page."""

    def emit_families(self, families: list[ExpositionFamily], now_ms: int) -> None:
        """Keep each series' reading, replacing its earlier one; a name's first type wins."""
        with self._lock:
            for family in families:
                entry = self._families.get(family.name)
                if entry is None:
                    entry = self._families[family.name] = _Entry(family)
                elif entry.family.type != family.type:
                    continue  # two sensors sanitise to one name with different types: first wins
                for sample in family.samples:
                    entry.series[sample[0], sample[1]] = (sample, now_ms)

    def emit_moments(self, moments: Moments, now_ms: int) -> None:
        """Take a moments reading as a page shows it: a summary plus gauges, no merge state."""
        self._emit_sensor_families(moments, moments_page_families(moments), now_ms)

    def _emit_sensor_families(
        self, sensor: Sensor, families: list[ExpositionFamily], now_ms: int
    ) -> None:
        self.emit_families(families, now_ms)
        with self._lock:
            owners = self._owners
            for family in families:
                entry = self._families.get(family.name)
                if entry is None or entry.family.type != family.type:
                    continue  # not taken (another type holds the name): not this sensor's
                for sample in family.samples:
                    owners[family.name, sample[0], sample[1]] = sensor

    def _drop_removed(self) -> None:
        """Forget the series of sensors removed since (``Family.remove``): off the next page."""
        gone = [key for key, sensor in self._owners.items() if sensor.removed]
        for key in gone:
            del self._owners[key]
            name, series = key[0], key[1:]
            entry = self._families.get(name)
            if entry is not None:
                entry.series.pop(series, None)
                if not entry.series:
                    del self._families[name]

    def clear(self) -> None:
        """Forget every reading."""
        with self._lock:
            self._families.clear()
            self._owners.clear()

    def _entries(self) -> list[tuple[ExpositionFamily, list[tuple[RenderedSample, int | None]]]]:
        stamp = self._timestamps
        with self._lock:
            self._drop_removed()
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
