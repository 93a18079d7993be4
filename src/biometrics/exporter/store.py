"""The exporter's in-memory state: every source's readings, merged per series, rendered on demand.

Writers (the ingest loop) and readers (scrapes) share one lock, which neither holds for long:
ingest takes it per chunk of readings, a scrape per chunk of series (see :mod:`.render`).  A
scrape re-renders only the series that changed since the previous scrape, so its cost follows
the number of series, never the number of sources (see docs/ARCHITECTURE.md, "Aggregation
rules").  Two bounds keep memory in hand: ``max_series`` source-series in all, and
``max_series_per_source`` for each source, so one runaway process cannot take every other
source's room (docs/ARCHITECTURE.md, "Bounds").
"""

from __future__ import annotations

import fnmatch
import gc
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .._labels import LabelPairs
from ..prometheus import Metadata, Parse
from . import snapshot
from .bounds import DropLog
from .merge import GAUGE_MODES, Series
from .render import DEAD, FamilyTable, label_text, render_families
from .segments import Reading, readings
from .snapshot import STATE_FORMAT, STATE_VERSION, STATE_VERSIONS

__all__ = [
    "STATE_FORMAT",
    "STATE_VERSION",
    "STATE_VERSIONS",
    "MergeRules",
    "Store",
]

SOURCE_LABEL = "source"


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


def _with_source(labels: LabelPairs, source: str) -> LabelPairs:
    pairs = [("exported_source", v) if k == SOURCE_LABEL else (k, v) for k, v in labels]
    pairs.append((SOURCE_LABEL, source))
    return tuple(sorted(pairs))


