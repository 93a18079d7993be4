"""Durable state: a snapshot of the store plus a journal of the segments consumed since.

A consumed segment's bytes are appended to the journal and fsynced *before* the segment leaves
the spool, so at every instant each reading is in the spool, the journal or the snapshot.
Recovery loads the snapshot and re-ingests the journal; re-ingesting is idempotent (readings no
newer than a source's last are ignored), so a crash between any two steps, even between writing
a snapshot and emptying the journal, double-counts nothing.  A checkpoint writes the snapshot to
a temporary file, fsyncs it, renames it over the old one, fsyncs the directory, then empties the
journal.

Appends are all-or-nothing: the journal is written with raw ``os.write``/``os.sendfile`` (no
Python buffer can hold a header back and write it later), the end of the last whole record is
tracked here, and any failure cuts the file back to it.  A failed fsync cuts back to the last
synced record, so the caller keeps that batch's segments in the spool.  Whatever is found past
the last whole record at start-up (a kill mid-append, a disk that lied) is cut off and logged.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .._daemon.logfmt import log
from .._daemon.safe_open import lock_state_at, open_dir, open_file_at, write_all
from ..errors import SegmentError, StateError, UnsafeFileError
from .snapshot import STATE_FORMAT, STATE_VERSION
from .store import Store

__all__ = ["DurableState"]

_MAGIC = b"#@biometrics-journal "
_MAX_SIZE_DIGITS = 19  # any record size up to 2**63 - 1; longer is garbage, not a size
_MAX_HEADER = len(_MAGIC) + _MAX_SIZE_DIGITS + 1 + 4096 + 1  # a file name is <= 255 bytes
_HINT = "remove it, or point --state at a directory of its own"


def _unreadable(fd: int, offset: int) -> bool:
    """True if the segment itself fails at ``offset`` (sendfile's errors do not say which side)."""
    try:
        return not os.pread(fd, 1, offset)
    except OSError:
        return True


def _parse_header(header: bytes, remaining: int) -> tuple[str, int] | str:
    """``(name, size)`` of a whole header line followed by ``remaining`` bytes, or why not."""
    if not header.endswith(b"\n"):  # cut at the end of the file, or over-long
        torn = len(header) < _MAX_HEADER and _MAGIC.startswith(header[: len(_MAGIC)])
        return (
            "torn header (the file ends inside it)"
            if torn
            else f"bad header (not a record header, or none within {_MAX_HEADER} bytes)"
        )
    if not header.startswith(_MAGIC):
        return "bad header (no journal magic)"
    field, sep, name = header[len(_MAGIC) : -1].partition(b" ")
    if not sep or not name:
        return "bad header (no segment name)"
    if not field.isdigit() or len(field) > _MAX_SIZE_DIGITS:
        return f"bad size ({field[:24]!r} is not a byte count)"
    size = int(field)
    if size > remaining:
        return f"short record ({remaining} of its {size} bytes)"
    return name.decode(errors="replace"), size


@dataclass
class _Walk:
    """How far a walk over a journal got: ``records`` whole records end at ``good``."""

    good: int = 0
    records: int = 0
    stopped: str | None = None
    """Why the walk stopped before the end it was given; None if it got there."""


def _walk(f: BinaryIO, end: int, walk: _Walk, *, read: bool) -> Iterator[tuple[str, bytes]]:
    """Each whole record of ``f`` before ``end`` (its bytes only if ``read``); fills ``walk``.

    A record's size is checked against the bytes left before anything is read, so a garbage
    size field never causes a giant read.
    """
    while walk.good < end:  # bounded: every turn moves ``good`` forward or returns
        f.seek(walk.good)
        header = f.readline(_MAX_HEADER)
        parsed = _parse_header(header, end - walk.good - len(header))
        if isinstance(parsed, str):
            walk.stopped = parsed
            return
        name, size = parsed
        data = f.read(size) if read else b""
        if read and len(data) != size:
            walk.stopped = f"short record (the file shrank while read: {len(data)} of {size})"
            return
        walk.good += len(header) + size
        walk.records += 1
        yield name, data


class DurableState:
    """The files ``PATH`` (snapshot), ``PATH.journal`` and ``PATH.lock`` (one daemon only)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.journal_path = self.path + ".journal"
        self.lock_path = self.path + ".lock"
        self._directory, self._name = os.path.split(self.path)
        self._dir_fd: int | None = None
        """The state directory, opened without following links; every file is opened in it."""
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._end = 0
        """End of the last whole record: the file holds nothing else we will keep."""
        self._synced = 0
        """End of the last record an fsync made durable; a failed fsync cuts back to it."""
        self._overhang = False
        """The file may hold bytes past ``_end`` (a cut-back failed); cut before writing."""

    @property
    def journal_bytes(self) -> int:
        """Bytes in the journal now (what a checkpoint would fold into the snapshot)."""
        return 0 if self._fd is None else self._end

    def open(self) -> None:
        """Take the lock, cut any damaged tail off the journal, and open it for appending.

        The tail is cut here rather than during :meth:`replay` so that no append can ever land
        after garbage, where a later replay would never reach it.  The directory (by default
        in the spool, where anyone may plant a link) is opened without following links, and
        each file in it relative to it, never through a link nor one with other hard links.
        """
        directory = self._directory or "."
        try:
            self._dir_fd = open_dir(directory, create=True, hint=_HINT)
        except OSError as e:
            raise StateError(e.errno, f"cannot use state directory {directory}: "
                             f"{e.strerror}", directory) from e  # fmt: skip
        try:
            self._lock_fd = lock_state_at(
                self._dir_fd, self._name + ".lock", self.lock_path, f"state {self.path}",
                "give this one its own --state",
            )  # fmt: skip
        except BaseException:
            self.close()
            raise
        try:
            # Not O_APPEND: sendfile() refuses to write to append-mode files.
            self._fd = open_file_at(self._dir_fd, self._name + ".journal",
                                    os.O_RDWR | os.O_CREAT, self.journal_path, _HINT)  # fmt: skip
            size = os.fstat(self._fd).st_size
            walk = _Walk()
            with self._read_journal() as f:
                for _ in _walk(f, size, walk, read=False):
                    pass
            if walk.stopped is not None:
                self._log_cut(walk, size, "journal tail cut")
                os.ftruncate(self._fd, walk.good)
            self._end = self._synced = walk.good
            os.lseek(self._fd, self._end, os.SEEK_SET)
        except OSError as e:
            self.close()
            raise StateError(e.errno, f"cannot open journal {self.journal_path}: {e.strerror}; "
                             "check the state volume", self.journal_path) from e  # fmt: skip

    def _read_journal(self) -> BinaryIO:
        """The journal for reading: its own file offset, and the very file ``_fd`` holds.

        Opened relative to the state directory without following links, then checked to be
        the same file, so a name swapped meanwhile is never read instead.
        """
        assert self._dir_fd is not None and self._fd is not None
        fd = open_file_at(self._dir_fd, self._name + ".journal", os.O_RDONLY,
                          self.journal_path, _HINT)  # fmt: skip
        if not os.path.samestat(os.fstat(fd), os.fstat(self._fd)):
            os.close(fd)
            raise UnsafeFileError(errno.ESTALE, f"journal {self.journal_path} was replaced "
                                  f"while open; {_HINT}", self.journal_path)  # fmt: skip
        return os.fdopen(fd, "rb")

    def close(self) -> None:
        """Close the journal and release the lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def load(self, store: Store) -> bool:
        """Fill ``store`` from the snapshot, if there is one; refuses unknown formats.

        Whatever the file holds, the outcome is a filled store, False (no snapshot), or a
        StateError naming the file and what to do: a damaged snapshot must stop the daemon
        with a way out, never with a traceback from deep inside the store.
        """
        try:
            with open(self.path, "rb") as f:
                data = json.load(f)
        except FileNotFoundError:
            return False
        except (OSError, ValueError, RecursionError) as e:  # RecursionError: absurd nesting
            raise StateError(errno.EINVAL, f"state snapshot {self.path} is unreadable ({e}); "
                             "move it aside to start empty", self.path) from e  # fmt: skip
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise StateError(errno.EINVAL, f"{self.path} is not a biometrics exporter state "
                             "file; point --state elsewhere", self.path)  # fmt: skip
        if data.get("version") not in range(1, STATE_VERSION + 1):  # every older one is read
            raise StateError(errno.EINVAL, f"{self.path} has state version "
                             f"{data.get('version')!r:.40}; this biometrics reads 1 to "
                             f"{STATE_VERSION}: run the biometrics that wrote it, or move it "
                             "aside to start empty", self.path)  # fmt: skip
        try:
            store.load_json(data)
        except ValueError as e:
            raise StateError(errno.EINVAL, f"state snapshot {self.path} is damaged ({e}); "
                             "move it aside to start empty", self.path) from e  # fmt: skip
        return True

    def replay(self) -> Iterator[tuple[str, bytes]]:
        """``(segment file name, bytes)`` for each whole journal record.

        Open, the journal's damaged tail is already cut (see :meth:`open`); not open, it is
        left alone, and only logged.
        """
        try:
            f = self._read_journal() if self._fd is not None else self._peek_journal()
        except FileNotFoundError:
            return
        with f:
            end = self._end if self._fd is not None else os.fstat(f.fileno()).st_size
            walk = _Walk()
            yield from _walk(f, end, walk, read=True)
        if walk.stopped is not None:
            self._log_cut(walk, end, "journal tail not replayed")

    def _peek_journal(self) -> BinaryIO:
        """The journal of a state not opened (nothing locked or created), read-only."""
        directory = self._directory or "."
        dir_fd = open_dir(directory, create=False, hint=_HINT)
        try:
            fd = open_file_at(dir_fd, self._name + ".journal", os.O_RDONLY, self.journal_path,
                              _HINT)  # fmt: skip
        finally:
            os.close(dir_fd)
        return os.fdopen(fd, "rb")

    def append(self, name: str, source: BinaryIO, size: int) -> None:
        """Copy ``size`` bytes of a segment into the journal (not yet synced; see :meth:`sync`).

        All or nothing: on any failure the journal is cut back to the last whole record before
        the error is raised.  Raises :class:`StateError` when the journal is at fault (full
        volume, I/O error: retry later) and :class:`SegmentError` when the segment is (it
        cannot be read, or is shorter than ``size``: skip it).
        """
        fd = self._require()
        if "\n" in name or not name:
            raise ValueError(f"a journal record needs a one-line segment name, not {name!r}")
        header = _MAGIC + f"{size} {name}\n".encode()
        in_fd, start = source.fileno(), self._end
        try:
            self._cut_overhang(fd)
            os.lseek(fd, start, os.SEEK_SET)
            write_all(fd, header, "journal")
            sent = 0
            while sent < size:  # bounded: every turn sends at least one byte or raises
                try:
                    n = os.sendfile(fd, in_fd, sent, size - sent)
                except OSError as e:
                    if _unreadable(in_fd, sent):
                        raise SegmentError(e.errno, f"cannot read segment {name}: {e.strerror}",
                                           name) from e  # fmt: skip
                    raise
                if n == 0:
                    raise SegmentError(errno.EIO, f"segment {name} shrank while being "
                                       f"journaled ({sent} of {size} bytes)", name)  # fmt: skip
                sent += n
        except SegmentError:
            self._cut(fd, start)
            raise
        except OSError as e:
            self._cut(fd, start)
            raise StateError(e.errno, f"cannot append to journal {self.journal_path}: "
                             f"{e.strerror}; segment {name} stays in the spool",
                             self.journal_path) from e  # fmt: skip
        except BaseException:
            self._cut(fd, start)
            raise
        self._end = start + len(header) + size

    def sync(self) -> None:
        """Make every appended record durable, or cut them all off and raise StateError."""
        fd = self._require()
        try:
            self._cut_overhang(fd)
            os.fsync(fd)
        except OSError as e:
            self._cut(fd, self._synced)
            raise StateError(e.errno, f"cannot sync journal {self.journal_path}: {e.strerror}; "
                             "this batch's segments stay in the spool",
                             self.journal_path) from e  # fmt: skip
        self._synced = self._end

    def checkpoint(self, store: Store) -> int:
        """Write the snapshot atomically, then empty the journal; returns the snapshot's size."""
        fd = self._require()
        payload = json.dumps(store.to_json(), separators=(",", ":")).encode()  # to_json copies
        dir_fd = self._dir_fd
        assert dir_fd is not None
        tmp = f"{self._name}.tmp.{os.getpid()}"
        try:
            out = self._create_temp(dir_fd, tmp)
            try:
                write_all(out, payload, "snapshot")
                os.fsync(out)
            finally:
                os.close(out)
            # rename() replaces the entry itself, never what a link there points to.
            os.replace(tmp, self._name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise StateError(e.errno, f"cannot write state snapshot {self.path}: {e.strerror}; "
                             "segments stay in the journal", self.path) from e  # fmt: skip
        try:
            os.ftruncate(fd, 0)
            self._end = self._synced = 0
            self._overhang = False
            os.lseek(fd, 0, os.SEEK_SET)
            os.fsync(fd)
        except OSError as e:
            # The snapshot holds everything; a journal left longer only replays as a no-op.
            raise StateError(e.errno, f"cannot empty journal {self.journal_path}: {e.strerror}",
                             self.journal_path) from e  # fmt: skip
        return len(payload)

    def _create_temp(self, dir_fd: int, name: str) -> int:
        """A new snapshot temporary (``O_EXCL``, never through a link).

        A file already there is a leftover of a daemon that died with our pid, or was planted:
        either way the name (never what it points to) is removed, once, and created afresh.
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        path = os.path.join(self._directory, name)
        try:
            return open_file_at(dir_fd, name, flags, path, _HINT, mode=0o644)
        except FileExistsError:
            os.unlink(name, dir_fd=dir_fd)
        return open_file_at(dir_fd, name, flags, path, _HINT, mode=0o644)

    def _cut(self, fd: int, offset: int) -> None:
        """Drop everything from ``offset`` on; if that fails, remember to retry before writing."""
        self._end = offset
        self._synced = min(self._synced, offset)
        self._overhang = True
        with contextlib.suppress(OSError):
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
            self._overhang = False

    def _cut_overhang(self, fd: int) -> None:
        if self._overhang:
            os.ftruncate(fd, self._end)
            os.lseek(fd, self._end, os.SEEK_SET)
            self._overhang = False

    def _log_cut(self, walk: _Walk, end: int, event: str) -> None:
        log(logging.WARNING, event, journal=self.journal_path, offset=walk.good,
            cut_bytes=end - walk.good, reason=walk.stopped, records=walk.records)  # fmt: skip

    def _require(self) -> int:
        if self._fd is None:
            raise StateError(errno.EBADF, f"state {self.path} is not open", self.path)
        return self._fd

    def __enter__(self) -> DurableState:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
