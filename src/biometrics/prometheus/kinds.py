"""What each sample name of a segment is part of, and the series name it is stored under.

A sample's role is not in its line: ``x_count`` is a histogram's count, a moments' count or a
counter depending on the TYPE lines of its segment (and, for a segment whose first samples come
before their TYPE line, as the Rust crate writes them after a rotation, on the types declared
before).  ``serve`` (through :func:`.segments.readings`), ``ship`` and the offline tools must
decide alike, or one series would have two names depending on how it reached Prometheus; so
the decision is made here, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from .exposition import counter_name

__all__ = ["Role", "SampleKinds", "SeriesNames"]

Role = Literal["counter", "gauge", "histogram", "moments"]
"""What a sample is part of: a counter, a gauge, a histogram (a part) or moments (a part)."""

_HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")
_HISTOGRAM_COUNTERS = ("_exceeds_max", "_is_negative", "_exceeds_max_total", "_is_negative_total")
"""The out-of-range counters beside a histogram, ours (``_total``) and the Rust crate's (without);
counters whatever their TYPE line says (Rust declares them ``gauge`` since 0.10, untyped before)
and named canonically (``h_exceeds_max_total``) on the page."""
_GAUGE_PARTS = ("_mean", "_variance", "_skewness", "_kurtosis", "_m2", "_m3", "_m4")


class SampleKinds:
    """What each sample name is part of, for one segment.

    Its own TYPE line decides, else what the store already holds under that name (``known``),
    else it is a gauge.  Histogram parts are recognised by their family's TYPE in the same
    segment before their own, because the Rust crate also declares ``x_sum`` a gauge and
    ``x_count`` a counter.
    Falling back on ``known`` lets a segment whose first samples lack their TYPE line (the Rust
    crate does that after a rotation) still read as the types declared before; a counter is
    known under its canonical name (``http_requests_total`` for Rust's ``http_requests``).
    A counter's family is its canonical name, whatever the writer called it.
    """

    def __init__(self, known: Mapping[str, str]) -> None:
        self.types: dict[str, str] = {}
        self.known = known
        self._cache: dict[str, tuple[Role, str]] = {}

    def declare(self, name: str, kind: str) -> None:
        """A TYPE line of this segment: it decides for its name from here on."""
        self.types[name] = kind
        self._cache.clear()

    def kind_of(self, name: str) -> str | None:
        """The declared type of ``name``: this segment's, else the one known before, else None."""
        kind = self.types.get(name)
        if kind is None:
            known = self.known
            kind = known.get(name)
            if kind is None and known.get(name + "_total") == "counter":
                kind = "counter"
        return kind

    def classify(self, name: str) -> tuple[Role, str]:
        """``(role, family)``: role is counter, gauge, histogram (a part) or moments (a part)."""
        found = self._cache.get(name)
        if found is None:
            found = self._cache[name] = self._classify(name)
        return found

    def _classify(self, name: str) -> tuple[Role, str]:
        found = self._histogram_side(name, self.types)
        if found is None and name not in self.types:
            found = self._histogram_side(name, self.known)
        if found is not None:
            return found
        kind = self.kind_of(name)
        if kind is None and name.endswith("_total") and self.kind_of(name[:-6]) == "counter":
            kind = "counter"  # TYPE named the family, as OpenMetrics does: x counter, x_total 1
        if kind == "counter" and name.endswith("_count"):
            return "moments", name[:-6]
        if kind == "counter":
            return "counter", counter_name(name)
        if kind == "histogram":
            return "histogram", name
        if kind is None or kind == "gauge":
            cut = name.rfind("_")
            if name.endswith(_GAUGE_PARTS) or (kind is None and name.endswith("_count")):
                base = name[:cut]
                if kind == "gauge" or self.kind_of(base) == "moments":
                    return "moments", base
        return "gauge", name

    @staticmethod
    def _histogram_side(name: str, types: Mapping[str, str]) -> tuple[Role, str] | None:
        for suffix in _HISTOGRAM_PARTS:
            if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
                return "histogram", name[: -len(suffix)]
        for suffix in _HISTOGRAM_COUNTERS:
            if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
                return "counter", counter_name(name)
        return None


class SeriesNames:
    """The name each sample of a stream of segments is stored under, as ``serve``'s page has it.

    For the tools that pass samples on one by one (``ship``, ``backfill``, ``cat --raw``): a
    counter gets its canonical name (a Rust ``http_requests`` is ``http_requests_total``, as
    ours), so a series has one name whichever way it reaches Prometheus; everything else keeps
    its own.  Give it each segment's TYPE lines (:meth:`declare`) and call :meth:`segment`
    between segments: a segment's own TYPE lines decide, and declarations of earlier segments
    cover samples that come before theirs (the Rust crate's rotation), as the store's kinds
    do for ``serve``.
    """

    def __init__(self, max_known: int = 100_000) -> None:
        self._known: dict[str, str] = {}
        self._max_known = max_known
        self._kinds = SampleKinds(self._known)

    def segment(self) -> None:
        """The next samples are another segment's: only earlier declarations are known."""
        self._kinds = SampleKinds(self._known)

    def declare(self, name: str, kind: str) -> None:
        """A TYPE line of the current segment."""
        self._kinds.declare(name, kind)
        if len(self._known) < self._max_known or name in self._known:
            self._known[name] = kind

    def classify(self, name: str) -> tuple[Role, str]:
        """``(role, family)`` as ``serve`` reads the sample: see :class:`SampleKinds`."""
        return self._kinds.classify(name)

    def __call__(self, name: str) -> str:
        """The sample's series name in Prometheus."""
        role, family = self._kinds.classify(name)
        return family if role == "counter" else name
