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
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .._labels import LabelPairs
from ..prometheus import Metadata, Parse
from ..prometheus._text import MOMENTS_PAGE, counter_name
from . import snapshot
from ._logging import log
from .bounds import DropLog
from .merge import GAUGE_MODES, GaugeSeries, Series, project
from .render import DEAD, FamilyTable, label_pairs, label_text, render_families
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
    a gauge no pattern matches uses the mode its writer declared (``Gauge(merge=...)``, a
    segment's ``# MERGE`` line), else ``gauge_mode``.  ``per_source`` turns merging off: every
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

    def pattern_mode(self, name: str) -> str | None:
        """The mode of the first ``--gauge`` pattern matching ``name``; None if none matches."""
        for pattern, mode in self.gauges:
            if fnmatch.fnmatchcase(name, pattern):
                return mode
        return None

    def gauge_mode_for(self, name: str, declared: str | None = None) -> str:
        """The merge mode of gauge family ``name``: a pattern's, else ``declared``, else default.

        The operator's ``--gauge`` wins over what the writer declared: it is the later, more
        local decision (and the only one Rust writers, or older ones, can be given).
        """
        mode = self.pattern_mode(name)
        if mode is not None:
            return mode
        return self.gauge_mode if declared is None else declared


_CHUNK = 8192


@dataclass(frozen=True, slots=True)
class LayoutConflict:
    """Why a histogram reading cannot be shown exactly in its family's layout (it is dropped).

    A family's layout is the ``le`` set of the first reading the store takes for it; a reading
    with another set is projected onto it, exactly or not at all (:func:`.merge.project`).
    """

    reason: str


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
        self._declared: dict[str, tuple[str, bool]] = {}
        """Gauge family -> (mode, live_only) as its writers last declared it (``# MERGE``)."""
        self.conflicts = 0
        """Readings dropped: their name is another kind's, or (histograms) their layout does
        not fit the family's."""
        self.layout_conflicts = 0
        """Histogram readings dropped because they could not be shown in the family's layout."""
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

        def misfit(reading: Reading, why: str) -> None:
            parsed.report(
                reading.line,
                f"histogram {reading.family} reading does not fit the family's bucket layout "
                f"(the le set of the first reading taken): {why}; reading dropped",
                malformed=False,
            )

        for chunk in self._chunks(readings(parsed, default_ts, self._kinds)):
            if chunk is None:
                self.end_source(source)
            else:
                self.ingest(source, chunk, on_conflict=conflict, on_misfit=misfit)

    def _chunks(self, items: Iterable[Reading | Metadata]) -> Iterator[list[Reading] | None]:
        """Readings in chunks; None where the segment says its writer ended (``# END``)."""
        chunk: list[Reading] = []
        for item in items:
            if isinstance(item, Metadata):
                if item.kind == "HELP":
                    self.set_help(item.name, item.text)
                elif item.kind == "MERGE":
                    mode, _, live = item.text.partition(" ")
                    self.declare_gauge(item.name, mode, live=live == "live")
                elif item.kind == "END":
                    if chunk:
                        yield chunk
                        chunk = []
                    yield None
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
        on_misfit: Callable[[Reading, str], None] | None = None,
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
                outcome = (self._apply(source, reading, ts) if reading.kind != "histogram" else
                           self._apply_histogram(source, reading, ts))  # fmt: skip
                if outcome is True:
                    applied += 1
                    seen = max(seen, ts)
                elif outcome:
                    _tell(reading, outcome, on_conflict, on_misfit)
            self.newest_ts = max(self.newest_ts, seen)
            if source in self._held:
                self._sources[source] = seen
            else:
                self._sources.pop(source, None)
            if applied:
                self.version += 1
        return applied

    def _apply_histogram(
        self, source: str, reading: Reading, ts: int
    ) -> bool | str | LayoutConflict:
        """:meth:`_apply` of a histogram reading projected onto its family's layout.

        The layout is the first reading's ``le`` set; a reading that cannot be shown in it
        exactly is dropped, as a :class:`LayoutConflict`.
        """
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
    ) -> bool | str:
        """True if applied; False if not newer or over a bound; else what holds the name.

        ``layout``: a histogram family's, should the reading create it.
        """
        kind, name, labels, value, _, _ = reading
        if kind == "counter" and not name.endswith("_total"):
            name = counter_name(name)  # segments' readings are canonical already; others too
        family = self._families.get(name)
        if family is None:
            holder = self._holder(name, kind)
            if holder is not None:
                self.conflicts += 1
                return holder
            mode = self._gauge_mode(name) if kind == "gauge" else ""
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
                family = self._new_family(name, kind, mode, layout)
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

    def _new_family(
        self, name: str, kind: str, mode: str, layout: tuple[float, ...] = ()
    ) -> FamilyTable:
        for out in _page_names(name, kind):
            self._claims[out] = name
        self._kinds[name] = kind
        family = self._families[name] = FamilyTable(kind, mode, layout)
        return family

    def _release(self, name: str, kind: str) -> None:
        for out in _page_names(name, kind):
            if self._claims.get(out) == name:
                del self._claims[out]
        self._kinds.pop(name, None)

    # -- declared gauge merging -----------------------------------------------------------

    def _gauge_mode(self, name: str) -> str:
        declared = self._declared.get(name)
        return self.rules.gauge_mode_for(name, None if declared is None else declared[0])

    def declare_gauge(self, name: str, mode: str, *, live: bool = False) -> None:
        """Record how gauge family ``name``'s writers want it merged (a ``# MERGE`` line).

        The newest declaration wins (a deploy that changes it takes effect with its first
        segment); a family already held under another mode is re-merged at once, unless a
        ``--gauge`` pattern decides its mode.  ``live``: a source's values leave the family
        when that source ends (:meth:`end_source`).
        """
        if mode not in GAUGE_MODES:
            raise ValueError(f"unknown gauge mode {mode!r}; use one of {', '.join(GAUGE_MODES)}")
        if self._declared.get(name) == (mode, live):  # every segment repeats it: no lock then
            return
        with self.lock:
            if self._declared.get(name) == (mode, live):
                return
            self._declared[name] = (mode, live)
            family = self._families.get(name)
            if family is not None and family.kind == "gauge":
                self._remode(name, family, self._gauge_mode(name))

    def _remode(self, name: str, family: FamilyTable, mode: str) -> None:
        """Merge gauge family ``name`` by ``mode`` from now on, its current values included."""
        old = family.mode
        if old == mode:
            return
        self.version += 1
        if self.rules.per_source or "all" not in (old, mode):  # same series, merged otherwise
            family.mode = mode
            for series in family.series.values():
                assert isinstance(series, GaugeSeries)
                series.remode(mode)
                series.text = None
            return
        # To or from one series per source: take every contribution out, and put it back
        # under the new mode's series (the same number of source-series: bounds hold).
        parts = [(src, _without_source(label_pairs(s.labels), src) if old == "all" else
                  label_pairs(s.labels), value, t)
                 for s in family.series.values() for src, value, _, t in s.parts()]  # fmt: skip
        for source in {part[0] for part in parts}:
            held = self._held.get(source)
            taken = None if held is None else held.pop(name, None)
            if taken:
                self._counts[source] -= len(taken)
                self.entries -= len(taken)
        for series in family.series.values():
            series.text = DEAD
        del self._families[name]
        self._release(name, family.kind)
        for source, labels, value, t in parts:
            self._apply(source, Reading("gauge", name, labels, value, t), t)

    def end_source(self, source: str) -> int:
        """``source`` stopped cleanly (``# END``): its values leave the live-only gauges.

        Its counters, histograms, moments and other gauges stay, as for any source until it
        is forgotten.  Returns how many series lost its value.
        """
        with self.lock:
            held = self._held.get(source)
            if not held:
                return 0
            dropped = 0
            for name in [n for n in held if self._declared.get(n, ("", False))[1]]:
                family = self._families.get(name)
                if family is None or family.kind != "gauge":
                    continue
                series_list = held.pop(name)
                dropped += len(series_list)
                for series in series_list:
                    if series.forget(source):
                        del family.series[series.labels]
                        series.text = DEAD
                    else:
                        series.text = None
                if not family.series:
                    del self._families[name]
                    self._release(name, family.kind)
            if dropped:
                self.entries -= dropped
                self._counts[source] -= dropped
                if not held:  # it fed nothing else: no longer a source here
                    del self._held[source]
                    self._counts.pop(source, None)
                    self._tombstones[source] = self._sources.pop(source, 0)
                self.version += 1
            return dropped

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
        _canonical_counters(loaded)
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
        if loaded.dropped:
            log(logging.WARNING, "histograms of an older snapshot left out: they have no bucket "
                "layout; each live source's next reading brings its counts back",
                families=",".join(sorted(loaded.dropped)))  # fmt: skip


