"""Folding lines the store has seen before without the general parser: serve's steady state.

A writer emits the same series, in the same order, every interval; only the numbers change.
The general path (:func:`biometrics.prometheus.readings` then :meth:`.store.Store.ingest`)
tokenises every line with a pattern, classifies its name, groups histogram lines into a
reading object and looks its family and series up by name and label text: ~3.5 µs a line.
Prometheus's own scrape loop avoids that by caching ``name{labels}`` -> series; this does the
same per source.  A line whose series text (everything before the value) this source has fed
before costs a split, a dict lookup, two number conversions and the series' own update, and a
histogram's lines fill a list that is checked and folded as one reading at its ``_count``.

It never decides anything the general path would decide otherwise.  It takes only what it
knows exactly: lines of the form ``<series> <value> <ms>``, series this source already feeds,
histogram groups written whole and in layout order (every ``le`` of the family's layout, then
``+Inf``, ``_sum``, ``_count``), metadata lines this source has sent before in a part that
folded without a problem, and our writers' ``# EMITTED`` markers.  At the first line it cannot
take (a new series, a value the general path would drop and report, a reading not newer than
the series' last, a torn group) it gives up and the caller folds the whole part the general
way.  What was folded before giving up is then a no-op (not newer), so nothing is counted
twice and every problem is still reported, at its line, by the general path.

Anything that takes a source out of a series (forgetting, ``# END``, re-merging a gauge family,
a family leaving, loading a snapshot) moves the store's epoch on, which empties every source's
cache: a cached series is only ever one the source is still booked as feeding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from itertools import islice
from sys import intern
from typing import Any

from ..prometheus.kinds import SampleKinds
from ..prometheus.parser import Metadata, sample_value, series_of
from ..prometheus.segments import HistogramValue
from .families import FamilyTable
from .merge import CounterSeries, GaugeSeries, HistogramSeries, Series
from .render import label_text
from .rules import with_source

__all__ = [
    "BLOCK",
    "Folded",
    "KnownLines",
    "SourceLines",
    "declares_nothing_new",
    "fold_known",
    "learn_line",
    "text_lines",
]

BLOCK = 8192
"""Lines per hold of the store lock, as the general path's readings per chunk."""

_MAX_COUNT = 2.0**53
_MAX_TS_DIGITS = 18
"""A stamp of at most 18 digits is below 2**63: no range check needed."""
_EMITTED = "# EMITTED "
_MISSES = 3
"""Folds given up in a row before a source is left to the general path for a while."""
_MAX_META = 10_000
"""Metadata lines remembered per source."""

Slot = Series | tuple[HistogramSeries, int]
"""What a known series text feeds: a counter's or gauge's series, or a histogram series and the
line's place in its group (``i`` < k: the bucket at ``layout[i]``; k: ``+Inf``; k + 1: ``_sum``;
k + 2: ``_count``)."""

Learn = Callable[[str, str], Slot | None]
"""``learn(series_text, line)``: what a line this source has not sent before feeds, or None
(:func:`learn_line`, bound to the store)."""


@dataclass(slots=True)
class SourceLines:
    """One source's known series texts and metadata lines, valid for one store epoch."""

    epoch: int
    slots: dict[str, Known] = field(default_factory=dict)
    meta: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """A metadata line -> ``(HELP or TYPE, name, text)``: a TYPE line still declares, a HELP
    line is taken only while it is the help the store shows (the last one seen wins)."""
    types_ok: dict[str, int] = field(default_factory=dict)
    """A TYPE line -> the store's kinds version when it was found to declare nothing new."""
    misses: int = 0
    """Parts in a row the fold gave up on."""
    skip: int = 0
    """Parts left to the general path before trying again (grows with ``misses``)."""

    def remember(self, lines: list[str], said: list[Metadata], first_line: int) -> None:
        """A part the general path folded without a problem: its HELP and TYPE lines are known.

        ``MERGE`` and ``END`` lines are not: each one acts (the newest declaration wins, a
        source ends), so they always take the general path.
        """
        meta = self.meta
        for item in said:
            if item.kind in ("HELP", "TYPE") and len(meta) < _MAX_META:
                meta[lines[item.line - first_line]] = (item.kind, item.name, item.text)