class Store:
    """Merged series from every source, bounded in source-series entries (all, and per source).

    ``max_series_per_source`` None: a source may take the whole ``max_series``.
    """

    def __init__(
        self,
        rules: MergeRules | None = None,
        *,
        max_series: int = 1_000_000,
        max_series_per_source: int | None = None,
    ) -> None:
        self.rules = rules or MergeRules()
        self.max_series = max_series
        self.max_series_per_source = max_series_per_source
        self.lock = threading.RLock()
        self.render_lock = threading.RLock()
        """Held while a page is built: one at a time (a second scrape waits for its page)."""
        self._families: dict[str, FamilyTable] = {}
        self._kinds: dict[str, str] = {}
        """Family name -> kind, for segments whose samples come before their TYPE line."""
        self._claims: dict[str, str] = {}
        """Every name a family puts on the page -> the family, so two never collide."""
        self.newest_ts = 0
        """The newest reading time ingested from any source: the clock of ``forget_stale``."""
        self._sources: dict[str, int] = {}
        self._held: dict[str, dict[str, list[Series]]] = {}
        """Source -> family name -> the series it feeds: what forgetting it touches."""
        self._counts: dict[str, int] = {}
        """Source -> how many series it feeds (its share of the bound)."""
        self._tombstones: dict[str, int] = {}
        self._helps: dict[str, str] = {}
        self.entries = 0
        self.dropped_series = 0
        self.dropped: dict[str, int] = {"max_series": 0, "max_series_per_source": 0}
        """New series refused, by the bound that refused them."""
        self.drop_log = DropLog()
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
        source = sys.intern(source)  # one string per source, however many series it feeds
        applied = 0
        with self.lock:
            tomb = self._tombstones.get(source)
            seen = self._sources.get(source, 0)
            stamp = -1
            for reading in items:
                ts = reading.ts
                if tomb is not None:
                    if ts <= tomb:
                        continue
                    del self._tombstones[source]
                    tomb = None
                if ts == stamp:
                    ts = stamp  # one int object for the many series an emission updates
                else:
                    stamp = ts
                outcome = self._apply(source, reading, ts)
                if outcome is True:
                    applied += 1
                    seen = max(seen, ts)
                elif outcome and on_conflict is not None:
                    on_conflict(reading, outcome)
            self.newest_ts = max(self.newest_ts, seen)
            if source in self._held:
                self._sources[source] = seen
            else:
                self._sources.pop(source, None)
            if applied:
                self.version += 1
        return applied

    def _apply(self, source: str, reading: Reading, ts: int) -> bool | str:
        """True if applied; False if not newer or over a bound; else what holds the name."""
        kind, name, labels, value, _, _ = reading
        family = self._families.get(name)
        if family is None:
            holder = self._holder(name, kind)
            if holder is not None:
                self.conflicts += 1
                return holder
            mode = self.rules.gauge_mode_for(name) if kind == "gauge" else ""
        elif family.kind != kind:
            self.conflicts += 1
            return f"the {family.kind} {name}"
        else:
            mode = family.mode
        if self.rules.per_source or mode == "all":
            labels = _with_source(labels, source)
        text = label_text(labels)
        series = None if family is None else family.series.get(text)
        if series is None or source not in series:
            if not self._admit(source, name):
                return False
            if family is None:
                family = self._new_family(name, kind, mode)
            if series is None:
                series = family.new_series(text)
            self._held.setdefault(source, {}).setdefault(name, []).append(series)
            self._counts[source] = self._counts.get(source, 0) + 1
            self.entries += 1
        if not series.update(source, value, ts):
            return False
        series.text = None
        return True

    def _admit(self, source: str, name: str) -> bool:
        """Whether ``source`` may feed one more series; a refusal is counted and logged."""
        per_source = self.max_series_per_source
        if self.entries >= self.max_series:
            reason, limit = "max_series", self.max_series
        elif per_source is not None and self._counts.get(source, 0) >= per_source:
            reason, limit = "max_series_per_source", per_source
        else:
            return True
        self.dropped_series += 1
        self.dropped[reason] += 1
        self.drop_log.dropped(source, name, reason, limit)
        return False

    def _holder(self, name: str, kind: str) -> str | None:
        """The family already holding a name family ``name`` would render, if any."""
        for out in _page_names(name, kind):
            holder = self._claims.get(out)
            if holder is not None and holder != name:
                return f"the {self._families[holder].kind} {holder}"
        return None

    def _new_family(self, name: str, kind: str, mode: str) -> FamilyTable:
        for out in _page_names(name, kind):
            self._claims[out] = name
        self._kinds[name] = kind
        family = self._families[name] = FamilyTable(kind, mode)
        return family

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
        self._tombstones[source] = self._sources.pop(source)
        self._counts.pop(source, None)
        self.drop_log.forget(source)
        for name, held in self._held.pop(source, {}).items():
            family = self._families[name]
            self.entries -= len(held)
            for series in held:
                if series.forget(source):
                    del family.series[series.labels]
                    series.text = DEAD
                else:
                    series.text = None
            if not family.series:
                del self._families[name]
                self._release(name, family.kind)

    # -- reading --------------------------------------------------------------------------

    def source_count(self) -> int:
        """Live sources (forgotten ones are not counted)."""
        return len(self._sources)

    def source_series(self, source: str) -> int:
        """How many series ``source`` feeds: its use of ``max_series_per_source``."""
        return self._counts.get(source, 0)

    def series_count(self) -> int:
        """Merged series (what a scrape shows, counting a histogram or moments once)."""
        with self.lock:
            return sum(len(f.series) for f in self._families.values())

    def render(
        self, *, openmetrics: bool = False, timestamps: bool = False, eof: bool = True
    ) -> str:
        """The merged page, 0.0.4 or OpenMetrics, with or without the readings' timestamps.

        Built in chunks (see :mod:`.render`): ingest goes on while a large page is built.
        """
        with self.render_lock:
            with self.lock:
                families = sorted(self._families.items())
            return render_families(families, self._helps, self.lock, openmetrics=openmetrics,
                                   timestamps=timestamps, eof=eof)  # fmt: skip

    # -- durable form ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Everything needed to rebuild the store, as JSON-ready data."""
        with self.lock:
            return snapshot.dump(self._sources, self._tombstones, self._helps, self._families)

    def load_json(self, data: Any) -> None:
        """Replace the contents with what :meth:`to_json` gave (any version it wrote).

        Checked first, so a damaged snapshot raises ValueError (naming the family, series and
        field) and leaves the store as it was.
        """
        enabled = gc.isenabled()
        gc.disable()  # nothing loaded forms a cycle, and each collection would walk the parsed
        try:  # JSON (millions of objects) again: half the load time at a million series
            loaded = snapshot.load(data)
        finally:
            if enabled:
                gc.enable()
        claims: dict[str, str] = {}
        held: dict[str, dict[str, list[Series]]] = {}
        counts: dict[str, int] = {}
        for name, family in loaded.families.items():
            for out in _page_names(name, family.kind):
                if claims.setdefault(out, name) != name:
                    raise ValueError(f"family {name!r} renders {out}, as family "
                                     f"{claims[out]!r} does")  # fmt: skip
            for series in family.series.values():
                more = series.more
                for source in (series.src,) if more is None else (series.src, *more):
                    if not source:
                        continue
                    if source not in loaded.sources:
                        raise ValueError(f"family {name!r}, series {series.labels!r}: source "
                                         f"{source!r} is not in sources")  # fmt: skip
                    held.setdefault(source, {}).setdefault(name, []).append(series)
                    counts[source] = counts.get(source, 0) + 1
        with self.lock:
            self._families = loaded.families
            self._kinds = {name: f.kind for name, f in loaded.families.items()}
            self._claims = claims
            self._sources = loaded.sources
            self._tombstones = loaded.tombstones
            self._helps = loaded.helps
            self._held, self._counts = held, counts
            self.entries = sum(counts.values())
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
