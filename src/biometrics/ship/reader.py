"""Segment lines to encoded samples, each in its series' shard; the shipper's hot loop.

A line ``series value ms`` whose series text was seen before, parsed by the full parser and
found valid, takes a fast path: three dictionary lookups, a float and three bytes joined.  Every
other line (metadata, a new series, special values, anything malformed) goes through
:class:`~biometrics.prometheus.parser.Parse`, one line at a time, so its rules and messages are
the only ones; the fast path only ever accepts lines the parser would accept the same way.  Its
cache is per source (the source label is in the series) and is emptied when a ``# TYPE`` line
changes the name a cached series is shipped under.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from .._labels import LabelPairs
from ..prometheus.kinds import SeriesNames
from ..prometheus.parser import MAX_LINE, Metadata, Parse, split_lines
from .metrics import ShipMetrics
from .options import ShipOptions
from .wire import UNSORTED, SeriesParts, Stamps, label_bytes, sample_bytes

__all__ = ["Reader", "Target"]

_BLOCK = 1 << 18
_MAX_FAST = 100_000
_MAX_LABELS = 100_000
_MAX_CHECKED_NAMES = 1_000
_RUN = 64
_FLOAT_CHARS = b"0123456789+-.eE"
_double = struct.Struct("<d").pack

Series = tuple[bytes, int]
"""A series as shipped: its encoded labels and its shard."""
Target = tuple[list[SeriesParts], list[int]]
"""Where samples go: each shard's series of the segment being read, and each shard's count."""
Cut = Callable[[int, int], Target | None]
"""Called with the full shard and the lines read so far; the next target, or None to stop."""


@dataclass(frozen=True, slots=True)
class _Segment:
    """What the slow path needs of the segment being read."""

    sink: Parse
    source: str
    default_ms: int
    floors: list[int]
    fast: dict[bytes, Series]


class Reader:
    """Reads segments into shards; keeps the label checks and the caches across segments."""

    def __init__(self, options: ShipOptions, metrics: ShipMetrics) -> None:
        self._options = options
        self._metrics = metrics
        self._shards = options.concurrency
        self._names = SeriesNames()
        """Counters ship under their canonical ``_total`` name, as serve's page shows them."""
        self._series: dict[tuple[str, LabelPairs, str], Series] = {}
        self._fast: dict[str, dict[bytes, Series]] = {}
        """Per source: series text (``name{labels}``) -> the series, for the fast path."""
        self._fast_size = 0
        self._checked: dict[str, str] = {}
        """Name in the segment -> name shipped, for every name behind a fast-path entry."""
        self._stamps = Stamps()

    def read(  # noqa: PLR0912, PLR0915 - the hot loop, inlined
        self,
        file: BinaryIO,
        *,
        sink: Parse,
        source: str,
        default_ms: int,
        floors: list[int],
        target: Target,
        cut: Cut,
    ) -> int:
        """Read ``file`` into ``target``; the number of lines read.

        ``floors`` is, per shard, the line up to which its samples were acknowledged before
        (a resumed segment); ``sink`` collects the problems, as the parser reports them.
        ``cut`` is called when a shard is full; when it returns None reading stops there.
        """
        self._names.segment()
        self._check_names()
        fast = self._fast.setdefault(source, {})
        segment = _Segment(sink, source, default_ms, floors, fast)
        stamps = self._stamps
        limit = self._options.max_samples_per_request
        top = max(floors)
        accs, counts = target
        number = first = 0
        torn: list[bytes] = []
        run: list[bytes] = []
        """Consecutive lines for the parser, given to it together: one Parse, not one a line."""
        double = _double
        for raw in split_lines(iter(lambda: file.read(_BLOCK), b""), torn):
            number += 1
            if raw is None:
                if run and not self._run(run, first, segment, target, cut):
                    return number
                run = []
                sink.report(number, f"line longer than {MAX_LINE} bytes; skipped")
                continue
            parts = raw.split(b" ")
            if len(parts) == 3:
                series = fast.get(parts[0])
                if series is not None and run:  # the lines before come first, and may be TYPE
                    if not self._run(run, first, segment, target, cut):
                        return number
                    run = []
                    series = fast.get(parts[0])
                if series is not None:
                    stamp = stamps.get(parts[2]) or stamps.parse(parts[2])
                    text = parts[1]
                    if stamp is not None and (
                        text.isdigit() or not text.translate(None, _FLOAT_CHARS)
                    ):
                        try:
                            value = float(text)
                        except ValueError:
                            value = None
                        if value is not None:
                            labels, shard = series
                            if number <= top and number <= floors[shard]:
                                continue
                            ms, head, tail = stamp
                            acc = accs[shard]
                            sample = head + double(value) + tail
                            got = acc.get(labels)
                            if got is None:
                                acc[labels] = [ms, sample]
                            elif ms > got[0]:
                                got[0] = ms
                                got.append(sample)
                            else:
                                got[0] = UNSORTED
                                got.append(sample)
                            count = counts[shard] = counts[shard] + 1
                            if count >= limit:
                                nxt = cut(shard, number)
                                if nxt is None:
                                    return number
                                accs, counts = nxt
                            continue
            if not run:
                first = number
            run.append(raw)
            if len(run) >= _RUN:  # its series join the fast path for the lines after
                if not self._run(run, first, segment, target, cut):
                    return number
                run = []
        if run and not self._run(run, first, segment, target, cut):
            return number
        if torn:
            self._run(torn, number + 1, segment, target, cut, end=True)
        return number

    def _run(
        self, run: list[bytes], first: int, segment: _Segment, target: Target, cut: Cut,
        *, end: bool = False,
    ) -> bool:  # fmt: skip
        """Lines ``first``... through the full parser; False if ``cut`` said to stop."""
        sink, source, floors = segment.sink, segment.source, segment.floors
        accs, counts = target
        limit = self._options.max_samples_per_request
        data = b"\n".join(run) + (b"" if end else b"\n")
        parse = Parse((data,), path=sink.path, first_line=first)
        going = True
        for item in parse:
            if isinstance(item, Metadata):
                if item.kind == "TYPE":
                    self._names.declare(item.name, item.text)
                    self._check_names()
                continue
            name = self._names(item.name)
            series = self._series.get((name, item.labels, source))
            if series is None:
                checked = self._resolve(name, item.labels, source)
                if isinstance(checked, str):
                    sink.report(item.line, checked)
                    self._metrics.invalid.click()
                    continue
                series = checked
            labels, shard = series
            line = item.line
            if line <= floors[shard]:
                continue
            raw = run[line - first]
            if item.timestamp_ms is not None and raw.count(b" ") == 2:
                self._remember(segment.fast, raw.split(b" ", 1)[0], item.name, name, series)
            ms = segment.default_ms if item.timestamp_ms is None else item.timestamp_ms
            sample = sample_bytes(ms, item.value)
            got = accs[shard].get(labels)
            if got is None:
                accs[shard][labels] = [ms, sample]
            else:
                got[0] = ms if ms > got[0] else UNSORTED
                got.append(sample)
            counts[shard] += 1
            if counts[shard] >= limit:
                nxt = cut(shard, line)
                if nxt is None:
                    going = False
                    break
                accs, counts = nxt
        benign = {id(p) for p in parse.problems} - {id(p) for p in parse.malformed}
        for problem in parse.problems:
            sink.report(problem.line, problem.message, malformed=id(problem) not in benign)
        return going

    def _remember(
        self, fast: dict[bytes, Series], key: bytes, written: str, name: str, series: Series
    ) -> None:
        if self._fast_size >= _MAX_FAST:
            self._forget()
        fast[key] = series
        self._fast_size += 1
        self._checked[written] = name

    def _forget(self) -> None:
        for fast in self._fast.values():
            fast.clear()
        self._fast_size = 0
        self._checked.clear()

    def _check_names(self) -> None:
        """Empty the fast path if a cached series would now ship under another name."""
        checked = self._checked
        if len(checked) > _MAX_CHECKED_NAMES or any(
            self._names(written) != name for written, name in checked.items()
        ):
            self._forget()

    def _resolve(self, name: str, labels: LabelPairs, source: str) -> Series | str:
        """The series sent for a sample, or why it cannot be sent.

        Checked here so an invalid or duplicate label never reaches a server, which may answer
        500 and be retried in vain.  The shard is a hash of the encoded labels that is the same
        in every process, so a resumed segment's samples go where they went before.
        """
        opts = self._options
        pairs = dict(labels)
        for key in pairs:
            if key.startswith("__"):
                return f"label {key!r}: names starting with '__' are reserved"
        label = opts.source_label
        if label is not None:
            if label in pairs:
                exported = f"exported_{label}"
                if exported in pairs:
                    return f"labels {label!r} and {exported!r} both set; no room for the source"
                pairs[exported] = pairs[label]
            pairs[label] = source
        for key, value in opts.external_labels.items():
            pairs.setdefault(key, value)
        pairs["__name__"] = name
        # str order is code-point order, which is UTF-8 byte order: the spec's bytewise sort.
        encoded = label_bytes(tuple(sorted(p for p in pairs.items() if p[1])))
        series = (encoded, zlib.crc32(encoded) % self._shards)
        if len(self._series) >= _MAX_LABELS:
            self._series.clear()
        self._series[(name, labels, source)] = series
        return series