class KnownLines:
    """Every source's :class:`SourceLines`, within a budget of series texts over all sources."""

    __slots__ = ("_epoch", "_sources", "capacity", "slots")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        """Series texts known over all sources at most (the store's ``max_series``): past it,
        new sources take the general path only."""
        self.slots = 0
        self._sources: dict[str, SourceLines] = {}
        self._epoch = 0

    def of(self, source: str, epoch: int, tombstoned: bool) -> SourceLines | None:
        """``source``'s known lines (made if there is room), or None: the general path only."""
        if epoch != self._epoch:
            self._sources.clear()
            self.slots, self._epoch = 0, epoch
        known = self._sources.get(source)
        if known is None:
            if tombstoned or self.slots >= self.capacity:
                return None
            known = self._sources[source] = SourceLines(epoch)
        elif known.skip:
            known.skip -= 1
            return None
        self.slots -= len(known.slots)  # counted again by after()
        return known

    def after(self, known: SourceLines, folded: Folded) -> None:
        """Count what a fold learned; a fold given up on counts towards leaving it alone."""
        self.slots += len(known.slots)
        if folded.whole:
            known.misses = 0
            return
        known.misses += 1
        if known.misses >= _MISSES:  # lines that keep changing: try again after 1, 2, .. 64
            known.skip = 2 ** min(known.misses - _MISSES, 6)

    def forget(self, source: str) -> None:
        """``source`` no longer feeds (all) its series: what it knew goes."""
        known = self._sources.pop(source, None)
        if known is not None:
            self.slots -= len(known.slots)


