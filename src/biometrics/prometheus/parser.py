"""Streaming parser for segment text: Prometheus 0.0.4 lines with millisecond timestamps.

Reads line by line with a length cap, so memory stays flat in file size.  Accepts what the Rust
crate wrote over its versions: dotted names (normalised to Prometheus names, as our emitters
write them), repeated ``# TYPE`` lines, Rust float spellings (``inf``, ``-inf``, ``NaN``), and
histogram bounds such as ``le="1.0000"`` (normalised to our one rendering of each bound).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import ParseError
from ._text import format_le, prometheus_name

__all__ = ["Metadata", "Parse", "Sample", "parse"]

MAX_LINE = 1 << 20
"""Longest line accepted (1 MiB); longer ones are reported and skipped, never buffered whole."""

_SAMPLE = re.compile(
    r"([a-zA-Z_:.][a-zA-Z0-9_:.]*)[ \t]*"
    r"(?:\{((?:[^\"}]|\"(?:[^\"\\]|\\.)*\")*)\})?"
    r"[ \t]+(\S+)(?:[ \t]+(\S+))?[ \t]*"
)
_LABEL = re.compile(
    r"[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*\"((?:[^\"\\]|\\.)*)\"[ \t]*(,|\Z)"
)
_META = re.compile(r"#[ \t]+(HELP|TYPE)[ \t]+([a-zA-Z_:.][a-zA-Z0-9_:.]*)(?:[ \t]+(.*))?")
_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped", "unknown"})
_ESCAPES = re.compile(r"\\(.)")
_SPECIAL = {"+Inf": float("inf"), "-Inf": float("-inf"), "inf": float("inf"),
            "-inf": float("-inf"), "+inf": float("inf"), "NaN": float("nan"),
            "nan": float("nan"), "Inf": float("inf")}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Sample:
    """One timestamped sample.  ``labels`` are (name, value) pairs sorted by name."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp_ms: int | None
    line: int


@dataclass(frozen=True, slots=True)
class Metadata:
    """A ``# HELP`` or ``# TYPE`` line; ``kind`` is ``"HELP"`` or ``"TYPE"``."""

    kind: str
    name: str
    text: str
    line: int


def _unescape(value: str) -> str:
    return _ESCAPES.sub(lambda m: "\n" if m[1] == "n" else m[1], value)


def _float(text: str) -> float:
    special = _SPECIAL.get(text)
    if special is not None:
        return special
    if "_" in text or text[:1].isalpha() or "x" in text or "X" in text:
        raise ValueError(text)
    return float(text)


class Parse:
    r"""Iterate to get :class:`Sample` and :class:`Metadata` items in file order.

    Malformed lines are recorded in ``problems`` (each a :class:`ParseError` with path and line)
    and skipped, so one bad line loses nothing else; with ``strict=True`` the first one raises
    instead.  A final line without ``\\n`` (a writer killed mid-line) is always only recorded,
    with ``truncated`` set: it is dropped, never fatal.
    """

    def __init__(
        self, source: BinaryIO | Iterable[bytes], *, path: str | None = None, strict: bool = False
    ) -> None:
        self._source = source
        self.path = path or str(
            getattr(source, "name", None) or getattr(source, "path", "<stream>")
        )
        self.strict = strict
        self.problems: list[ParseError] = []
        self.truncated = False
        self.lines = 0

    def _problem(self, line: int, message: str) -> None:
        error = ParseError(self.path, line, message)
        if self.strict:
            raise error
        self.problems.append(error)

    def _lines(self) -> Iterator[bytes]:
        readline = getattr(self._source, "readline", None)
        if readline is None:
            yield from self._source
            return
        while True:
            raw: bytes = readline(MAX_LINE + 1)
            if not raw:
                return
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest without keeping it
                    raw = readline(MAX_LINE)
                yield b"\x00" * MAX_LINE + b"\n"  # marks the skipped line
                continue
            yield raw

    def __iter__(self) -> Iterator[Sample | Metadata]:
        number = 0
        for raw in self._lines():
            number += 1
            self.lines = number
            if not raw.endswith(b"\n"):
                self.truncated = True
                self.problems.append(
                    ParseError(
                        self.path,
                        number,
                        "last line has no newline (writer stopped mid-line?); dropped",
                    )
                )
                return
            if len(raw) > MAX_LINE:
                self._problem(number, f"line longer than {MAX_LINE} bytes; skipped")
                continue
            if raw.endswith(b"\r\n"):
                self._problem(number, "CRLF line ending; segments use \\n only")
                continue
            try:
                line = raw[:-1].decode()
            except UnicodeDecodeError as e:
                self._problem(number, f"invalid UTF-8 at byte {e.start}")
                continue
            item = self._line(line, number)
            if item is not None:
                yield item

    def _line(self, line: str, number: int) -> Sample | Metadata | None:  # noqa: PLR0911
        if not line or line.isspace():
            return None
        if line[0] == "#":
            meta = _META.fullmatch(line)
            if meta is None:
                return None  # plain comment
            kind, name, text = meta[1], prometheus_name(meta[2]), meta[3] or ""
            if kind == "TYPE" and text.strip() not in _TYPES:
                self._problem(number, f"unknown metric type {text.strip()!r} for {name}")
                return None
            if kind == "HELP":
                text = text.replace("\\\\", "\x00").replace("\\n", "\n").replace("\x00", "\\")
            return Metadata(kind, name, text.strip() if kind == "TYPE" else text, number)
        match = _SAMPLE.fullmatch(line)
        if match is None:
            self._problem(number, f"not a sample line: {line[:80]!r}")
            return None
        name, label_text, value_text, ts_text = match.groups()
        try:
            value = _float(value_text)
        except ValueError:
            self._problem(number, f"invalid value {value_text[:40]!r}")
            return None
        timestamp = None
        if ts_text is not None:
            if not ts_text.isdigit() or not ts_text.isascii():
                self._problem(number, f"invalid timestamp {ts_text[:40]!r}: integer ms expected")
                return None
            timestamp = int(ts_text)
        labels: tuple[tuple[str, str], ...] = ()
        if label_text and not label_text.isspace():
            parsed = self._labels(label_text, number)
            if parsed is None:
                return None
            labels = parsed
        return Sample(prometheus_name(name), labels, value, timestamp, number)

    def _labels(self, text: str, number: int) -> tuple[tuple[str, str], ...] | None:
        pairs: dict[str, str] = {}
        pos, end = 0, len(text.rstrip(" \t"))
        while pos < end:
            m = _LABEL.match(text, pos)
            if m is None or (m[3] == "" and m.end() < end):
                self._problem(number, f"malformed label set {{{text[:80]}}}")
                return None
            key, value = m[1], m[2]
            if "\\" in value:
                value = _unescape(value)
            if key in pairs:
                self._problem(number, f"label {key!r} is not unique")
                return None
            if key == "le":
                try:
                    value = format_le(_float(value))
                except ValueError:
                    self._problem(number, f"le={value[:40]!r} is not a number")
                    return None
            pairs[key] = value
            pos = m.end()
        return tuple(sorted(pairs.items()))


def parse(
    source: BinaryIO | Iterable[bytes], *, path: str | None = None, strict: bool = False
) -> Parse:
    """Parse segment text lazily; see :class:`Parse` for how problems are reported."""
    return Parse(source, path=path, strict=strict)
