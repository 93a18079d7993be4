"""A frame as lines of text for a screen of a given size, and the curses loop that shows them.

:func:`render` is pure (a frame and a size in, lines out), so what a terminal shows is tested
as text; :func:`run_curses` only draws those lines and waits for keys.  Every section gets
rows in turn while any has rows left and the screen has room, so a thousand counters never
push the sources or the problems off the screen; a cut section says how many it shows.
Without a size (plain text, a pipe), nothing is cut.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .._daemon.logfmt import LOGGER
from .model import QUANTILES, Frame

if TYPE_CHECKING:
    import curses

__all__ = ["render", "run_curses"]

_RATE, _TOTAL, _Q, _AGE, _FILES, _STATE = 12, 14, 10, 9, 6, 8


@dataclass(slots=True)
class _Section:
    title: str
    header: str
    rows: list[str]
    shown: int = 0


def _number(x: float | None) -> str:
    """Short and exact where it can be: whole numbers whole, others to 4 significant digits."""
    if x is None:
        return "-"
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    if abs(x) >= 1000:
        return f"{x:.0f}" if abs(x) < 1e15 else f"{x:.4g}"
    return f"{x:.4g}"


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _cut(text: str, width: int | None) -> str:
    if width is None or len(text) <= width:
        return text
    return text[: max(0, width - 1)] + "…" if width > 0 else ""


Cells = Sequence[str]


def _table(
    title: str, head: Cells, rows: list[tuple[str, Cells]], sizes: Sequence[int], width: int | None
) -> _Section:
    """Names left, cells right-aligned in ``sizes``; a name is cut to fit, never a number."""
    longest = max(len(name) for name, _ in [(head[0], ()), *rows])
    room = longest if width is None else max(8, min(longest, width - 3 - sum(sizes) - len(sizes)))

    def line(name: str, cells: Cells) -> str:
        columns = "".join(f" {text:>{size}}" for text, size in zip(cells, sizes, strict=True))
        return _cut(f"  {_cut(name, room):<{room}}{columns}", width)

    return _Section(title, line(head[0], head[1:]), [line(n, c) for n, c in rows])


def _sections(frame: Frame, width: int | None) -> list[_Section]:
    q_names = [f"p{round(q * 100)}" for q in QUANTILES]
    sources = _table("SOURCES", ("source", "age", "files", "state"),
                     [(s.name, (_age(s.age_s), str(s.files), s.state.value))
                      for s in frame.sources], (_AGE, _FILES, _STATE), width)  # fmt: skip
    counters = _table("COUNTERS, busiest first", ("series", "rate/s", "total"),
                      [(str(c.key), (_number(c.rate), _number(c.value)))
                       for c in frame.counters], (_RATE, _TOTAL), width)  # fmt: skip
    histograms = _table(
        "HISTOGRAMS, quantiles over the window (* since start)",
        ("series", "events/s", *q_names),
        [(str(h.key), (_number(h.rate),
                       *(_number(v) + ("" if h.windowed else "*") for v in h.quantiles)))
         for h in frame.histograms],
        (_RATE, *(_Q for _ in q_names)), width,
    )  # fmt: skip
    gauges = _table("GAUGES", ("series", "value"),
                    [(str(g.key), (_number(g.value),)) for g in frame.gauges],
                    (_TOTAL,), width)  # fmt: skip
    problems = _Section("PROBLEMS", "", [_cut(f"  {p}", width) for p in frame.problems])
    return [s for s in (sources, counters, histograms, gauges, problems) if s.rows]


_PRIORITY = ("PROBLEMS", "COUNTERS", "SOURCES", "HISTOGRAMS", "GAUGES")
"""Who gets a row first when rows are scarce, and who leaves last when there are none."""


def _priority(section: _Section) -> int:
    return next(i for i, word in enumerate(_PRIORITY) if section.title.startswith(word))


def _share(sections: list[_Section], room: int) -> None:
    """Give each section rows in turn while it has rows left and there is room."""
    order = sorted(sections, key=_priority)
    while room > 0 and any(s.shown < len(s.rows) for s in order):  # bounded: room shrinks
        for section in order:
            if room > 0 and section.shown < len(section.rows):
                section.shown += 1
                room -= 1


def render(frame: Frame, width: int | None, height: int | None, *, title: str) -> list[str]:
    """The screen for ``frame``: a title line, then each section with its column header.

    ``width``/``height`` None: every row, nothing cut (plain text).  Otherwise at most
    ``height`` lines of at most ``width`` characters.
    """
    clock = datetime.fromtimestamp(frame.taken_ms / 1000, UTC).strftime("%H:%M:%S UTC")
    window = "rates: waiting for a second reading" if frame.window_s is None else (
        f"rates over {frame.window_s:.3g}s")  # fmt: skip
    lines = [_cut(f"biometrics top {title}  {clock}  {window}", width)]
    sections = _sections(frame, width)
    if height is None:
        for section in sections:
            section.shown = len(section.rows)
    while height is not None and sections:  # bounded: a section leaves each turn, or it ends
        for section in sections:
            section.shown = 0
        _share(sections, height - 1 - sum(2 if s.header else 1 for s in sections))
        empty = [s for s in sections if not s.shown]
        if not empty:
            break
        sections.remove(max(empty, key=_priority))  # no room for a row: its lines go to others
    for section in sections:
        count = len(section.rows)
        shown = f"{count}" if section.shown == count else f"{section.shown} of {count} shown"
        lines.append(_cut(f"{section.title} ({shown})", width))
        if section.header:
            lines.append(_cut(section.header, width))
        lines.extend(section.rows[: section.shown])
    return lines if height is None else lines[: max(0, height)]


class _Kept(logging.Handler):
    """The library's log lines while curses owns the screen: shown as problems, not printed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[str] = deque(maxlen=5)

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", {})
        detail = " ".join(f"{k}={v}" for k, v in fields.items())
        self.lines.append(f"log: {record.getMessage()} {detail}".rstrip())


