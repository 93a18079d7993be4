"""Tailing: the whole emissions of segments their writers still hold, on the page one poll later.

A writer keeps a segment open (locked) across emissions for up to a minute and ends every
emission with ``# EMITTED <stamp>``; everything up to and including the last such line is whole
and will never change.  Waiting for the segment to be finished would keep a count off the
page for that minute, so each ingest pass folds the bytes between what it already took and the
end of the last complete marker line.  A segment without markers (the Rust crate, an older
writer) is never folded before it is finished, as before.

What is remembered, per open segment and in memory only: its identity, how far it was folded
(bytes and lines, so problems name the right line), how far it was searched for a marker, and
the first problems its folded part had.  When the segment is finished the daemon journals the
whole file, as ever, and folds only what follows (:meth:`Tailer.finish`).

Crash safety needs nothing more.  Tailed bytes are not journaled: the segment file still holds
them, and the daemon deletes a segment only once all of it is journaled and the journal synced.
After a restart the open segment is read again from its start (nothing of it is remembered);
each of its readings is either in the snapshot (a checkpoint taken after it was tailed) and a
no-op, since per source and series only a newer reading counts, or not, and taken now.  A
finished segment is journaled whole, its tailed part included, so replaying the journal over a
snapshot that already holds that part repeats it as no-ops, exactly as the live daemon did.
Order is kept too: a checkpoint empties the journal, so everything journaled was folded after
everything in the snapshot, and a pass takes a writer's finished segment (older, so listed
first) before it tails the writer's next one, so tailing never puts a source's newer readings
in the store ahead of older ones still to come.

Bounds, against a writer that keeps its file locked forever, grows it, truncates or replaces it:
a pass reads at most its remaining batch bytes, and one part folded is at most a batch;
nothing past the size seen when the segment was opened is read; a segment that did not change
since the last pass (size and mtime, from the claim's ``fstat``) costs no read; bytes already
searched for a marker are not searched again; a file that shrank below what was folded, is
another inode under the same name, or no longer holds the bytes last folded just before the
offset, is read again from its start (a no-op for what was already taken), said once; records
go with their files, so there are never more than the spool has segments.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .._daemon.consumer import Writing
from .._daemon.logfmt import log
from ..errors import ParseError
from ..prometheus.segments import MAX_MARKER_LINE, whole_end
from .selfmetrics import ExporterMetrics
from .store import Store

__all__ = ["Rest", "Tailed", "Tailer"]

KEPT_PROBLEMS = 100
"""Problems of a segment's folded part kept for its quarantine sidecar (all are counted)."""


def _still_holds(fd: int, record: _Open) -> bool:
    """Whether the file still has, just before ``record.offset``, the bytes last folded."""
    last = record.last
    return not last or os.pread(fd, len(last), record.offset - len(last)) == last


@dataclass(slots=True)
class _Open:
    """What has been taken of one open segment."""

    dev: int
    ino: int
    offset: int = 0
    """Bytes folded: the end of the last whole emission taken."""
    line: int = 1
    """The number of the line that starts at ``offset``."""
    scanned: int = 0
    """Bytes searched for a marker (at least ``offset``): never searched again."""
    problems: list[ParseError] = field(default_factory=list)
    """The first :data:`KEPT_PROBLEMS` problems of the folded part, for the sidecar."""
    malformed: int = 0
    """Malformed lines in the folded part: the segment is quarantined once finished."""
    last: bytes = b""
    """The last bytes folded (the marker line): the file must still hold them to be read on."""
    mtime_ns: int = 0
    """The modification time last seen: a file rewritten without growing changes it."""
    said: set[str] = field(default_factory=set)
    """What was logged about this segment already (each said once)."""
    types: dict[str, str] = field(default_factory=dict)
    """The TYPE lines of the folded part: they still declare for the parts that follow."""


@dataclass(frozen=True, slots=True)
class Tailed:
    """What tailing one open segment cost a pass: bytes read (its budget) and bytes folded."""

    read: int = 0
    folded: int = 0
    cut: bool = False
    """The budget ran out before the end of what there was to read: more is waiting."""


_NOTHING = Tailed()
_CUT = Tailed(cut=True)


@dataclass(frozen=True, slots=True)
class Rest:
    """Where a finished segment's unread part starts, and what the part read while open held."""

    offset: int = 0
    line: int = 1
    problems: tuple[ParseError, ...] = ()
    malformed: int = 0
    types: dict[str, str] | None = None
    """The TYPE lines of the part read while open, for the rest."""


