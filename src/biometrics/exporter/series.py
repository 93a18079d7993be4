"""One merged series as a record: its layout, and its JSON form (checked as it is read).

Most series are fed by one source (each process has label values of its own), and
a store holds up to millions of them, so a series is one object: the first source's
contribution sits in the object's own slots (``src``, ``a``, ``b``, ``t``) and only further
sources go into a dict (``more``).  The store keeps the series' key (``labels``) and its
rendered lines (``text``) on the same object.  Per-source lists and dicts cost ~3x the memory
(measured in benchmarks/store_memory.py).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from typing import Any, ClassVar

__all__ = [
    "Contribution",
    "Part",
    "Series",
    "as_list",
    "as_number",
    "as_stamp",
    "newest_first",
    "total",
]

Contribution = tuple[Any, Any, int]
"""One source's part of a series: ``(a, b, t)``, unpacked by name wherever it is read.

A plain tuple, not a record, because one is made for every reading folded in (and one per
source each time a series is recomputed): measured here, a tuple takes ~50-100 ns to make, a
NamedTuple ~300 ns, a slotted dataclass ~400 ns (~750 ns frozen).  ``a`` and ``b`` are per kind
(see :class:`Series`), ``t`` the source's newest reading time."""

Part = tuple[str, Any, Any, int]
"""``(source, a, b, t)``: a :data:`Contribution` with its source, as :meth:`Series.parts` lists."""

newest_first = operator.itemgetter(3)
"""The key ordering :data:`Part` s by their newest reading time."""

_MAX_TS = 2**63 - 1


def total(values: Iterable[float]) -> float:
    """The exact sum where it exists; ``inf``/``nan`` (never an exception) where it does not.

    ``math.fsum`` raises on an overflowing partial sum and on ``inf + -inf``; a merged value
    must never crash the daemon or make its snapshot unloadable.
    """
    items = list(values)
    try:
        return math.fsum(items)
    except (OverflowError, ValueError):
        return sum(items, 0.0)


def as_number(value: Any, what: str) -> float:
    """A JSON number as a float, or ValueError naming ``what`` (bools are not numbers)."""
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"{what}: an integer beyond the range of a float") from None
    raise ValueError(f"{what}: expected a number, got {type(value).__name__}")


def as_stamp(value: Any, what: str) -> int:
    """A JSON time in ms (int64, never negative), or ValueError naming ``what``."""
    if type(value) is not int or not 0 <= value <= _MAX_TS:
        raise ValueError(f"{what}: expected a time in ms (an integer in [0, 2**63)), "
                         f"got {value!r:.40}")  # fmt: skip
    return value


def as_list(value: Any, what: str, size: int) -> list[Any]:
    """A JSON list of exactly ``size`` items, or ValueError naming ``what``."""
    if type(value) is not list or len(value) != size:
        raise ValueError(f"{what}: expected a list of {size}, got {value!r:.60}")
    return value


