"""The exporter's in-memory state: every source's readings, merged per series, rendered on demand.

Writers (the ingest loop) and readers (scrapes) share one lock, which neither holds for long:
ingest takes it per chunk of readings (:mod:`.ingest`), a scrape per chunk of series (see
:mod:`.render`).  A scrape re-renders only the series that changed since the previous scrape,
and a page is kept until the store changes, so its cost follows the number of series, never
the number of sources (see docs/ARCHITECTURE.md, "Aggregation rules").  Two bounds keep memory
in hand: ``max_series`` source-series in all, and ``max_series_per_source`` for each source, so
one runaway process cannot take every other source's room (docs/ARCHITECTURE.md, "Bounds").
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from .._daemon.logfmt import log
from ..prometheus import Metadata, Parse, Reading, readings
from ..prometheus.exposition import counter_name
from ..prometheus.kinds import SampleKinds
from ..prometheus.segments import project
from . import snapshot
from .bounds import DropLog
from .families import DEAD, FamilyTable, PageNames
from .ingest import LayoutConflict, NameConflict, OnConflict, SegmentDrops, chunks, tell
from .known import KnownLines, fold_known, learn_line, text_lines
from .render import PageCache, label_pairs, label_text, render_families
from .rules import Declaration, GaugeModes, MergeRules, with_source, without_source
from .sources import Sources

__all__ = ["Health", "Store"]


@dataclass(frozen=True, slots=True)
class Health:
    """The store's figures for the exporter's self-metrics, read in one state."""

    dropped_series: int
    dropped_source_limit: int
    conflicts: int
    layout_conflicts: int
    series: int
    entries: int
    sources: int


class Store:
    """Merged series from every source, bounded in source-series entries (all, and per source).

    ``max_series_per_source`` None: a source may take the whole ``max_series``.  The lock is
    the store's own: everything outside reads through methods, each answer one state.
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
        self._lock = threading.RLock()
        self._families: dict[str, FamilyTable] = {}
        self._names = PageNames()
        self._sources = Sources()
        self._helps: dict[str, str] = {}
        self._gauges = GaugeModes(self.rules)
        self._pages = PageCache()
        self.newest_ts = 0
        """The newest reading time ingested from any source: the clock of ``forget_stale``."""
        self.dropped_series = 0
        self.dropped: dict[str, int] = {"max_series": 0, "max_series_per_source": 0}
        """New series refused, by the bound that refused them."""
        self.drop_log = DropLog()
        self.conflicts = 0
        """Readings dropped: their name is another kind's, or their histogram layout misfits."""
        self.layout_conflicts = 0
        """Histogram readings dropped because they could not be shown in the family's layout."""
        self.version = 0
        """Moves on with every change a page would show."""
        self._known = KnownLines(max_series)
        """Per source, the series texts it feeds (see :mod:`.known`)."""
        self._epoch = 0
        """Moves on when series change hands wholesale (re-merging, loading): caches go."""

    @property
    def entries(self) -> int:
        """Source-series held: the unit of ``max_series``."""
        return self._sources.entries

    # -- ingest ---------------------------------------------------------------------------

    def set_help(self, name: str, text: str) -> None:
        """Remember a metric's help text (the last one seen wins)."""
        with self._lock:
            if self._helps.get(name) != text:
                self._helps[name] = text
                self.version += 1

    def ingest_bytes(
        self,
        source: str,
        data: bytes,
        default_ts: int,
        *,
        path: str,
        first_line: int = 1,
        types: dict[str, str] | None = None,
    ) -> Parse:
        """Fold in a segment's text, or a part of it that starts at line ``first_line``.

        ``types``: the TYPE lines of the segment's earlier parts, for a part read on from the
        middle (a segment read while its writer still appends); this part's are added.  Lines
        this source has sent before take the known-lines fold (:mod:`.known`), the rest the
        general path.  Returns the parse: its problems (at ``path``:line), its sample count.
        """
        source = sys.intern(source)
        held = cast("dict[str, str]", self._names.kinds)
        known = None
        # Known series texts were learned under the store's kinds: earlier parts' TYPE lines
        # that say otherwise would read some of them as other kinds (the general path decides).
        if not types or all(held.get(name) == kind for name, kind in types.items()):
            known = self._known.of(source, self._epoch, source in self._sources.tombstones)
        lines = None if known is None else text_lines(data)
        if known is not None and lines is not None:
            kinds = self._kinds(types)
            learn = partial(learn_line, self._families, self.rules.per_source, source, kinds)
            folded = fold_known(lines, source, known, learn, lock=self._lock, types=types,
                                helps=self._helps, held_kinds=held,
                                kinds_version=self._names.version,
                                max_slots=self._sources.counts.get(source, 0))  # fmt: skip
            if folded.applied:
                with self._lock:
                    self.newest_ts = max(self.newest_ts, folded.newest)
                    book = self._sources
                    book.seen(source, max(folded.newest, book.newest.get(source, 0)))
                    self.version += 1
            self._known.after(known, folded)
            if folded.whole:
                parsed = Parse([], path=path, first_line=first_line)
                parsed.samples = folded.samples
                return parsed
        parsed = Parse([data], path=path, first_line=first_line)
        said = self.ingest_segment(source, parsed, default_ts, types=types)
        if known is not None and lines is not None and not parsed.problems:
            known.remember(lines, said, first_line)
        return parsed

    def _kinds(self, types: dict[str, str] | None) -> SampleKinds:
        """What a segment part's samples are, as they would be in the whole file.

        The store's kinds, with the segment's TYPE lines (its earlier parts' too) declaring.
        """
        kinds = SampleKinds(cast("dict[str, str]", self._names.kinds))
        for name, kind in (types or {}).items():
            kinds.declare(name, kind)
        return kinds

    def ingest_segment(
        self, source: str, parsed: Parse, default_ts: int, *, types: dict[str, str] | None = None
    ) -> list[Metadata]:
        """Fold a whole parsed segment in, its HELP, MERGE and END lines included.

        A reading refused because its name holds another kind, or its histogram layout does
        not fit, is reported on ``parsed`` (see :class:`.ingest.SegmentDrops`).  ``types`` as
        for :meth:`ingest_bytes`.  Returns the metadata lines met.
        """
        drops = SegmentDrops(parsed)
        said: list[Metadata] = []
        held = cast("dict[str, str]", self._names.kinds)
        for part in chunks(readings(parsed, default_ts, held, declared=types)):
            if not isinstance(part, Metadata):
                self.ingest(source, part, on_conflict=drops.conflict, on_misfit=drops.misfit)
                continue
            said.append(part)
            if part.kind == "TYPE":
                if types is not None:
                    types[part.name] = part.text
            elif part.kind == "HELP":
                self.set_help(part.name, part.text)
            elif part.kind == "MERGE":
                mode, _, live = part.text.partition(" ")
                self.declare_gauge(part.name, mode, live=live == "live")
            elif part.kind == "END":
                self.end_source(source)
        return said

    def ingest(
        self,
        source: str,
        items: Iterable[Reading],
        *,
        on_conflict: OnConflict | None = None,
        on_misfit: OnConflict | None = None,
    ) -> int:
        """Fold ``source``'s readings in; returns how many changed the store.

        ``on_conflict(reading, holder)`` hears of each reading dropped because its name (or a
        name it would render) is already another kind's; ``on_misfit(reading, why)`` of each
        histogram reading dropped because it cannot be shown exactly in its family's layout.
        """
        if not source:
            raise ValueError("source names are never empty")
        source = sys.intern(source)  # one string per source, however many series it feeds
        applied = 0
        with self._lock:
            book = self._sources
            tomb = book.tombstones.get(source)
            seen = book.newest.get(source, 0)
            stamp = -1
            for reading in items:
                ts = reading.ts
                if tomb is not None:
                    if ts <= tomb:
                        continue
                    del book.tombstones[source]
                    tomb = None
                if ts == stamp:
                    ts = stamp  # one int object for the many series an emission updates
                else:
                    stamp = ts
                outcome = (self._apply(source, reading, ts) if reading.kind != "histogram" else
                           self._apply_histogram(source, reading, ts))  # fmt: skip
                if outcome is True:
                    applied += 1
                    seen = max(seen, ts)
                elif outcome:
                    tell(reading, outcome, on_conflict, on_misfit)
            self.newest_ts = max(self.newest_ts, seen)
            book.seen(source, seen)
            if applied:
                self.version += 1
        return applied

    def _apply_histogram(
        self, source: str, reading: Reading, ts: int
    ) -> bool | NameConflict | LayoutConflict:
        """:meth:`_apply` of a reading projected onto its family's layout (``le`` set), if exact."""
        family = self._families.get(reading.family)
        layout = reading.value.bounds  # a new family's, or another kind's (_apply says whose)
        if family is not None and family.kind == "histogram":
            layout = family.layout
        value = project(reading.value, layout)
        if isinstance(value, str):
            self.conflicts += 1
            self.layout_conflicts += 1
            return LayoutConflict(value)
        return self._apply(source, reading._replace(value=value), ts, value.bounds)

    def _apply(
        self, source: str, reading: Reading, ts: int, layout: tuple[float, ...] = ()
    ) -> bool | NameConflict:
        """True if applied; False if not newer or over a bound; else what holds the name.

        ``layout``: a histogram family's, should the reading create it.
        """
        kind, name, labels, value, _, _ = reading
        if kind == "counter" and not name.endswith("_total"):
            name = counter_name(name)  # segments' readings are canonical already; others too
        family = self._families.get(name)
        if family is None:
            holder = self._names.holder(name, kind)
            if holder is not None:
                self.conflicts += 1
                return NameConflict(holder)
            mode = self._gauges.mode(name) if kind == "gauge" else ""
        elif family.kind != kind:
            self.conflicts += 1
            return NameConflict(f"the {family.kind} {name}")
        else:
            mode = family.mode
        if self.rules.per_source or mode == "all":
            labels = with_source(labels, source)
        text = label_text(labels)
        series = None if family is None else family.series.get(text)
        if series is None or source not in series:
            if not self._admit(source, name):
                return False
            if family is None:
                self._names.claim(name, kind)
                family = self._families[name] = FamilyTable(kind, mode, layout)
            if series is None:
                series = family.new_series(text)
            self._sources.hold(source, name, series)
        if not series.update(source, value, ts):
            return False
        series.text = None
        return True

    def _admit(self, source: str, name: str) -> bool:
        """Whether ``source`` may feed one more series; a refusal is counted and logged."""
        per_source = self.max_series_per_source
        if self._sources.entries >= self.max_series:
            reason, limit = "max_series", self.max_series
        elif per_source is not None and self._sources.counts.get(source, 0) >= per_source:
            reason, limit = "max_series_per_source", per_source
        else:
            return True
        self.dropped_series += 1
        self.dropped[reason] += 1
        self.drop_log.dropped(source, name, reason, limit)
        return False

    def _remove(self, name: str) -> None:
        """Family ``name`` lost its last series: it leaves, and its page names are free."""
        family = self._families.pop(name)
        self._names.release(name, family.kind)

    # -- declared gauge merging, ending and forgetting sources ----------------------------

    def declare_gauge(self, name: str, mode: str, *, live: bool = False) -> None:
        """Record how gauge family ``name``'s writers want it merged (a ``# MERGE`` line).

        The newest declaration wins (a deploy that changes it takes effect with its first
        segment); a family already held under another mode is re-merged at once, unless a
        ``--gauge`` pattern decides its mode.  ``live``: a source's values leave the family
        when that source ends (:meth:`end_source`).
        """
        declaration = Declaration(mode, live)  # ValueError for an unknown mode
        gauges = self._gauges
        if gauges.declared(name) == declaration:  # every segment repeats it: no lock then
            return
        with self._lock:
            if gauges.declared(name) == declaration:
                return
            gauges.declare(name, declaration)
            family = self._families.get(name)
            if family is not None and family.kind == "gauge":
                self._remode(name, family, gauges.mode(name))

    def _remode(self, name: str, family: FamilyTable, mode: str) -> None:
        """Merge gauge family ``name`` by ``mode`` from now on, its current values included."""
        old = family.mode
        if old == mode:
            return
        self.version += 1
        self._epoch += 1
        if self.rules.per_source or "all" not in (old, mode):  # same series, merged otherwise
            family.remode(mode)
            return
        # To or from one series per source: take every contribution out, and put it back
        # under the new mode's series (the same number of source-series: bounds hold).
        moved = [(source, Reading("gauge", name, without_source(label_pairs(s.labels), source)
                                   if old == "all" else label_pairs(s.labels), value, t))
                 for s in family.series.values() for source, value, _, t in s.parts()]  # fmt: skip
        for source in {source for source, _ in moved}:
            self._sources.take(source, name)
        for series in family.series.values():
            series.text = DEAD
        self._remove(name)
        for source, reading in moved:
            self._apply(source, reading, reading.ts)

    def end_source(self, source: str) -> int:
        """``source`` stopped cleanly (``# END``): its values leave the live-only gauges.

        Its counters, histograms, moments and other gauges stay, as for any source until it
        is forgotten.  Returns how many series lost its value.
        """
        with self._lock:
            self._known.forget(source)
            book = self._sources
            held = book.held.get(source)
            if not held:
                return 0
            dropped = 0
            for name in [n for n in held if self._gauges.live_only(n)]:
                family = self._families.get(name)
                if family is None or family.kind != "gauge":
                    continue
                series_list = book.take(source, name)
                dropped += len(series_list)
                if family.drop_source(source, series_list):
                    self._remove(name)
            if dropped:
                if not held:  # it fed nothing else: no longer a source here
                    book.retire(source)
                self.version += 1
            return dropped

    def forget_stale(self, now_ms: int, forget_after_ms: int) -> list[str]:
        """Drop sources whose newest reading is older than ``now_ms - forget_after_ms``.

        The caller picks ``now_ms``: the daemon passes :attr:`newest_ts` while it drains a
        backlog (see docs/ARCHITECTURE.md, "Forgetting").
        """
        with self._lock:
            stale = self._sources.stale(now_ms - forget_after_ms)
            for source in stale:
                self._known.forget(source)
                self.drop_log.forget(source)
                for name, held in self._sources.forget(source).items():
                    if self._families[name].drop_source(source, held):
                        self._remove(name)
            if stale:
                self.version += 1
        return stale

    # -- reading --------------------------------------------------------------------------

    def source_count(self) -> int:
        """Live sources (forgotten ones are not counted)."""
        return len(self._sources.newest)

    def source_series(self, source: str) -> int:
        """How many series ``source`` feeds: its use of ``max_series_per_source``."""
        return self._sources.counts.get(source, 0)

    def series_count(self) -> int:
        """Merged series (what a scrape shows, counting a histogram or moments once)."""
        with self._lock:
            return sum(len(f.series) for f in self._families.values())

    def health(self) -> Health:
        """The figures of ``biometrics_exporter_*``, all from one state of the store."""
        with self._lock:
            return Health(self.dropped_series, self.dropped["max_series_per_source"],
                          self.conflicts, self.layout_conflicts, self.series_count(),
                          self._sources.entries, self.source_count())  # fmt: skip

    def render(
        self, *, openmetrics: bool = False, timestamps: bool = False, eof: bool = True
    ) -> str:
        """The merged page, 0.0.4 or OpenMetrics, with or without the readings' timestamps.

        Built in chunks (see :mod:`.render`): ingest goes on while a large page is built.
        """
        with self._pages.lock:
            with self._lock:
                families = sorted(self._families.items())
            return render_families(families, self._helps, self._lock, openmetrics=openmetrics,
                                   timestamps=timestamps, eof=eof)  # fmt: skip

    def page(self, *, openmetrics: bool = False, timestamps: bool = False) -> str:
        """:meth:`render` without ``# EOF``, built once per store version and format.

        One page at a time (a large one takes seconds, in chunks: ingest goes on meanwhile); a
        second scrape waits, then finds it built.  It holds every change up to the version read
        before it was built, maybe later ones too (then the next scrape builds afresh).
        """
        pages = self._pages
        with pages.lock:
            body = pages.get(self.version, openmetrics, timestamps)
            if body is None:
                body = self.render(openmetrics=openmetrics, timestamps=timestamps, eof=False)
                pages.put(openmetrics, timestamps, body)
            return body

    # -- durable form ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Everything needed to rebuild the store, as JSON-ready data."""
        with self._lock:
            book = self._sources
            return snapshot.dump(book.newest, book.tombstones, self._helps, self._families)

    def load_json(self, data: Any) -> None:
        """Replace the contents with what :meth:`to_json` gave (any version it wrote).

        Checked first, so a damaged snapshot raises ValueError (naming the family, series and
        field) and leaves the store as it was.
        """
        loaded = snapshot.load(data)
        with self._lock:
            self._families, self._names = loaded.families, loaded.names
            self._sources, self._helps = loaded.sources, loaded.helps
            self.newest_ts = max(loaded.sources.newest.values(), default=0)
            self.version += 1
            self._epoch += 1
        if loaded.dropped:
            log(logging.WARNING, "histograms of an older snapshot left out: they have no bucket "
                "layout; each live source's next reading brings its counts back",
                families=",".join(sorted(loaded.dropped)))  # fmt: skip
