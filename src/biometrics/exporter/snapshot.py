"""The store's JSON form (the state snapshot): written as version 3, read as 1, 2 or 3, checked.

Version 2 keeps each family's series in one flat list, ``[labels, n, source, a, b, t, ...]``
(``labels`` rendered, ``n`` sources, then per source what it contributes, see
:mod:`biometrics.exporter.merge`), so writing a million series allocates a few pointers per
series and loading creates no container per series.  Version 1 (read, never written) had
``[[label pairs], {source: [a, b, t]}]`` per series (gauges: ``[value, t]``).

Version 3 is version 2 plus each histogram family's ``layout`` (its finite ``le``, ascending),
and histogram values as ``[[cumulative count per le], sum, count]``.  Histograms of versions 1
and 2 had no layout, only the non-empty buckets each series had seen; no layout can be chosen
for them that the sources' new readings (every bucket of *their* layout) would fit, so their
families are left out on loading (:attr:`Loaded.dropped`): each live source's next reading
brings its cumulative counts back; what forgotten or restarted sources had counted is lost.

Whatever a snapshot holds, reading it either succeeds or raises ValueError naming the family,
the series and the field that is wrong: never another exception (a snapshot is a file on a
disk, and a daemon that cannot start must say why).
"""

from __future__ import annotations

import gc
import re
from dataclasses import dataclass, field
from typing import Any, get_args

from .._labels import LabelPairs
from ..buckets import checked_layout
from ..prometheus.exposition import counter_name
from ..prometheus.segments import ReadingKind
from .families import FamilyTable, PageNames
from .merge import GAUGE_MODES
from .render import label_text
from .series import as_stamp
from .sources import Sources

__all__ = ["STATE_FORMAT", "STATE_VERSION", "STATE_VERSIONS", "Loaded", "dump", "load"]

STATE_FORMAT = "biometrics-exporter-state"
STATE_VERSION = 3
"""The version written."""
STATE_VERSIONS = (1, 2, 3)
"""The versions read."""

_KINDS: dict[str, ReadingKind] = {kind: kind for kind in get_args(ReadingKind)}
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_PAIR = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_LABEL_TEXT = re.compile(rf"(?:\{{{_PAIR}(?:,{_PAIR})*\}})?")


@dataclass(slots=True)
class Loaded:
    """A checked snapshot, ready to become a store's contents."""

    sources: Sources
    helps: dict[str, str]
    families: dict[str, FamilyTable]
    names: PageNames
    dropped: list[str] = field(default_factory=list)
    """Histogram families of a version 1 or 2 snapshot, left out (see the module docstring)."""


def dump(
    sources: dict[str, int],
    tombstones: dict[str, int],
    helps: dict[str, str],
    families: dict[str, FamilyTable],
) -> dict[str, Any]:
    """The JSON-ready snapshot (version 3) of a store's contents."""
    out: dict[str, Any] = {}
    for name, table in families.items():
        flat: list[Any] = []
        for labels, series in table.series.items():
            flat += (labels, series.sources())
            series.dump(flat)
        out[name] = {"kind": table.kind, "mode": table.mode, "series": flat}
        if table.kind == "histogram":
            out[name]["layout"] = list(table.layout)
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "sources": dict(sources),
        "tombstones": dict(tombstones),
        "helps": dict(helps),
        "families": out,
    }


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if type(value) is not dict:
        raise ValueError(f"{key}: expected an object, got {type(value).__name__}")
    return value


def _times(data: dict[str, Any], key: str) -> dict[str, int]:
    out = {}
    for source, ts in _object(data, key).items():
        if not source:
            raise ValueError(f"{key}: a source name is empty")
        out[source] = as_stamp(ts, f"{key}: source {source!r}")
    return out


def load(data: Any) -> Loaded:
    """Check a snapshot and build its families; ValueError says what is wrong, and where.

    Counter families of a snapshot written before counters were ``x_total`` are renamed so.
    """
    enabled = gc.isenabled()
    gc.disable()  # nothing loaded forms a cycle, and each collection would walk the parsed
    try:  # JSON (millions of objects) again: half the load time at a million series
        return _load(data)
    finally:
        if enabled:
            gc.enable()


def _load(data: Any) -> Loaded:
    if type(data) is not dict:
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    version = data.get("version")
    if version not in STATE_VERSIONS or type(version) is not int:
        raise ValueError(f"version: {version!r:.40} is not one of {STATE_VERSIONS}")
    sources = _times(data, "sources")
    tombstones = _times(data, "tombstones")
    helps = _object(data, "helps")
    for name, text in helps.items():
        if type(text) is not str:
            raise ValueError(f"helps: {name!r}: expected a string, got {type(text).__name__}")
    intern: dict[Any, Any] = {s: s for s in sources}
    families = {}
    dropped = []
    for name, raw in _object(data, "families").items():
        if version < 3 and type(raw) is dict and raw.get("kind") == "histogram":
            dropped.append(name)  # no layout to hold it in: see the module docstring
            continue
        try:
            families[name] = _family(name, raw, version, intern)
        except ValueError as e:
            raise ValueError(f"family {name!r}: {e}") from None
    helps = dict(helps)
    _canonical_counters(families, helps)
    names, book = PageNames(), Sources(sources, tombstones)
    for name, family in families.items():
        names.claim(name, family.kind, check=True)
        book.hold_family(name, family)
    return Loaded(book, helps, families, names, dropped)


