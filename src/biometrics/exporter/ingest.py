"""A parsed segment on its way into the store: readings in chunks, and what was refused, and why.

The store's lock is taken per chunk of readings, never for a whole segment, so a scrape waits
for one chunk at most however large the segment.  A reading the store refuses for its name (held
by another kind) or, a histogram, for its bucket layout is reported on the segment's
:class:`~biometrics.prometheus.Parse` at its line, as not the segment's fault: the segment is
consumed normally, never quarantined for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..prometheus import Metadata, Parse, Reading

__all__ = ["CHUNK", "LayoutConflict", "NameConflict", "SegmentDrops", "chunks", "tell"]

CHUNK = 8192
"""Readings per hold of the store lock while a segment is ingested."""


@dataclass(frozen=True, slots=True)
class NameConflict:
    """Why a reading is dropped: a name it would render is held by another family (or kind)."""

    holder: str
    """That family, described: ``the gauge x``."""


@dataclass(frozen=True, slots=True)
class LayoutConflict:
    """Why a histogram reading cannot be shown exactly in its family's layout (it is dropped).

    A family's layout is the ``le`` set of the first reading the store takes for it; a reading
    with another set is projected onto it, exactly or not at all
    (:func:`biometrics.prometheus.segments.project`).
    """

    reason: str


Refusal = NameConflict | LayoutConflict
"""What the store answers instead of applying a reading it drops."""

OnConflict = Callable[[Reading, str], None]
"""``on_conflict(reading, holder)``, ``on_misfit(reading, why)``: who hears of a dropped reading."""


def tell(
    reading: Reading, refusal: Refusal, on_conflict: OnConflict | None, on_misfit: OnConflict | None
) -> None:
    """Pass a dropped reading on to whoever asked to hear of its kind of drop."""
    if type(refusal) is LayoutConflict:
        if on_misfit is not None:
            on_misfit(reading, refusal.reason)
    elif on_conflict is not None:
        assert type(refusal) is NameConflict
        on_conflict(reading, refusal.holder)


class SegmentDrops:
    """Reports a segment's dropped readings on its parse: a name conflict once per family."""

    __slots__ = ("_parsed", "_reported")

    def __init__(self, parsed: Parse) -> None:
        self._parsed = parsed
        self._reported: set[str] = set()

    def conflict(self, reading: Reading, held: str) -> None:
        """A reading whose name ``held`` (a family of another kind) already shows."""
        if reading.family not in self._reported:
            self._reported.add(reading.family)
            self._parsed.report(
                reading.line,
                f"{reading.family} is a {reading.kind} here but {held} already holds that "
                "name on the page; this segment's readings of it are dropped",
                malformed=False,
            )

    def misfit(self, reading: Reading, why: str) -> None:
        """A histogram reading that cannot be shown in its family's bucket layout."""
        self._parsed.report(
            reading.line,
            f"histogram {reading.family} reading does not fit the family's bucket layout "
            f"(the le set of the first reading taken): {why}; reading dropped",
            malformed=False,
        )


def chunks(items: Iterable[Reading | Metadata]) -> Iterator[list[Reading] | Metadata]:
    """Readings in chunks of at most :data:`CHUNK`, and the metadata lines as they come.

    A chunk is cut short before ``# END`` (its writer stopped) and ``# MERGE`` (a declaration
    that re-merges its family), so every reading before the line is in the store when the
    line is applied: in file order, as the known-lines fold (:mod:`.known`) folds the readings
    before the line it gives up at.  Folded after the re-merge instead, a ``sum`` gauge would
    round otherwise and a ``latest`` one break a tie by arrival: the page would depend on the
    path a part took.
    """
    chunk: list[Reading] = []
    for item in items:
        if isinstance(item, Metadata):
            if item.kind in ("END", "MERGE") and chunk:
                yield chunk
                chunk = []
            yield item
            continue
        chunk.append(item)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
