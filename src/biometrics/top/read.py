"""Where ``top``'s snapshots come from: a spool, read without touching it, or a ``/metrics`` URL.

A spool is folded into a :class:`~biometrics.exporter.Store` of our own, kept for the whole
session, the way ``serve`` folds it: each source's segments oldest first, a segment its writer
still holds only up to its last ``# EMITTED`` line (what follows is an emission under way), a
finished one whole.  Nothing is claimed, locked, moved or deleted, so ``serve`` and the writers
run as if we were not there.  Keeping the store matters when ``serve`` runs too: it consumes
finished segments, and a count that left the spool must not leave our totals (a rate would
go negative); per source and series the store takes only newer readings, so reading a segment
again is harmless.  Each refresh reads only what segments gained since the last one.
"""

from __future__ import annotations

import errno
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from ..errors import BiometricsError
from ..exporter import Store
from ..prometheus import TEXT_CONTENT_TYPE, source_of
from ..prometheus.segments import EMITTED, END_LINE, whole_end
from ..prometheus.watcher import SUFFIX
from .model import Snapshot, SourceInfo, snapshot_from_page

__all__ = ["SpoolReader", "fetch_snapshot"]

_STAMP = re.compile(rb"# EMITTED ([0-9]{1,19})\n")
_KEPT_PROBLEMS = 20
"""Problems remembered per segment: the first ones say what is wrong."""
_MAX_PAGE = 256 << 20
_CHUNK = 1 << 20
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(slots=True)
class _File:
    """How far one segment was read, and what that part said."""

    ino: int
    offset: int = 0
    line: int = 1
    size: int = -1
    mtime_ns: int = 0
    marked: bool = False
    """Its writer ends emissions with markers: only up to the last one is whole."""
    types: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Source:
    last_ms: int = 0
    files: int = 0
    ended: bool = False
    newest_file_ms: int = 0


class SpoolReader:
    """Snapshots of a spool as ``serve`` would merge it; see the module docstring.

    ``forget_after_ms``: a source with no segment left and no emission for that long leaves
    the source list (its series stay, as in ``serve``), so a long session stays bounded.
    """

    def __init__(self, spool: str | os.PathLike[str], *, forget_after_ms: int = 3_600_000) -> None:
        self.spool = os.fspath(spool)
        self.forget_after_ms = forget_after_ms
        self.store = Store()
        self._files: dict[str, _File] = {}
        self._sources: dict[str, _Source] = {}
        self._listed = False

    def read(self, now_ms: int) -> Snapshot:
        """Fold in what the spool gained and take a snapshot; an unreadable spool is a problem.

        Raises :class:`~biometrics.errors.BiometricsError` only if the spool is not a directory
        at all, so a typo fails at once while a spool that vanishes later shows as a problem.
        """
        problems: list[str] = []
        try:
            with os.scandir(self.spool) as entries:
                names = [e.name for e in entries if e.name.endswith(SUFFIX) and e.name[0] != "."]
        except OSError as e:
            if not self._listed:
                raise BiometricsError(f"{self.spool}: {e.strerror or e}") from e
            names = []
            problems.append(f"cannot list {self.spool}: {e.strerror or e}")
        self._listed = True
        named = sorted((found, n) for n in names if (found := source_of(n)) is not None)
        for book in self._sources.values():
            book.files = 0
        for (source, ms), name in named:
            self._read_file(source, ms, name)
        listed = {name for _, name in named}
        self._files = {n: f for n, f in self._files.items() if n in listed}
        for _, record in sorted(self._files.items()):
            problems.extend(record.problems)
        problems.extend(self._quarantined())
        unnamed = len(names) - len(named)
        if unnamed:
            problems.append(f"{unnamed} file(s) named *.prom without a time: serve quarantines "
                            "them")  # fmt: skip
        self._forget(now_ms)
        sources = tuple(SourceInfo(n, s.last_ms, s.files, s.ended)
                        for n, s in sorted(self._sources.items()))  # fmt: skip
        return snapshot_from_page(self.store.page(), now_ms, sources=sources, problems=problems)

    def _read_file(self, source: str, name_ms: int, name: str) -> None:
        book = self._sources.setdefault(source, _Source())
        book.files += 1
        if name_ms > book.newest_file_ms:
            book.newest_file_ms, book.ended = name_ms, False
            book.last_ms = max(book.last_ms, name_ms)
        path = os.path.join(self.spool, name)
        try:
            fd = os.open(path, _FLAGS)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ELOOP, errno.ENXIO):
                self._note(name, f"{path}:0: cannot open ({e.strerror}); skipped")
            return  # consumed meanwhile, or not a regular file (never read through a link)
        try:
            st = os.fstat(fd)
            record = self._files.get(name)
            if record is None or record.ino != st.st_ino or st.st_size < record.offset:
                record = self._files[name] = _File(st.st_ino)
            if (st.st_size, st.st_mtime_ns) == (record.size, record.mtime_ns):
                return
            record.size, record.mtime_ns = st.st_size, st.st_mtime_ns
            want = st.st_size - record.offset
            data = _pread_all(fd, min(want, MAX_READ), record.offset)
        except OSError as e:
            self._note(name, f"{path}:0: cannot read ({e.strerror}); skipped")
            return
        finally:
            os.close(fd)
        if want > MAX_READ:  # the rest at the next refresh, unless nothing whole came of this
            record.size = -1
        cut = self._fold(source, name_ms, path, record=record, data=data, book=book)
        if want > MAX_READ and not cut:
            record.size = st.st_size  # left until the file changes: never read in a loop
            self._note(name, f"{path}:{record.line}: no whole emission in {MAX_READ} bytes; "
                       "the rest of this segment is not shown")  # fmt: skip

    def _fold(
        self, source: str, name_ms: int, path: str, *, record: _File, data: bytes, book: _Source
    ) -> int:
        """Fold the whole emissions of ``data`` (what follows ``record.offset``); bytes taken."""
        record.marked = record.marked or EMITTED in data
        if record.marked:
            cut = whole_end(data, at_line_start=True)
            if data[cut:] == END_LINE:
                cut = len(data)
        else:  # another writer's (the Rust crate's), written whole: up to its last line
            cut = data.rfind(b"\n") + 1
        if not cut:
            return 0
        part = data[:cut]
        parsed = self.store.ingest_bytes(source, part, name_ms, path=path,
                                         first_line=record.line, types=record.types)  # fmt: skip
        record.offset += cut
        record.line += part.count(b"\n")
        room = _KEPT_PROBLEMS - len(record.problems)
        record.problems += [str(p) for p in parsed.problems[: max(0, room)]]
        stamps = _STAMP.findall(part[-64:]) or _STAMP.findall(part)
        if stamps:
            book.last_ms = max(book.last_ms, int(stamps[-1]))
        if name_ms >= book.newest_file_ms:
            book.ended = part.endswith(END_LINE)
        return cut

    def _note(self, name: str, problem: str) -> None:
        record = self._files.setdefault(name, _File(-1))
        if problem not in record.problems and len(record.problems) < _KEPT_PROBLEMS:
            record.problems.append(problem)

    def _quarantined(self) -> list[str]:
        """A line if ``serve`` quarantined segments here: each has a ``.error`` saying why."""
        where = os.path.join(self.spool, "quarantine")
        try:
            count = sum(1 for n in os.listdir(where) if n.endswith(SUFFIX))
        except OSError:
            return []
        return [f"{count} segment(s) in {where} (see their .error files)"] if count else []

    def _forget(self, now_ms: int) -> None:
        cutoff = now_ms - self.forget_after_ms
        self._sources = {n: s for n, s in self._sources.items()
                         if s.files or s.last_ms >= cutoff}  # fmt: skip


