"""The merged page: each series' lines rendered once per change and kept on the series.

A scrape must never stop ingest for long: a million series take seconds to render, far beyond
the ingest lock's fair share.  So a page is built in chunks of series, each chunk under the
store lock (every series is read whole, in one state), and the lock is free between chunks.
Lines of a series that did not change since the previous scrape are reused as they are; each
family keeps its series in page order between scrapes, so a scrape sorts only the series that
are new since the last one (merged into the sorted rest in near-linear time).

A page built while ingest goes on may show some series before and some after a reading: each
series is whole and none goes backwards, as with any scrape of a live target.  Only one page is
built at a time (``PageCache.lock``): the family order is the builder's alone.
"""

from __future__ import annotations

import operator
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from .._labels import LabelPairs
from ..prometheus.exposition import (
    MOMENTS_PAGE,
    ExpositionFamily,
    format_count,
    format_value,
    histogram_samples,
    metadata_lines,
    moments_page_samples,
    openmetrics_timestamp,
    render_labels,
    sample_line,
)
from .families import DEAD, FamilyTable
from .merge import CounterSeries, GaugeSeries, HistogramSeries, MomentsSeries, Series

__all__ = ["PageCache", "label_pairs", "label_text", "render_families", "series_text"]

CHUNK = 8192
"""Series per lock hold while a page is built: ~10 ms when all of them must be rendered."""

label_text: Callable[[LabelPairs], str] = render_labels.__wrapped__
"""``{a="x",b="y"}``: a series' key.  Uncached: the store holds more label sets than a cache
would, and keeps each one's text on its series anyway."""

_LABELS = operator.attrgetter("labels")
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")
_UNESCAPE = {"n": "\n", '"': '"', "\\": "\\"}


def label_pairs(text: str) -> LabelPairs:
    """The pairs :func:`label_text` rendered, back (a histogram's buckets need ``le`` added)."""
    return tuple(
        (k, _ESCAPE.sub(lambda m: _UNESCAPE.get(m[1], m[0]), v) if "\\" in v else v)
        for k, v in _PAIR.findall(text)
    )


class PageCache:
    """Whole pages of one store version, by format: an unchanged store's page is built once.

    Prometheus servers in an HA pair, and every other scraper, ask for the same page; only
    the first scrape after a change pays for building it.
    """

    __slots__ = ("_pages", "_version", "lock")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        """Held while a page is built: one at a time (a second scrape waits for its page)."""
        self._pages: dict[tuple[bool, bool], str] = {}
        self._version = -1

    def get(self, version: int, openmetrics: bool, timestamps: bool) -> str | None:
        """The page built at ``version`` in this format, if any (call under :attr:`lock`)."""
        if self._version != version:
            self._pages.clear()
            self._version = version
        return self._pages.get((openmetrics, timestamps))

    def put(self, openmetrics: bool, timestamps: bool, page: str) -> None:
        """Keep ``page`` for the version :meth:`get` was last asked about."""
        self._pages[(openmetrics, timestamps)] = page


def series_text(name: str, series: Series) -> str | tuple[str, ...]:
    """A series' sample lines: one string, or one per output family for moments."""
    labels = series.labels
    if isinstance(series, CounterSeries):
        return sample_line((name, labels, format_count(series.total)))
    if isinstance(series, GaugeSeries):
        return sample_line((name, labels, format_value(series.value)))
    if isinstance(series, HistogramSeries):
        samples = histogram_samples(  # every bucket of the family's layout, empty ones too
            name, label_pairs(labels), series.buckets(), series.count, series.sum
        )
        return "".join(map(sample_line, samples))
    assert isinstance(series, MomentsSeries)
    return tuple(
        "".join(map(sample_line, samples))
        for samples in moments_page_samples(name, labels, series.value)
    )


def let_others_in() -> None:
    """Between chunks: let a thread waiting for the lock (ingest) have it.

    A lock released and at once retaken is seldom won by a waiter that must first get the GIL
    back: without this, ingest waited for the whole page (0.65 s at a million series).
    """
    time.sleep(0)


class _Turns:
    """When to :func:`let_others_in`: once per :data:`CHUNK` series read, across families.

    A turn costs ~75 µs here; one per family made a page of 650 small families 50 ms, not 5.
    """

    __slots__ = ("read",)

    def __init__(self) -> None:
        self.read = 0

    def after(self, series: int) -> None:
        self.read += series
        if self.read >= CHUNK:
            self.read = 0
            let_others_in()


def _out_families(name: str, kind: str) -> list[tuple[str, str]]:
    if kind != "moments":
        return [(name, kind)]
    return [(name + suffix, out_kind) for suffix, out_kind in MOMENTS_PAGE]


def _help(helps: Mapping[str, str], name: str, kind: str) -> str | None:
    """A family's help: segments give moments' as their count's, Rust's counters' unsuffixed."""
    found = helps.get(name)
    if found is None and kind == "summary":
        found = helps.get(name + "_count")
    elif found is None and kind == "counter":
        found = helps.get(name[:-6])
    return found


def render_families(
    families: Iterable[tuple[str, FamilyTable]],
    helps: Mapping[str, str],
    lock: threading.RLock,
    *,
    openmetrics: bool = False,
    timestamps: bool = False,
    eof: bool = True,
) -> str:
    """The page of ``families`` (in the order given), reading them under ``lock`` in chunks."""
    out: list[str] = []
    turns = _Turns()
    for name, table in families:
        columns = _lines(name, table, lock, openmetrics if timestamps else None, turns)
        with lock:
            heads = [(n, k, _help(helps, n, k)) for n, k in _out_families(name, table.kind)]
        for (out_name, kind, help_text), lines in zip(heads, columns, strict=True):
            if lines:
                out.append(metadata_lines(ExpositionFamily(out_name, kind, help_text),
                                          openmetrics=openmetrics))  # fmt: skip
                out += lines
    if openmetrics and eof:
        out.append("# EOF\n")
    return "".join(out)


def _lines(
    name: str, table: FamilyTable, lock: threading.RLock, stamps: bool | None, turns: _Turns
) -> list[list[str]]:
    """Each output family's lines, in label order; ``stamps``: None, or OpenMetrics or not."""
    with lock:
        added, table.added = table.added, []
    order = table.order
    if added:
        order += added
        order.sort(key=_LABELS)  # two sorted runs at most: a merge
    moments = table.kind == "moments"
    columns: list[list[str]] = [[] for _ in range(len(MOMENTS_PAGE) if moments else 1)]
    first = columns[0]
    stamp = openmetrics_timestamp if stamps else str
    dead = 0
    for start in range(0, len(order), CHUNK):
        with lock:
            for series in order[start : start + CHUNK]:
                text = series.text
                if not text:
                    if text is None:
                        text = series.text = series_text(name, series)
                    else:
                        dead += 1
                        continue
                if stamps is not None:
                    suffix = f" {stamp(series.ts)}\n"
                    text = (
                        tuple(t.replace("\n", suffix) for t in text)
                        if isinstance(text, tuple)
                        else text.replace("\n", suffix)
                    )
                if moments:
                    for column, line in zip(columns, text, strict=True):
                        column.append(line)
                else:
                    assert isinstance(text, str)
                    first.append(text)
        turns.after(min(CHUNK, len(order) - start))
    if dead:
        table.order = [s for s in order if s.text is not DEAD]
    return columns