def _without_source(labels: LabelPairs, source: str) -> LabelPairs:
    """The labels a reading had before :func:`_with_source` gave it ``source``."""
    pairs = [(k, v) for k, v in labels if not (k == SOURCE_LABEL and v == source)]
    return tuple(sorted((SOURCE_LABEL if k == "exported_source" else k, v) for k, v in pairs))


def _tell(
    reading: Reading,
    outcome: str | LayoutConflict,
    on_conflict: Callable[[Reading, str], None] | None,
    on_misfit: Callable[[Reading, str], None] | None,
) -> None:
    """Pass a dropped reading on to whoever asked to hear of its kind of drop."""
    if type(outcome) is LayoutConflict:
        if on_misfit is not None:
            on_misfit(reading, outcome.reason)
    elif on_conflict is not None:
        assert isinstance(outcome, str)
        on_conflict(reading, outcome)


_MOMENTS_NAMES = ("_count", "_sum", *(suffix for suffix, _ in MOMENTS_PAGE if suffix))
"""What moments ``m`` put on a page beside ``m``: the summary's count and sum, the gauges."""


def _canonical_counters(loaded: snapshot.Loaded) -> None:
    """Rename the counter families of a snapshot written before counters were ``x_total``.

    Their sources go on writing ``x_total``; under the old name the kept totals would be a
    second, frozen family.  Help follows the family.
    """
    for name in [n for n, f in loaded.families.items() if f.kind == "counter"]:
        canonical = counter_name(name)
        if canonical == name:
            continue
        if canonical in loaded.families:
            raise ValueError(
                f"family {name!r} is a counter, now named {canonical!r}, which the snapshot "
                "holds too"
            )
        loaded.families[canonical] = loaded.families.pop(name)
        if name in loaded.helps:
            loaded.helps.setdefault(canonical, loaded.helps.pop(name))


def _page_names(name: str, kind: str) -> tuple[str, ...]:
    """Every metric and family name a family of this kind renders, in either format."""
    if kind == "histogram":
        return (name, name + "_bucket", name + "_sum", name + "_count")
    if kind == "moments":
        return (name, *(name + suffix for suffix in _MOMENTS_NAMES))
    if kind == "counter" and name.endswith("_total"):
        return (name, name[:-6])
    return (name,)
