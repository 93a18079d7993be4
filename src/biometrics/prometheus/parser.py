"""Streaming parser for segment text: Prometheus 0.0.4 lines with millisecond timestamps.

Reads line by line with a length cap, so memory stays flat in file size.  Accepts what the Rust
crate wrote over its versions: dotted names (normalised to Prometheus names, as our emitters
write them), repeated ``# TYPE`` lines, Rust float spellings (``inf``, ``-inf``, ``NaN``), and
histogram bounds such as ``le="1.0000"`` (normalised to our one rendering of each bound).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO, NamedTuple

from ..errors import ParseError
from ..sensors import MERGE_MODES
from .exposition import format_le, prometheus_name

__all__ = ["Metadata", "Parse", "Sample", "parse", "sample_value", "series_of", "split_lines"]

MAX_LINE = 1 << 20
"""Longest line accepted (1 MiB); longer ones are reported and skipped, never buffered whole."""
_BLOCK = 1 << 18
_LABEL_CACHE = 100_000
_MAX_TS_DIGITS = 19
_MAX_TS = 2**63 - 1
"""Timestamps are int64 milliseconds, as in Prometheus and remote write."""

# Possessive quantifiers and atomic groups (Python 3.11+) keep every pattern linear in the line
# length: none can backtrack into what it matched, whatever an attacker writes.
_SAMPLE = re.compile(
    r"([^ \t{}\"#=,][^ \t{}\"=,]*+)"
    r"(?>[ \t]*+\{((?:[^\"}]|\"(?:[^\"\\]|\\.)*+\")*+)\})?"
    r"[ \t]++(\S++)(?:[ \t]++(\S++))?+[ \t]*+"
)
_LABEL = re.compile(
    r"[ \t]*+([a-zA-Z_][a-zA-Z0-9_]*+)[ \t]*+=[ \t]*+\"((?:[^\"\\]|\\.)*+)\"[ \t]*+(,|\Z)"
)
_SERIES_CACHE: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}
"""Series text (``name{labels}``, no space) -> its Prometheus name and sorted labels.

A pure function of the text, shared by every parse (the same series recur in every segment of
a source); filled only from lines the full pattern accepted, bounded like the label cache.
"""
_SERIES_KEY_MAX = 4096
_META = re.compile(r"#[ \t]++(HELP|TYPE|MERGE)[ \t]++([^ \t{}\"=,]++)(?:[ \t]++(.*+))?+")
_END = re.compile(r"#[ \t]++END[ \t]*+")
_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped", "unknown"})
_BLANK = ("", " ", "\t")
_ESCAPES = re.compile(r"\\(.)")
_SPECIAL = {"+Inf": float("inf"), "-Inf": float("-inf"), "inf": float("inf"),
            "-inf": float("-inf"), "+inf": float("inf"), "NaN": float("nan"),
            "nan": float("nan"), "Inf": float("inf")}  # fmt: skip


class Sample(NamedTuple):
    """One timestamped sample.  ``labels`` are (name, value) pairs sorted by name."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp_ms: int | None
    line: int


class Metadata(NamedTuple):
    """A ``# HELP``, ``# TYPE``, ``# MERGE`` or ``# END`` line; ``kind`` says which.

    ``MERGE`` (our writers' gauge merge declaration) has ``text`` ``"<mode>"`` or
    ``"<mode> live"``; ``END`` (the writer stopped cleanly) has an empty name and text.
    """

    kind: str
    name: str
    text: str
    line: int


def _unescape(value: str) -> str:
    return _ESCAPES.sub(lambda m: "\n" if m[1] == "n" else m[1], value)


def sample_value(text: str) -> float | None:
    """A sample value as this parser reads it (``+Inf``, ``NaN``, ``1e-3``), or None if not one.

    For readers that split lines themselves (the exporter's fold of known lines): they must
    take exactly the values the parser takes.
    """
    special = _SPECIAL.get(text)
    if special is not None:
        return special
    try:
        return _float(text) if text[:1].strip() and text[-1:].strip() else None
    except ValueError:
        return None


