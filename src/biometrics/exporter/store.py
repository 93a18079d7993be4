"""The exporter's in-memory state: every source's readings, merged per series, rendered on demand.

Writers (the ingest loop) and readers (scrapes) share one lock.  A scrape re-renders only the
series that changed since the previous scrape, so its cost follows the number of series, never
the number of sources (see docs/ARCHITECTURE.md, "Aggregation rules").
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .._labels import LabelPairs
from ..prometheus import Metadata, Parse
from ..prometheus._text import (
    Family,
    Sample,
    format_count,
    format_value,
    histogram_samples,
    moments_values,
    render_labels,
    render_page,
)
from .merge import (
    GAUGE_MODES,
    CounterSeries,
    GaugeSeries,
    HistogramSeries,
    MomentsSeries,
    Series,
)
from .segments import Reading, readings

__all__ = ["MergeRules", "Store"]

SOURCE_LABEL = "source"
STATE_FORMAT = "biometrics-exporter-state"
STATE_VERSION = 1

Key = tuple[str, LabelPairs]


@dataclass(frozen=True)
class MergeRules:
    """How series from many sources combine; see docs/ARCHITECTURE.md.

    ``gauges`` are ``(fnmatch pattern, mode)`` pairs tried in order against the metric name;
    a gauge no pattern matches uses ``gauge_mode``.  ``per_source`` turns merging off: every
    series keeps its source as a ``source`` label.
    """

    gauge_mode: str = "latest"
    gauges: tuple[tuple[str, str], ...] = ()
    per_source: bool = False

    def __post_init__(self) -> None:
        for mode in (self.gauge_mode, *(m for _, m in self.gauges)):
            if mode not in GAUGE_MODES:
                raise ValueError(
                    f"unknown gauge mode {mode!r}; use one of {', '.join(GAUGE_MODES)}"
                )

    def gauge_mode_for(self, name: str) -> str:
        """The merge mode of gauge family ``name``."""
        for pattern, mode in self.gauges:
            if fnmatch.fnmatchcase(name, pattern):
                return mode
        return self.gauge_mode


_CHUNK = 8192
_KINDS: dict[str, type[Series]] = {
    "counter": CounterSeries,
    "gauge": GaugeSeries,
    "histogram": HistogramSeries,
    "moments": MomentsSeries,
}


class _Family:
    __slots__ = ("kind", "mode", "rendered", "series")

    def __init__(self, kind: str, mode: str) -> None:
        self.kind = kind
        self.mode = mode
        self.series: dict[LabelPairs, Series] = {}
        self.rendered: dict[LabelPairs, list[tuple[str, Sample, int]]] = {}


def _new_series(kind: str, mode: str) -> Series:
    return GaugeSeries(mode) if kind == "gauge" else _KINDS[kind]()


def _with_source(labels: LabelPairs, source: str) -> LabelPairs:
    pairs = [("exported_source", v) if k == SOURCE_LABEL else (k, v) for k, v in labels]
    pairs.append((SOURCE_LABEL, source))
    return tuple(sorted(pairs))


class Store:
    """Merged series from every source, bounded by ``max_series`` source-series entries."""

    def __init__(self, rules: MergeRules | None = None, *, max_series: int = 1_000_000) -> None:
        self.rules = rules or MergeRules()
        self.max_series = max_series
        self.lock = threading.RLock()
        self._families: dict[str, _Family] = {}
        self._kinds: dict[str, str] = {}
        """Family name -> kind, for segments whose samples come before their TYPE line."""
        self._claims: dict[str, str] = {}
        """Every name a family puts on the page -> the family, so two never collide."""
        self.newest_ts = 0
        """The newest reading time ingested from any source: the clock of ``forget_stale``."""
        self._sources: dict[str, int] = {}
        self._keys: dict[str, set[Key]] = {}
        self._tombstones: dict[str, int] = {}
        self._helps: dict[str, str] = {}
        self._dirty: set[Key] = set()
        self.entries = 0
        self.dropped_series = 0
        self.conflicts = 0
        self.version = 0

    # -- ingest ---------------------------------------------------------------------------

    def set_help(self, name: str, text: str) -> None:
        """Remember a metric's help text (the last one seen wins)."""
        with self.lock:
            if self._helps.get(name) != text:
                self._helps[name] = text
                self.version += 1

    def ingest_segment(self, source: str, parsed: Parse, default_ts: int) -> None:
        """Fold a whole parsed segment in, its HELP texts included.

        Readings go in chunks, so the lock (and with it a scrape) is never held for a whole
        large segment.  A reading refused because its name holds another kind is reported on
        ``parsed`` (once per name and segment), as not the segment's fault.
        """
        reported: set[str] = set()

        def conflict(reading: Reading, held: str) -> None:
            if reading.family not in reported:
                reported.add(reading.family)
                parsed.report(
                    reading.line,
                    f"{reading.family} is a {reading.kind} here but {held} already holds that "
                    "name on the page; this segment's readings of it are dropped",
                    malformed=False,
                )

        for chunk in self._chunks(readings(parsed, default_ts, self._kinds)):
            self.ingest(source, chunk, on_conflict=conflict)

    def _chunks(self, items: Iterable[Reading | Metadata]) -> Iterator[list[Reading]]:
        chunk: list[Reading] = []
        for item in items:
            if isinstance(item, Metadata):
                if item.kind == "HELP":
                    self.set_help(item.name, item.text)
                continue
            chunk.append(item)
            if len(chunk) >= _CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def ingest(
        self,
        source: str,
        items: Iterable[Reading],
        *,
        on_conflict: Callable[[Reading, str], None] | None = None,
    ) -> int:
        """Fold ``source``'s readings in; returns how many changed the store.

        ``on_conflict(reading, holder)`` hears of each reading dropped because its name (or a
        name it would render) is already another kind's.
        """
        if not source:
            raise ValueError("source names are never empty")
        applied = 0
        with self.lock:
            tomb = self._tombstones.get(source)
            keys = self._keys.setdefault(source, set())
            seen = self._sources.get(source, 0)
            for reading in items:
                if tomb is not None:
                    if reading.ts <= tomb:
                        continue
                    del self._tombstones[source]
                    tomb = None
                outcome = self._apply(source, keys, reading)
                if outcome is True:
                    applied += 1
                    seen = max(seen, reading.ts)
                elif outcome and on_conflict is not None:
                    on_conflict(reading, outcome)
            self._sources[source] = seen
            self.newest_ts = max(self.newest_ts, seen)
            if not keys:
                del self._keys[source]
                del self._sources[source]
            if applied:
                self.version += 1
        return applied

    def _apply(self, source: str, keys: set[Key], reading: Reading) -> bool | str:
        """True if applied; False if not newer or over the bound; else what holds the name."""
        kind, name, labels, value, ts, _ = reading
        family = self._families.get(name)
        if family is None:
            holder = self._claim(name, kind)
            if holder is not None:
                self.conflicts += 1
                return holder
            mode = self.rules.gauge_mode_for(name) if kind == "gauge" else ""
            family = self._families[name] = _Family(kind, mode)
        elif family.kind != kind:
            self.conflicts += 1
            return f"the {family.kind} {name}"
        if self.rules.per_source or family.mode == "all":
            labels = _with_source(labels, source)
        key = (name, labels)
        series = family.series.get(labels)
        if key not in keys:
            if self.entries >= self.max_series:
                self.dropped_series += 1
                return False
            if series is None:
                series = family.series[labels] = _new_series(kind, family.mode)
            keys.add(key)
            self.entries += 1
        assert series is not None
        if not series.update(source, value, ts):
            return False
        self._dirty.add(key)
        return True

    def _claim(self, name: str, kind: str) -> str | None:
        """Reserve the names family ``name`` renders; None, or the family already holding one."""
        names = _page_names(name, kind)
        claims = self._claims
        for out in names:
            holder = claims.get(out)
            if holder is not None and holder != name:
                return f"the {self._families[holder].kind} {holder}"
        for out in names:
            claims[out] = name
        self._kinds[name] = kind
        return None

    def _release(self, name: str, kind: str) -> None:
        for out in _page_names(name, kind):
            if self._claims.get(out) == name:
                del self._claims[out]
        self._kinds.pop(name, None)

    def forget_stale(self, now_ms: int, forget_after_ms: int) -> list[str]:
        """Drop sources whose newest reading is older than ``now_ms - forget_after_ms``.

        The caller picks ``now_ms``: the daemon passes :attr:`newest_ts` while it drains a
        backlog (see docs/ARCHITECTURE.md, "Forgetting").
        """
        cutoff = now_ms - forget_after_ms
        with self.lock:
            stale = [s for s, seen in self._sources.items() if seen < cutoff]
            for source in stale:
                self._forget(source)
            if stale:
                self.version += 1
        return stale

    def _forget(self, source: str) -> None:
        seen = self._sources.pop(source)
        self._tombstones[source] = seen
        for key in self._keys.pop(source, set()):
            name, labels = key
            family = self._families[name]
            self.entries -= 1
            if family.series[labels].forget(source):
                del family.series[labels]
                family.rendered.pop(labels, None)
                self._dirty.discard(key)
                if not family.series:
                    del self._families[name]
                    self._release(name, family.kind)
            else:
                self._dirty.add(key)

    # -- reading --------------------------------------------------------------------------

    def source_count(self) -> int:
        """Live sources (forgotten ones are not counted)."""
        return len(self._sources)

    def series_count(self) -> int:
        """Merged series (what a scrape shows, counting a histogram or moments once)."""
        with self.lock:
            return sum(len(f.series) for f in self._families.values())

    def render(
        self, *, openmetrics: bool = False, timestamps: bool = False, eof: bool = True
    ) -> str:
        """The merged page, 0.0.4 or OpenMetrics, with or without the readings' timestamps."""
        with self.lock:
            self._refresh()
            return render_page(self._page(timestamps), openmetrics=openmetrics, eof=eof)

    def _page(self, timestamps: bool) -> list[tuple[Family, list[tuple[Sample, int | None]]]]:
        # A family name may hold several output families (moments become eight).
        grouped: dict[str, tuple[Family, list[tuple[Sample, int | None]]]] = {}
        helps = self._helps
        for name in sorted(self._families):
            family = self._families[name]
            rendered_series = family.rendered
            for labels in sorted(rendered_series):
                for out_name, sample, ts in rendered_series[labels]:
                    entry = grouped.get(out_name)
                    if entry is None:
                        kind = _out_kind(family.kind, out_name, name)
                        entry = grouped[out_name] = (
                            Family(out_name, kind, helps.get(out_name)),
                            [],
                        )
                    entry[1].append((sample, ts if timestamps else None))
        return list(grouped.values())

    def _refresh(self) -> None:
        for name, labels in self._dirty:
            family = self._families[name]
            family.rendered[labels] = _render_series(name, labels, family.series[labels])
        self._dirty.clear()

    # -- durable form ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Everything needed to rebuild the store, as JSON-ready data."""
        with self.lock:
            return {
                "format": STATE_FORMAT,
                "version": STATE_VERSION,
                "sources": self._sources,
                "tombstones": self._tombstones,
                "helps": self._helps,
                "families": {
                    name: {
                        "kind": f.kind,
                        "mode": f.mode,
                        "series": [[labels, s.to_json()] for labels, s in f.series.items()],
                    }
                    for name, f in self._families.items()
                },
            }

    def load_json(self, data: dict[str, Any]) -> None:
        """Replace the contents with what :meth:`to_json` gave (format checked by the caller)."""
        with self.lock:
            self._families.clear()
            self._kinds.clear()
            self._claims.clear()
            self._keys.clear()
            self._dirty.clear()
            self._sources = {str(k): int(v) for k, v in data["sources"].items()}
            self._tombstones = {str(k): int(v) for k, v in data["tombstones"].items()}
            self._helps = {str(k): str(v) for k, v in data["helps"].items()}
            self.entries = 0
            for name, f in data["families"].items():
                if self._claim(name, f["kind"]) is not None:
                    raise ValueError(f"family {name} collides with another on the page")
                family = self._families[name] = _Family(f["kind"], f["mode"])
                for raw_labels, state in f["series"]:
                    labels: LabelPairs = tuple((str(k), str(v)) for k, v in raw_labels)
                    series = _new_series(f["kind"], f["mode"])
                    series.load_json(state)
                    family.series[labels] = series
                    self._dirty.add((name, labels))
                    for source in series.contrib:
                        if source:
                            self._keys.setdefault(source, set()).add((name, labels))
                            self.entries += 1
            self.newest_ts = max(self._sources.values(), default=0)
            self.version += 1