MAX_READ = 64 << 20
"""Bytes read of one segment per refresh: a huge segment is read over several, never whole."""


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < size:  # bounded: every turn reads at least one byte, or stops
        part = os.pread(fd, size - got, offset + got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _read_by(answer: http.client.HTTPResponse, deadline: float) -> bytes:
    """The body, at most ``_MAX_PAGE + 1`` bytes, read by ``deadline``.

    The socket timeout bounds each read only: a server that sends a byte now and then would
    otherwise hold the view (and its q key) for as long as it likes.
    """
    parts: list[bytes] = []
    got = 0
    while got <= _MAX_PAGE:  # bounded: each turn reads a byte or more, or stops
        if time.monotonic() > deadline:
            raise TimeoutError
        part = answer.read1(min(_CHUNK, _MAX_PAGE + 1 - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def fetch_snapshot(url: str, now_ms: int, *, timeout: float = 10.0) -> Snapshot:
    """GET ``url`` (a ``/metrics`` page, 0.0.4 asked for) as a snapshot, within ``timeout``.

    A failure is a :class:`~biometrics.errors.BiometricsError` saying why, in one line.  A page
    has no sources; ``serve``'s ``biometrics_exporter_sources`` says how many it holds.
    """
    request = urllib.request.Request(url, headers={"Accept": TEXT_CONTENT_TYPE})
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = _read_by(answer, deadline)
    except TimeoutError as e:
        raise BiometricsError(f"GET {url}: no whole page within {timeout:g} s") from e
    except urllib.error.HTTPError as e:
        raise BiometricsError(f"GET {url}: HTTP {e.code} {e.reason}") from e
    except (OSError, ValueError) as e:  # URLError, timeouts, refused, a malformed URL
        why = getattr(e, "reason", None) or e
        raise BiometricsError(f"GET {url}: {why}") from e
    if len(body) > _MAX_PAGE:
        raise BiometricsError(f"GET {url}: page larger than {_MAX_PAGE >> 20} MiB")
    return snapshot_from_page(body, now_ms, path=url)