def series_of(text: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """The Prometheus name and labels of a series text (``name{labels}``), None if not one.

    For readers that split lines themselves: the same answer a parse of the line gives.
    """
    found = _SERIES_CACHE.get(text)
    if found is None:
        parsed = Parse([text.encode() + b" 0 0\n"])
        items = list(parsed)
        if len(items) != 1 or parsed.problems or not isinstance(items[0], Sample):
            return None
        found = items[0].name, items[0].labels
    return found


def _float(text: str) -> float:
    special = _SPECIAL.get(text)
    if special is not None:
        return special
    if "_" in text or text[:1].isalpha() or "x" in text or "X" in text:
        raise ValueError(text)
    return float(text)


def split_lines(blocks: Iterable[bytes], torn: list[bytes]) -> Iterator[bytes | None]:
    r"""Lines without their ``\n``; None for a line over ``MAX_LINE`` (skipped, not kept).

    Blocks are split in C.  A final piece with no newline is appended to ``torn`` instead of
    being yielded: the one splitter of every reader of segments (the parser, ``ship``'s).
    """
    carry = b""
    oversized = False
    for block in blocks:
        parts = block.split(b"\n")
        if oversized:
            if len(parts) == 1:
                continue
            oversized = False
            parts[0] = b""
            yield None
            parts.pop(0)
        else:
            parts[0] = carry + parts[0]
        carry = parts.pop()
        if parts and max(map(len, parts)) > MAX_LINE:  # one C pass; rare
            yield from (None if len(part) > MAX_LINE else part for part in parts)
        else:
            yield from parts
        if len(carry) > MAX_LINE:
            carry, oversized = b"", True
    if oversized:
        yield None
    if carry:
        torn.append(carry)


class Parse:
    r"""Iterate to get :class:`Sample` and :class:`Metadata` items in file order.

    Malformed lines are recorded in ``problems`` (each a :class:`ParseError` with path and line)
    and skipped, so one bad line loses nothing else; with ``strict=True`` the first one raises
    instead.  A final line without ``\\n`` (a writer killed mid-line) is always only recorded,
    with ``truncated`` set: it is dropped, never fatal.
    """

    def __init__(
        self,
        source: BinaryIO | Iterable[bytes],
        *,
        path: str | None = None,
        strict: bool = False,
        first_line: int = 1,
    ) -> None:
        self._source = source
        self.first_line = first_line
        """The number of the source's first line: a part of a segment read on from a line."""
        self.path = path or str(
            getattr(source, "name", None) or getattr(source, "path", "<stream>")
        )
        self.strict = strict
        self.problems: list[ParseError] = []
        self.truncated = False
        self.samples = 0
        self._torn = b""
        self._benign: list[ParseError] = []

    @property
    def malformed(self) -> list[ParseError]:
        """The problems that are bad data.

        Left out: what a killed writer leaves (the torn last line, a reading cut short at the
        end) and what is about other files (a name another source gave another type).
        """
        if not self._benign:
            return self.problems
        benign = {id(p) for p in self._benign}
        return [p for p in self.problems if id(p) not in benign]

    def report(self, line: int, message: str, *, malformed: bool = True) -> None:
        """Record (or, when strict, raise) a problem found at ``line``, as the parser does.

        ``malformed=False`` marks a problem that is not the file's fault (see :attr:`malformed`);
        it is recorded, never raised.
        """
        error = ParseError(self.path, line, message)
        if not malformed:
            self._benign.append(error)
        elif self.strict:
            raise error
        self.problems.append(error)

    def _lines(self) -> Iterator[bytes | None]:
        read = getattr(self._source, "read", None)
        blocks: Iterator[bytes] = (
            iter(lambda: read(_BLOCK), b"") if read is not None else iter(self._source)
        )
        torn: list[bytes] = []
        yield from split_lines(blocks, torn)
        self._torn = torn[0] if torn else b""

    def __iter__(self) -> Iterator[Sample | Metadata]:  # noqa: PLR0912, PLR0915 - inlined hot loop
        sample_match = _SAMPLE.fullmatch
        label_cache: dict[str, tuple[tuple[str, str], ...]] = {}
        names: dict[str, str] = {}
        special = _SPECIAL
        series_cache = _SERIES_CACHE
        meta_name = prometheus_name  # lru-cached already
        problem = self.report
        number = self.first_line - 1
        samples = 0
        for raw in self._lines():
            number += 1
            if raw is None:
                problem(number, f"line longer than {MAX_LINE} bytes; skipped")
                continue
            if raw.endswith(b"\r"):
                problem(number, "CRLF line ending; segments use \\n only")
                continue
            try:
                line = raw.decode()
            except UnicodeDecodeError as e:
                problem(number, f"invalid UTF-8 at byte {e.start}")
                continue
            if not line or line[0] == "#" or line.isspace():
                if line.startswith(("# HELP ", "# TYPE ")):  # well-formed and plain: no regex
                    parts = line.split(" ", 3)
                    if len(parts) == 4 and parts[2].isidentifier():
                        kind, text = parts[1], parts[3]
                        if kind == "TYPE":
                            plain = text in _TYPES  # no blanks around it, a known type
                        else:
                            plain = text[:1] not in _BLANK and "\\" not in text
                        if plain:
                            yield Metadata(kind, meta_name(parts[2]), text, number)
                            continue
                meta = self._comment(line, number) if line[:1] == "#" else None
                if meta is not None:
                    yield meta
                continue
            parts = line.split(" ")
            if len(parts) == 3:  # fast path: a known series, one space apart, a timestamp
                key, value_text, ts_text = parts
                cached = series_cache.get(key)
                if (
                    cached is not None
                    and ts_text.isdigit()
                    and ts_text.isascii()
                    and len(ts_text) <= _MAX_TS_DIGITS
                ):
                    stamp = int(ts_text)
                    value = special.get(value_text)
                    if value is None and value_text[:1].strip() and value_text[-1:].strip():
                        try:
                            value = _float(value_text)
                        except ValueError:
                            value = None
                    if value is not None and stamp <= _MAX_TS:
                        samples += 1
                        yield Sample(cached[0], cached[1], value, stamp, number)
                        continue
                # anything else takes the full pattern, which reports what is wrong
            match = sample_match(line)
            if match is None:
                problem(number, f"not a sample line: {line[:80]!r}")
                continue
            name, label_text, value_text, ts_text = match.groups()
            value = special.get(value_text)
            if value is None:
                try:
                    value = _float(value_text)
                except ValueError:
                    problem(number, f"invalid value {value_text[:40]!r}")
                    continue
            timestamp = None
            if ts_text is not None:
                if not (ts_text.isdigit() and ts_text.isascii()):
                    problem(number, f"invalid timestamp {ts_text[:40]!r}: integer ms expected")
                    continue
                if len(ts_text) > _MAX_TS_DIGITS or int(ts_text) > _MAX_TS:
                    problem(number, f"timestamp {ts_text[:40]!r} is beyond int64 milliseconds")
                    continue
                timestamp = int(ts_text)
            labels: tuple[tuple[str, str], ...] | None = ()
            if label_text:
                labels = label_cache.get(label_text)
                if labels is None:
                    labels = self._labels(label_text, number)
                    if labels is None:
                        continue
                    if len(label_cache) < _LABEL_CACHE:
                        label_cache[label_text] = labels
            pname = names.get(name)
            if pname is None:
                pname = names[name] = prometheus_name(name)
            if ts_text is not None and len(series_cache) < _LABEL_CACHE:
                end = match.end(1) if label_text is None else match.end(2) + 1
                if end <= _SERIES_KEY_MAX and " " not in line[:end]:
                    series_cache[line[:end]] = (pname, labels or ())
            samples += 1
            yield Sample(pname, labels or (), value, timestamp, number)
        self.samples = samples
        if self._torn:
            self.truncated = True
            self.report(
                number + 1,
                "last line has no newline (writer stopped mid-line?); dropped",
                malformed=False,
            )

    def _comment(self, line: str, number: int) -> Metadata | None:
        meta = _META.fullmatch(line)
        if meta is None:
            if _END.fullmatch(line):
                return Metadata("END", "", "", number)
            return None  # a plain comment
        kind, name, text = meta[1], prometheus_name(meta[2]), meta[3] or ""
        if kind == "TYPE":
            if text.strip() not in _TYPES:
                self.report(number, f"unknown metric type {text.strip()!r} for {name}")
                return None
            return Metadata(kind, name, text.strip(), number)
        if kind == "MERGE":
            return self._merge(name, text, number)
        text = text.replace("\\\\", "\x00").replace("\\n", "\n").replace("\x00", "\\")
        return Metadata(kind, name, text, number)

    def _merge(self, name: str, text: str, number: int) -> Metadata | None:
        """A gauge's declared merge; an unknown one is reported, not fatal (a newer writer?)."""
        words = text.split()
        if words and words[0] in MERGE_MODES and words[1:] in ([], ["live"]):
            return Metadata("MERGE", name, " ".join(words), number)
        self.report(
            number,
            f"unknown merge declaration {text[:40]!r} for {name} (expected one of "
            f"{', '.join(MERGE_MODES)}, optionally followed by 'live'); serve's rules apply",
            malformed=False,
        )
        return None

    def _labels(self, text: str, number: int) -> tuple[tuple[str, str], ...] | None:
        pairs: dict[str, str] = {}
        pos, end = 0, len(text.rstrip(" \t"))
        while pos < end:
            m = _LABEL.match(text, pos)
            if m is None or (m[3] == "" and m.end() < end) or (m[3] == "," and m.end() > end):
                self.report(number, f"malformed label set {{{text[:80]}}}")
                return None
            key, value = m[1], m[2]
            if "\\" in value:
                value = _unescape(value)
            if key in pairs:
                self.report(number, f"label {key!r} is not unique")
                return None
            if key == "le":
                try:
                    le = _float(value)
                except ValueError:
                    le = math.nan
                if math.isnan(le):
                    self.report(number, f"le={value[:40]!r} is not a number")
                    return None
                value = format_le(le)
            pairs[key] = value
            pos = m.end()
        return tuple(sorted(pairs.items()))


def parse(
    source: BinaryIO | Iterable[bytes], *, path: str | None = None, strict: bool = False
) -> Parse:
    """Parse segment text lazily; see :class:`Parse` for how problems are reported."""
    return Parse(source, path=path, strict=strict)