def run_curses(
    next_frame: Callable[[], Frame], *, title: str, interval: float, stop: threading.Event
) -> int:
    """Show a frame every ``interval`` seconds until q (exit 0), Ctrl-C or ``stop``.

    A key is answered at once (q quits, any other redraws); a resize redraws at the new size.
    """
    import curses  # noqa: PLC0415 - only a terminal needs it (and Windows has none)

    kept = _Kept()
    handlers, propagate = LOGGER.handlers[:], LOGGER.propagate
    LOGGER.handlers[:], LOGGER.propagate = [kept], False

    def loop(screen: curses.window) -> int:
        with contextlib.suppress(curses.error):  # a terminal that cannot hide it still works
            curses.curs_set(0)
        frame = next_frame()
        due = time.monotonic() + interval
        while not stop.is_set():  # bounded by q, Ctrl-C or ``stop``: one turn a key or a tick
            height, width = screen.getmaxyx()
            shown = Frame(frame.taken_ms, frame.window_s, frame.counters, frame.histograms,
                          frame.gauges, frame.sources, (*frame.problems, *kept.lines))  # fmt: skip
            _draw(screen, render(shown, width - 1, height, title=title))
            screen.timeout(max(0, min(250, int((due - time.monotonic()) * 1000))))
            key = screen.getch()
            if key in (ord("q"), ord("Q")):
                return 0
            if time.monotonic() >= due:
                frame = next_frame()
                due = max(
                    due + interval, time.monotonic() + interval / 2
                )  # a slow read: still a pause
        return 0

    try:
        return int(curses.wrapper(loop))
    finally:
        LOGGER.handlers[:], LOGGER.propagate = handlers, propagate


def _draw(screen: curses.window, lines: list[str]) -> None:
    import curses  # noqa: PLC0415

    screen.erase()
    for y, line in enumerate(lines):
        try:
            screen.addstr(y, 0, line)
        except curses.error:
            break  # the last cell of the screen, or a resize under way: the rest waits
    screen.refresh()
