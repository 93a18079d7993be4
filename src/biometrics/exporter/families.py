"""The store's families: each one's series by label text, and which family holds each page name.

A family is created by the first reading of its name and kind, and removed with its last
series.  On the page it shows more names than its own (a histogram's ``_bucket``, ``_sum`` and
``_count``; moments' summary and gauges; a counter's OpenMetrics family without ``_total``);
two families showing one name would make the page invalid, so the first family to claim a name
keeps it and a later family's readings of it are dropped (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from ..prometheus.exposition import MOMENTS_PAGE
from ..prometheus.segments import ReadingKind
from .merge import CounterSeries, GaugeSeries, HistogramSeries, MomentsSeries, Series

__all__ = ["DEAD", "FamilyTable", "PageNames", "page_names"]

DEAD: tuple[str, ...] = ()
"""The ``text`` of a series taken out of its family (its last live source was forgotten)."""

_KINDS: dict[str, type[Series]] = {
    "counter": CounterSeries,
    "histogram": HistogramSeries,
    "moments": MomentsSeries,
}


class FamilyTable:
    """One family's series by label text, plus what the page builder needs between scrapes."""

    __slots__ = ("added", "kind", "layout", "mode", "order", "series")

    def __init__(self, kind: ReadingKind, mode: str, layout: tuple[float, ...] = ()) -> None:
        self.kind = kind
        self.mode = mode
        self.layout = layout
        """A histogram family's ``le`` set (finite bounds), fixed by its first reading."""
        self.series: dict[str, Series] = {}
        self.added: list[Series] = []
        """Series created since the last page (written under the store lock)."""
        self.order: list[Series] = []
        """The rest, sorted by label text (the page builder's, under the render lock)."""

    def new_series(self, labels: str) -> Series:
        """A new, empty series under ``labels`` (the caller adds its first reading)."""
        if self.kind == "gauge":
            series: Series = GaugeSeries(self.mode, labels)
        elif self.kind == "histogram":
            series = HistogramSeries(labels, self.layout)
        else:
            series = _KINDS[self.kind](labels)
        self.series[labels] = series
        self.added.append(series)
        return series

    def remode(self, mode: str) -> None:
        """A gauge family merged by ``mode`` from now on, its values held included."""
        self.mode = mode
        for series in self.series.values():
            assert isinstance(series, GaugeSeries)
            series.remode(mode)
            series.text = None

    def drop_source(self, source: str, held: list[Series]) -> bool:
        """Take ``source`` out of ``held`` (its series here); True if the family is left empty.

        A series left without a live source leaves the family, marked :data:`DEAD` for the page
        builder; the others are re-rendered at the next scrape.
        """
        for series in held:
            if series.forget(source):
                del self.series[series.labels]
                series.text = DEAD
            else:
                series.text = None
        return not self.series


_MOMENTS_NAMES = ("_count", "_sum", *(suffix for suffix, _ in MOMENTS_PAGE if suffix))
"""What moments ``m`` put on a page beside ``m``: the summary's count and sum, the gauges."""


def page_names(name: str, kind: str) -> tuple[str, ...]:
    """Every metric and family name a family of this kind renders, in either format."""
    if kind == "histogram":
        return (name, name + "_bucket", name + "_sum", name + "_count")
    if kind == "moments":
        return (name, *(name + suffix for suffix in _MOMENTS_NAMES))
    if kind == "counter" and name.endswith("_total"):
        return (name, name[:-6])
    return (name,)


class PageNames:
    """Which family holds each name the page shows, and each family's kind."""

    __slots__ = ("_holders", "kinds", "version")

    def __init__(self) -> None:
        self._holders: dict[str, str] = {}
        """Every name a family puts on the page -> the family, so two never collide."""
        self.kinds: dict[str, ReadingKind] = {}
        """Family name -> kind, for segments whose samples come before their TYPE line."""
        self.version = 0
        """Moves on whenever ``kinds`` changes: what was decided from it may be kept till then."""

    def holder(self, name: str, kind: str) -> str | None:
        """The family already holding a name family ``name`` would render, if any (described)."""
        for out in page_names(name, kind):
            holder = self._holders.get(out)
            if holder is not None and holder != name:
                return f"the {self.kinds[holder]} {holder}"
        return None

    def claim(self, name: str, kind: ReadingKind, *, check: bool = False) -> None:
        """Give family ``name`` every name it renders; ``check``: ValueError if one is taken."""
        holders = self._holders
        for out in page_names(name, kind):
            if holders.setdefault(out, name) != name:
                if check:
                    raise ValueError(f"family {name!r} renders {out}, as family "
                                     f"{holders[out]!r} does")  # fmt: skip
                holders[out] = name
        self.kinds[name] = kind
        self.version += 1

    def release(self, name: str, kind: str) -> None:
        """Family ``name`` is gone: the names it rendered are free again."""
        for out in page_names(name, kind):
            if self._holders.get(out) == name:
                del self._holders[out]
        self.kinds.pop(name, None)
        self.version += 1