class Series:
    """One merged series: per-source contributions plus the merged value, in one object.

    ``a`` and ``b`` are per kind (a counter's base and last value, a gauge's value and None,
    a histogram's or moments' base and last reading); ``t`` is the source's newest time.  The
    same four fields for every kind let one JSON form, and one check of it, serve them all.
    """

    __slots__ = ("a", "b", "labels", "more", "src", "t", "text", "ts")
    kind: ClassVar[str] = ""
    fields: ClassVar[tuple[str, str]] = ("base", "last")
    """What ``a`` and ``b`` are called in error messages."""

    def __init__(self, labels: str = "") -> None:
        self.src: str | None = None
        self.a: Any = None
        self.b: Any = None
        self.t = 0
        self.more: dict[str, Contribution] | None = None
        self.ts = 0
        self.labels = labels
        """The rendered label set: the series' key in its family (kept here by the store)."""
        self.text: str | tuple[str, ...] | None = None
        """The store's rendered lines (a scrape reuses them until a reading changes them, then
        None); an empty tuple once the series has left its family."""

    def update(self, source: str, value: Any, ts: int) -> bool:  # pragma: no cover - abstract
        """Fold a reading; False (and no change) if it is not newer than the source's last."""
        raise NotImplementedError

    def __contains__(self, source: object) -> bool:
        if self.src == source:
            return True
        more = self.more
        return more is not None and source in more

    def sources(self) -> int:
        """How many sources contribute, the pseudo-source ``""`` of forgotten ones included."""
        more = self.more
        return (self.src is not None) + (len(more) if more else 0)

    def parts(self) -> list[Part]:
        """Every source's contribution, the inline one first."""
        out: list[Part] = []
        if self.src is not None:
            out.append((self.src, self.a, self.b, self.t))
        if self.more:
            out.extend((s, a, b, t) for s, (a, b, t) in self.more.items())
        return out

    def _get(self, source: str) -> Contribution | None:
        if self.src == source:
            return self.a, self.b, self.t
        more = self.more
        return None if more is None else more.get(source)

    def _set(self, source: str, a: Any, b: Any, t: int) -> None:
        src = self.src
        if src is None or src == source:
            self.src, self.a, self.b, self.t = source, a, b, t
        elif self.more is None:
            self.more = {source: (a, b, t)}
        else:
            self.more[source] = (a, b, t)

    def _pop(self, source: str) -> Contribution | None:
        more = self.more
        if self.src == source:
            popped = (self.a, self.b, self.t)
            if more:  # the next source moves inline
                src = next(iter(more))
                self.a, self.b, self.t = more.pop(src)
                self.src = src
                if not more:
                    self.more = None
            else:
                self.src, self.a, self.b, self.t = None, None, None, 0
            return popped
        if more is None or source not in more:
            return None
        other = more.pop(source)
        if not more:
            self.more = None
        return other

    def forget(self, source: str) -> bool:
        """Drop a source; True when no live source is left and the series should disappear."""
        c = self._pop(source)
        if self.sources() - ("" in self) == 0:
            return True
        if c is not None:
            self._retire(c)
        self._exact()
        return False

    def _retire(self, contribution: Contribution) -> None:
        """Keep a forgotten source's cumulative part under the pseudo-source ``""``."""

    def _retired(self, empty: Any) -> Any:
        """What forgotten sources left here (the pseudo-source ``""``'s ``a``), else ``empty``."""
        retired = self._get("")
        if retired is None:
            return empty
        kept, _, _ = retired
        return kept

    def _exact(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _newest(self) -> int:
        if self.more is None:
            return self.t
        return max((t for _, _, _, t in self.parts()), default=0)

    # -- JSON form: per source, [source, a, b, t], flat ----------------------------------

    def _encode(self, v: Any) -> Any:
        return v

    def _decode(self, v: Any, what: str) -> Any:
        return as_number(v, what)

    def _decode_b(self, v: Any, what: str) -> Any:
        return self._decode(v, what)

    def to_json(self) -> list[Any]:
        """The contributions as a flat JSON-ready list: ``[source, a, b, t, ...]``."""
        out: list[Any] = []
        self.dump(out)
        return out

    def dump(self, out: list[Any]) -> None:
        """Append :meth:`to_json`'s items to ``out`` (one big list per family in a snapshot)."""
        enc = self._encode
        for s, a, b, t in self.parts():
            out += (s, enc(a), enc(b), t)

    def load_json(self, data: Any, intern: dict[Any, Any] | None = None) -> None:
        """Restore what :meth:`to_json` gave; ValueError says which source and field is wrong.

        ``intern`` shares equal source names and times between series (a snapshot's strings
        and numbers are all distinct objects otherwise).
        """
        if type(data) is not list or not data or len(data) % 4:
            raise ValueError(f"expected [source, {', '.join(self.fields)}, time] per source")
        self.load_parts(data, 0, len(data), {} if intern is None else intern)

    def load_parts(self, data: list[Any], start: int, stop: int, intern: dict[Any, Any]) -> None:
        """:meth:`load_json` of ``data[start:stop]`` (a multiple of 4 items), without the copy."""
        a_name, b_name = self.fields
        decode, decode_b = self._decode, self._decode_b
        for i in range(start, stop, 4):  # bounded by the list
            source = data[i]
            if type(source) is not str:
                raise ValueError(f"source: expected a string, got {type(source).__name__}")
            try:
                a, b = decode(data[i + 1], a_name), decode_b(data[i + 2], b_name)
                t = as_stamp(data[i + 3], "time")
            except ValueError as e:
                raise ValueError(f"source {source!r}: {e}") from None
            if self.src is not None and self._get(source) is not None:
                raise ValueError(f"source {source!r} appears twice")
            self._set(intern.setdefault(source, source), a, b, intern.setdefault(t, t))
        if not self.src and not self.more:  # sources are unique: any other one is live
            raise ValueError("no live source (only the forgotten ones' pseudo-source)")
        self._exact()