def _canonical_counters(families: dict[str, FamilyTable], helps: dict[str, str]) -> None:
    """Rename the counter families of a snapshot written before counters were ``x_total``.

    Their sources go on writing ``x_total``; under the old name the kept totals would be a
    second, frozen family.  Help follows the family.
    """
    for name in [n for n, f in families.items() if f.kind == "counter"]:
        canonical = counter_name(name)
        if canonical == name:
            continue
        if canonical in families:
            raise ValueError(
                f"family {name!r} is a counter, now named {canonical!r}, which the snapshot "
                "holds too"
            )
        families[canonical] = families.pop(name)
        if name in helps:
            helps.setdefault(canonical, helps.pop(name))


def _family(name: str, raw: Any, version: int, intern: dict[Any, Any]) -> FamilyTable:
    if not _METRIC_NAME.fullmatch(name):
        raise ValueError("not a metric name")
    if type(raw) is not dict:
        raise ValueError(f"expected an object, got {type(raw).__name__}")
    raw_kind, mode, series = raw.get("kind"), raw.get("mode"), raw.get("series")
    kind = _KINDS.get(raw_kind) if type(raw_kind) is str else None
    if kind is None:
        raise ValueError(f"kind: {raw_kind!r:.40} is not one of {', '.join(_KINDS)}")
    modes = GAUGE_MODES if kind == "gauge" else ("",)  # only gauges have modes
    if mode not in modes or type(mode) is not str:
        raise ValueError(f"mode: {mode!r:.40} is not one of {', '.join(map(repr, modes))}")
    if type(series) is not list:
        raise ValueError(f"series: expected a list, got {type(series).__name__}")
    table = FamilyTable(kind, mode, _layout(raw.get("layout")) if kind == "histogram" else ())
    if version >= 2:
        _flat(table, series, intern)
    else:
        _nested(table, series, intern)
    return table


def _layout(raw: Any) -> tuple[float, ...]:
    if type(raw) is not list:
        raise ValueError(f"layout: expected a list of bucket bounds, got {type(raw).__name__}")
    if not raw:
        return ()  # the family's first reading had only le="+Inf" (a bridged summary)
    if raw[-1] == float("inf"):
        raise ValueError("layout: +Inf is implicit, never listed")
    try:
        return checked_layout(raw)
    except ValueError as e:
        raise ValueError(f"layout: {e}") from None


def _add(
    table: FamilyTable, labels: str, data: list[Any], *, start: int, stop: int,
    intern: dict[Any, Any],
) -> None:  # fmt: skip
    if labels in table.series:
        raise ValueError(f"series {labels!r} appears twice")
    try:
        table.new_series(labels).load_parts(data, start, stop, intern)
    except ValueError as e:
        raise ValueError(f"series {labels!r}: {e}") from None


def _flat(table: FamilyTable, series: list[Any], intern: dict[Any, Any]) -> None:
    i, end = 0, len(series)
    while i < end:  # bounded: every turn moves i on by at least 6, or raises
        labels = series[i]
        if type(labels) is not str or not _LABEL_TEXT.fullmatch(labels):
            raise ValueError(f"series item {i}: {labels!r:.80} is not a rendered label set")
        n = series[i + 1] if i + 1 < end else None
        if type(n) is not int or not 1 <= n <= (end - i - 2) // 4:
            raise ValueError(f"series {labels!r}: source count {n!r:.40} does not fit the list")
        _add(table, labels, series, start=i + 2, stop=i + 2 + 4 * n, intern=intern)
        i += 2 + 4 * n


def _nested(table: FamilyTable, series: list[Any], intern: dict[Any, Any]) -> None:
    gauge = table.kind == "gauge"
    for i, item in enumerate(series):  # bounded by the list
        if type(item) is not list or len(item) != 2:
            raise ValueError(f"series item {i}: expected [label pairs, contributions]")
        raw_labels, contributions = item
        labels = _pairs(raw_labels, i)
        if type(contributions) is not dict or not contributions:
            raise ValueError(f"series {labels!r}: contributions: expected a non-empty object")
        parts: list[Any] = []
        for source, c in contributions.items():  # bounded by the object
            size = 2 if gauge else 3
            if type(c) is not list or len(c) != size:
                raise ValueError(f"series {labels!r}: source {source!r}: expected a list of "
                                 f"{size}, got {c!r:.60}")  # fmt: skip
            parts += (source, c[0], None, c[1]) if gauge else (source, *c)
        _add(table, labels, parts, start=0, stop=len(parts), intern=intern)


def _pairs(raw: Any, i: int) -> str:
    if type(raw) is not list:
        raise ValueError(f"series item {i}: labels: expected a list of [name, value]")
    pairs: LabelPairs = ()
    for pair in raw:  # bounded by the list
        if type(pair) is not list or len(pair) != 2 or not all(type(x) is str for x in pair):
            raise ValueError(f"series item {i}: labels: {pair!r:.60} is not [name, value]")
        if not _LABEL_NAME.fullmatch(pair[0]) or any(pair[0] == k for k, _ in pairs):
            raise ValueError(f"series item {i}: label name {pair[0]!r:.40} is invalid or repeated")
        pairs += ((pair[0], pair[1]),)
    return label_text(tuple(sorted(pairs)))