class Tailer:
    """Folds the finished emissions of open segments into the store; see the module docstring."""

    def __init__(self, store: Store, metrics: ExporterMetrics, batch_bytes: int) -> None:
        self._store = store
        self._metrics = metrics
        self._batch_bytes = batch_bytes
        self._open: dict[str, _Open] = {}

    def __len__(self) -> int:
        return len(self._open)

    def prune(self, candidates: Iterable[str]) -> None:
        """Forget the segments no longer listed (gone, moved away).

        So records never outnumber the spool's segments, whatever writers do.
        """
        if self._open:
            listed = set(candidates)
            self._open = {p: r for p, r in self._open.items() if p in listed}

    def tail(self, segment: Writing, budget: int) -> Tailed:
        """Fold ``segment``'s whole emissions not yet taken, reading at most ``budget`` bytes.

        Never raises for the file: a read error is logged once, and the segment is left to be
        read when finished.
        """
        held, path = segment.held, segment.path
        st = held.stat
        record = self._open.get(path)
        if record is None:
            record = self._open[path] = _Open(st.st_dev, st.st_ino)
        elif (record.dev, record.ino) != (st.st_dev, st.st_ino) or st.st_size < record.offset:
            record = self._rewind(path, record, st)
        record.scanned = min(record.scanned, st.st_size)
        touched, record.mtime_ns = st.st_mtime_ns != record.mtime_ns, st.st_mtime_ns
        if st.st_size <= record.scanned and not touched:
            return _NOTHING  # nothing new since the last pass: the claim's fstat was all it cost
        try:
            if not _still_holds(held.fd, record):
                record = self._rewind(path, record, st)  # rewritten, or a reused inode number
            return self._read_on(segment, record, budget)
        except OSError as e:
            self._say(record, path, "unreadable", logging.WARNING,
                      "cannot read open segment; it is read when finished",
                      error=e.strerror or str(e))  # fmt: skip
            return _NOTHING

    def _read_on(self, segment: Writing, record: _Open, budget: int) -> Tailed:
        """Fold what follows ``record.offset``, within ``budget`` and a batch; may raise OSError."""
        size = segment.held.stat.st_size
        if size <= record.scanned:
            return _NOTHING
        limit = record.offset + self._batch_bytes  # a part is never larger than a batch
        if record.scanned >= limit:
            self._say(record, segment.path, "too big", logging.WARNING,
                      "an emission in an open segment is larger than --batch-bytes; "
                      "it is read when the segment is finished",
                      read=record.offset, batch_bytes=self._batch_bytes)  # fmt: skip
            return _NOTHING
        start = max(record.offset, record.scanned - MAX_MARKER_LINE)
        end = min(size, limit, start + budget)
        if end <= record.scanned:
            return _CUT  # too little of this pass's budget left: the next pass goes on
        taken = self._take(segment, record, start, end)
        return replace(taken, cut=True) if end < min(size, limit) else taken

    def _take(self, segment: Writing, record: _Open, start: int, end: int) -> Tailed:
        held = segment.held
        window = held.pread(end - start, start)
        cut = whole_end(window, at_line_start=start == record.offset)
        record.scanned = start + len(window)
        if not cut:
            return Tailed(read=len(window))
        data = window[:cut]
        if start > record.offset:  # part of it was searched before: read that part again
            data = held.pread(start - record.offset, record.offset) + data
            if len(data) != start - record.offset + cut:
                record.scanned = record.offset  # cut short meanwhile: the next pass sees how
                return Tailed(read=len(data) - cut + len(window))
        parsed = self._store.ingest_bytes(segment.source, data, segment.default_ms,
                                          path=segment.path, first_line=record.line,
                                          types=record.types)  # fmt: skip
        record.offset += len(data)
        record.line += data.count(b"\n")
        record.last = data[-MAX_MARKER_LINE:]
        self._metrics.samples.count(parsed.samples)
        problems = parsed.problems
        if problems:
            self._metrics.parse_errors.count(len(problems))
            malformed = len(parsed.malformed)
            record.malformed += malformed
            room = KEPT_PROBLEMS - len(record.problems)
            record.problems += problems[: max(0, room)]
            self._say(record, segment.path, "problems",
                      logging.WARNING if malformed else logging.INFO,
                      "open segment has lines with problems; counted, the other lines were "
                      "ingested" + ("; it is quarantined when finished" if malformed else ""),
                      problems=len(problems), first_problem=str(problems[0]))  # fmt: skip
        return Tailed(read=len(window) + len(data) - cut, folded=len(data))

    def _rewind(self, path: str, record: _Open, st: os.stat_result) -> _Open:
        """Start ``path`` afresh: it is no longer what was read (said once per path)."""
        self._say(record, path, "rewound", logging.WARNING,
                  "open segment replaced, rewritten or cut short; reading it again from its "
                  "start (readings already taken are not counted twice)",
                  size=st.st_size, read=record.offset)  # fmt: skip
        fresh = _Open(st.st_dev, st.st_ino, mtime_ns=st.st_mtime_ns, said=record.said)
        self._open[path] = fresh
        return fresh

    def finish(self, path: str, fd: int, st: os.stat_result) -> Rest:
        """What of the claimed, finished ``path`` (open as ``fd``) was already folded; forgets it.

        Only if the claim holds the very file that was tailed, at least as long and still
        holding what was read last: otherwise the whole file is to be read (what was taken
        from it is a no-op the second time).
        """
        record = self._open.pop(path, None)
        if (
            record is None
            or (record.dev, record.ino) != (st.st_dev, st.st_ino)
            or st.st_size < record.offset
            or not _still_holds(fd, record)
        ):
            return Rest()
        return Rest(record.offset, record.line, tuple(record.problems), record.malformed,
                    record.types)  # fmt: skip

    def _say(
        self, record: _Open, path: str, what: str, level: int, message: str, **fields: object
    ) -> None:
        if what not in record.said:
            record.said.add(what)
            log(level, message, path=path, **fields)