_MOMENTS_NAMES = ("_count", "_mean", "_variance", "_skewness", "_kurtosis", "_m2", "_m3", "_m4")


def _page_names(name: str, kind: str) -> tuple[str, ...]:
    """Every metric and family name a family of this kind renders, in either format."""
    if kind == "histogram":
        return (name, name + "_bucket", name + "_sum", name + "_count")
    if kind == "moments":
        return (name, *(name + suffix for suffix in _MOMENTS_NAMES))
    if kind == "counter" and name.endswith("_total"):
        return (name, name[:-6])
    return (name,)


def _out_kind(kind: str, out_name: str, name: str) -> str:
    if kind != "moments":
        return kind
    return "counter" if out_name == name + "_count" else "gauge"


def _render_series(name: str, labels: LabelPairs, series: Series) -> list[tuple[str, Sample, int]]:
    ts = series.ts
    if isinstance(series, CounterSeries):
        return [(name, (name, render_labels(labels), format_count(series.total)), ts)]
    if isinstance(series, GaugeSeries):
        return [(name, (name, render_labels(labels), format_value(series.value)), ts)]
    if isinstance(series, HistogramSeries):
        samples: Sequence[Sample] = histogram_samples(
            name, labels, series.cumulative(), series.count, series.sum
        )
        return [(name, sample, ts) for sample in samples]
    assert isinstance(series, MomentsSeries)
    text = render_labels(labels)
    out = []
    for suffix, kind, value in moments_values(series.value):
        rendered = format_count(value) if kind == "counter" else format_value(value)
        out.append((name + suffix, (name + suffix, text, rendered), ts))
    return out
