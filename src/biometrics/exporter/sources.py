"""The store's book of sources: what each feeds, its newest reading, and its tombstone once gone.

Forgetting a source, or ending it (``# END``), must touch only the series that source feeds, so
the store keeps, per source, its series by family (``held``), and their count: the source's use
of ``--max-series-per-source``.  ``entries`` counts every source-series, the unit of
``--max-series`` (see docs/ARCHITECTURE.md, "Bounds").  A forgotten source leaves a tombstone,
its newest reading time, so that its older segments, should any still arrive, are ignored
rather than bring it back.
"""

from __future__ import annotations

from .families import FamilyTable
from .merge import Series

__all__ = ["Sources"]


class Sources:
    """Per source: the newest reading time, the series it feeds by family, and their count."""

    __slots__ = ("counts", "entries", "held", "newest", "tombstones")

    def __init__(
        self, newest: dict[str, int] | None = None, tombstones: dict[str, int] | None = None
    ) -> None:
        self.newest: dict[str, int] = {} if newest is None else newest
        """Live source -> its newest reading time (the clock of forgetting)."""
        self.tombstones: dict[str, int] = {} if tombstones is None else tombstones
        """Forgotten or ended source -> its newest reading time then."""
        self.held: dict[str, dict[str, list[Series]]] = {}
        """Source -> family name -> the series it feeds: what forgetting it touches."""
        self.counts: dict[str, int] = {}
        """Source -> how many series it feeds (its share of the bound)."""
        self.entries = 0
        """Source-series held, over every source."""

    def hold_family(self, name: str, family: FamilyTable) -> None:
        """Note every source of every series of a loaded family (the pseudo-source ``""`` aside).

        :meth:`hold` inlined: a restart runs this once per source-series, millions of times.
        """
        newest, held, counts = self.newest, self.held, self.counts
        entries = 0
        for series in family.series.values():
            more = series.more
            for source in (series.src,) if more is None else (series.src, *more):
                if not source:
                    continue
                if source not in newest:
                    raise ValueError(f"family {name!r}, series {series.labels!r}: source "
                                     f"{source!r} is not in sources")  # fmt: skip
                held.setdefault(source, {}).setdefault(name, []).append(series)
                counts[source] = counts.get(source, 0) + 1
                entries += 1
        self.entries += entries

    def hold(self, source: str, name: str, series: Series) -> None:
        """``source`` feeds ``series`` of family ``name`` from now on: one more entry."""
        self.held.setdefault(source, {}).setdefault(name, []).append(series)
        self.counts[source] = self.counts.get(source, 0) + 1
        self.entries += 1

    def seen(self, source: str, newest: int) -> None:
        """After an ingest: ``source``'s newest reading, if it still feeds anything."""
        if source in self.held:
            self.newest[source] = newest
        else:
            self.newest.pop(source, None)

    def take(self, source: str, name: str) -> list[Series]:
        """Take the series ``source`` feeds in family ``name`` off its books (none: ``[]``)."""
        held = self.held.get(source)
        taken = None if held is None else held.pop(name, None)
        if taken:
            self.counts[source] -= len(taken)
            self.entries -= len(taken)
        return taken or []

    def retire(self, source: str) -> None:
        """``source`` feeds nothing any more (it ended): no longer a source, only a tombstone."""
        del self.held[source]
        self.counts.pop(source, None)
        self.tombstones[source] = self.newest.pop(source, 0)

    def stale(self, cutoff: int) -> list[str]:
        """Live sources whose newest reading is older than ``cutoff``."""
        return [s for s, seen in self.newest.items() if seen < cutoff]

    def forget(self, source: str) -> dict[str, list[Series]]:
        """Take a live source off the books, tombstoned; returns the series it fed, by family."""
        self.tombstones[source] = self.newest.pop(source)
        self.counts.pop(source, None)
        held = self.held.pop(source, {})
        self.entries -= sum(map(len, held.values()))
        return held