def text_lines(data: bytes) -> list[str] | None:
    """A part's lines without their newlines, or None if it is not whole UTF-8 lines."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    if text and not text.endswith("\n"):
        return None
    lines = text.split("\n")
    lines.pop()
    return lines


def learn_line(  # noqa: PLR0911, PLR0917 - a sequence of refusals, bound once by partial
    families: Mapping[str, FamilyTable],
    per_source: bool,
    source: str,
    kinds: SampleKinds,
    key: str,
    line: str,
) -> Slot | None:
    """What a line with series text ``key`` feeds, if ``source`` feeds that series already.

    The same decisions as the general path (:func:`biometrics.prometheus.readings` and the
    store's ``_apply``), for one series text; None for anything it would create or refuse.
    Called under the store lock.
    """
    found = series_of(key)
    if found is None:
        return None
    name, labels = found
    role, family_name = kinds.classify(name)
    family = families.get(family_name if role != "gauge" else name)
    if role == "moments" or family is None or family.kind != role:
        return None
    place = 0
    if role == "histogram":
        layout = family.layout
        suffix = name[len(family_name) :]
        if suffix == "_bucket":
            rest = tuple(pair for pair in labels if pair[0] != "le")
            le = sample_value(dict(labels).get("le", ""))
            if le is None or len(rest) != len(labels) - 1:
                return None
            labels = rest
            place = len(layout) if le == math.inf else layout.index(le) if le in layout else -1
        else:
            place = len(layout) + {"_sum": 1, "_count": 2}.get(suffix, -99)
        if place < 0:
            return None
    if per_source or family.mode == "all":
        labels = with_source(labels, source)
    series = family.series.get(label_text(labels))
    if series is None or source not in series:
        return None
    if isinstance(series, HistogramSeries):
        return (series, place)
    return series


def declares_nothing_new(held: Mapping[str, str], name: str, kind: str) -> bool:
    """Whether a segment's ``# TYPE name kind`` reads every sample name as the store's kinds do.

    Known series texts were learned under the store's kinds (``held``); a declaration that
    would read some sample name otherwise (``g`` declared a counter while the store holds the
    gauge ``g``) leaves the part to the general path.  A declaration changes the reading of
    its own name only: the kind it gives must be the one the store's kinds give (a Rust
    ``http_requests counter`` is the store's ``http_requests_total``), and the name must not
    stop being read as a part of a histogram the store holds.
    """
    before = SampleKinds(held)
    if before.kind_of(name) != kind:
        return False
    after = SampleKinds(held)
    after.declare(name, kind)
    return after.classify(name) == before.classify(name)


@dataclass(frozen=True, slots=True)
class Folded:
    """What :func:`fold_known` did with a part (``whole`` False: the caller folds it again)."""

    whole: bool
    samples: int
    applied: int
    newest: int


def _learn_slot(
    key: str, line: str, learn: Learn, lines_in: Iterator[str]
) -> Known | _NewGroup | None:
    """What a line seen for the first time starts; a histogram's first bucket takes its group.

    A histogram line that is not its reading's first bucket, met outside a group, is left to
    the general path (None), as is a group whose lines are not the layout's, in order.
    """
    slot = learn(key, line)
    if slot is None or isinstance(slot, Series):
        return slot
    series, place = slot
    if place != 0:
        return None
    taken = list(islice(lines_in, len(series.layout) + 2))
    keys = []
    for i, part in enumerate(taken, 1):
        got = part.split(" ")
        if len(got) != 3 or learn(got[0], part) != (series, i):
            return None
        keys.append(intern(got[0]))
    if len(keys) != len(series.layout) + 2:
        return None
    return _NewGroup(Group(series, tuple(keys)), taken)


@dataclass(frozen=True, slots=True)
class _NewGroup:
    """A group learned from the lines that follow its first bucket (taken from the part)."""

    group: Group
    lines: list[str]


@dataclass(frozen=True, slots=True)
class Group:
    """A histogram reading's lines after its first bucket, as its source writes them."""

    series: HistogramSeries
    keys: tuple[str, ...]
    """The series texts of the lines that follow the first bucket, in order: the other
    buckets of the layout, ``+Inf``, ``_sum``, ``_count``."""


Known = Series | Group
"""What a known series text starts: a counter's or gauge's line, or a histogram's group."""


def fold_known(  # noqa: PLR0912, PLR0915 - one inlined hot loop, measured
    lines: list[str],
    source: str,
    known: SourceLines,
    learn: Learn,
    *,
    lock: AbstractContextManager[Any],
    types: MutableMapping[str, str] | None,
    helps: Mapping[str, str],
    held_kinds: Mapping[str, str],
    kinds_version: int,
    max_slots: int,
) -> Folded:
    """Fold ``lines`` (one part of a segment, newline-free, none torn) if every one is known.

    ``types`` collects the part's TYPE declarations, as the general path would, once the part
    folded whole (a part given up on is read again, and must find ``types`` as it was).  A
    TYPE line is taken only if it reads every name as the store's kinds (``held_kinds``) do
    (:func:`declares_nothing_new`, asked once per line while ``kinds_version`` stays): the known
    series texts were learned under them.  At most
    ``max_slots`` series texts are known (the series the source feeds): another spelling of a
    series text (``le="0.10"`` for ``le="0.1"``) is left to the general path, or a writer could
    grow the cache without end.  A histogram's lines are taken as one group, right after its
    first bucket (one iterator feeds both loops).
    """
    slots, meta, types_ok = known.slots, known.meta, known.types_ok
    met: dict[str, str] = {}
    inf, max_count, isfinite = math.inf, _MAX_COUNT, math.isfinite
    is_whole = float.is_integer
    counter, group_type = CounterSeries, Group
    cur_tt = ""
    t = last_t = newest = 0
    samples = applied = 0
    held: dict[HistogramSeries, HistogramValue] = {}
    lines_in = iter(lines)
    whole = False

    def fold_held() -> bool:
        """Fold the emission's histograms, held until it ended (see below)."""
        nonlocal applied, newest
        for series, reading in held.items():
            shown = (series.cumulative, series.sum, series.count)
            if not series.update(source, reading, t):
                return False
            if (series.cumulative, series.sum, series.count) != shown:
                series.text = None
            applied += 1
            newest = t
        held.clear()
        return True

    while True:
        taken = 0
        with lock:
            for line in islice(lines_in, BLOCK):
                taken += 1
                if line[:1] == "#":
                    said = meta.get(line)
                    if said is not None:
                        kind, name, text = said
                        if kind == "TYPE":
                            if types_ok.get(line) != kinds_version:  # checked once per change
                                if not declares_nothing_new(held_kinds, name, text):
                                    break
                                types_ok[line] = kinds_version
                            met[name] = text
                        elif helps.get(name) != text:
                            break
                        continue
                    if line.startswith(_EMITTED):
                        continue
                    break
                parts = line.split(" ")
                if len(parts) != 3:
                    break
                key, vt, tt = parts
                slot = slots.get(key)
                group_lines: Iterator[str] = lines_in
                if slot is None:
                    if len(slots) >= max_slots:
                        break
                    found = _learn_slot(key, line, learn, lines_in)
                    if found is None:
                        break
                    if isinstance(found, _NewGroup):  # its lines were taken to learn it
                        group_lines = iter(found.lines)
                        found = found.group
                    slot = slots[intern(key)] = found  # one string per text, for all sources
                if tt != cur_tt:
                    if len(tt) > _MAX_TS_DIGITS or not tt.isdigit() or not tt.isascii():
                        break
                    if held and not fold_held():
                        break
                    t = int(tt)
                    if t <= last_t:
                        break
                    last_t, cur_tt = t, tt
                v = float(vt) if vt.isdigit() and vt.isascii() else sample_value(vt)
                if v is None:
                    break
                samples += 1
                if isinstance(slot, group_type):
                    values = [v]
                    for expected, part in zip(slot.keys, group_lines, strict=False):
                        parts = part.split(" ")
                        if len(parts) != 3 or parts[0] != expected or parts[2] != tt:
                            break
                        vt = parts[1]
                        v = float(vt) if vt.isdigit() and vt.isascii() else sample_value(vt)
                        if v is None:
                            break
                        values.append(v)
                    series = slot.series
                    k = len(series.layout)
                    if len(values) != k + 3:
                        break
                    samples += k + 2
                    cumulative, total, n = values[: k + 1], values[k + 1], values[k + 2]
                    if not (
                        cumulative[0] >= 0.0
                        and cumulative[k] == n
                        and n <= max_count
                        and isfinite(total)
                        and all(map(is_whole, cumulative))
                        and sorted(cumulative) == cumulative
                    ):
                        break
                    # Held until the emission ends: a later group of this series at this time
                    # replaces it, as the general path merges a series' lines per time.
                    held[series] = HistogramValue(series.layout, tuple(values[:k]), total, n)
                    continue
                # The page re-renders a series only if what it shows changed (timestamps are
                # added per page): a writer's once-a-minute refresh of a quiet series is free.
                if type(slot) is counter:
                    if not 0.0 <= v < inf:
                        break
                    shown = slot.total
                    if not slot.update(source, v, t):
                        break
                    if slot.total != shown or (shown == 0.0 and str(slot.total) != str(shown)):
                        slot.text = None
                elif isinstance(slot, GaugeSeries):
                    shown = slot.value
                    if not slot.update(source, v, t):
                        break
                    if slot.value != shown or (shown == 0.0 and str(slot.value) != str(shown)):
                        slot.text = None
                else:
                    break
                applied += 1
                newest = t
            else:
                if taken:
                    continue
                whole = fold_held()
                if whole and types is not None:
                    types.update(met)
        break
    return Folded(whole, samples, applied, newest)
