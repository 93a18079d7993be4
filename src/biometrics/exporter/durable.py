"""Durable state: a snapshot of the store plus a journal of the segments consumed since.

A consumed segment's bytes are appended to the journal and fsynced *before* the segment leaves
the spool, so at every instant each reading is in the spool, the journal or the snapshot.
Recovery loads the snapshot and re-ingests the journal; re-ingesting is idempotent (readings no
newer than a source's last are ignored), so a crash between any two steps, even between writing
a snapshot and emptying the journal, double-counts nothing.  A checkpoint writes the snapshot to
a temporary file, fsyncs it, renames it over the old one, fsyncs the directory, then empties the
journal.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import StateError
from ._spool import lock_state
from .store import STATE_FORMAT, STATE_VERSION, Store

__all__ = ["DurableState"]

_MAGIC = b"#@biometrics-journal "


def _fsync_dir(path: str) -> None:
    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DurableState:
    """The files ``PATH`` (snapshot), ``PATH.journal`` and ``PATH.lock`` (one daemon only)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.journal_path = self.path + ".journal"
        self.lock_path = self.path + ".lock"
        self._lock_fd: int | None = None
        self._journal: BinaryIO | None = None

    @property
    def journal_bytes(self) -> int:
        """Bytes in the journal now (what a checkpoint would fold into the snapshot)."""
        return 0 if self._journal is None else self._journal.tell()

    def open(self) -> None:
        """Take the lock (only one daemon per state) and open the journal for appending."""
        fd = lock_state(self.lock_path, f"state {self.path}", "give this one its own --state")
        self._lock_fd = fd
        # Not O_APPEND: sendfile() refuses to write to append-mode files.
        journal_fd = os.open(self.journal_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._journal = os.fdopen(journal_fd, "r+b")
        self._journal.seek(0, os.SEEK_END)

    def close(self) -> None:
        """Close the journal and release the lock."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self, store: Store) -> bool:
        """Fill ``store`` from the snapshot, if there is one; refuses unknown formats."""
        try:
            with open(self.path, "rb") as f:
                data = json.load(f)
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as e:
            raise StateError(errno.EINVAL, f"state snapshot {self.path} is unreadable ({e}); "
                             "move it aside to start empty", self.path) from e  # fmt: skip
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise StateError(errno.EINVAL, f"{self.path} is not a biometrics exporter state "
                             "file; point --state elsewhere", self.path)  # fmt: skip
        if data.get("version") != STATE_VERSION:
            raise StateError(errno.EINVAL, f"{self.path} has state version "
                             f"{data.get('version')}; this biometrics reads {STATE_VERSION}",
                             self.path)  # fmt: skip
        store.load_json(data)
        return True

    def replay(self) -> Iterator[tuple[str, bytes]]:
        """``(segment file name, bytes)`` for each whole journal record; a torn tail is cut off."""
        try:
            f = open(self.journal_path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            return
        with f:
            good = 0
            while True:
                header = f.readline()
                if not header:
                    break
                parts = header[len(_MAGIC) :].rstrip(b"\n").split(b" ", 1)
                if not header.startswith(_MAGIC) or not header.endswith(b"\n") or len(parts) != 2:
                    break
                size = int(parts[0]) if parts[0].isdigit() else -1
                data = f.read(size) if size >= 0 else b""
                if size < 0 or len(data) != size:
                    break
                good = f.tell()
                yield parts[1].decode(errors="replace"), data
            torn = f.seek(0, os.SEEK_END) > good
        if torn and self._journal is not None:
            self._journal.truncate(good)
            self._journal.seek(good)

    def append(self, name: str, source: BinaryIO, size: int) -> None:
        """Copy ``size`` bytes of a segment into the journal (not yet synced; see :meth:`sync`)."""
        journal = self._require()
        journal.write(_MAGIC + f"{size} {name}\n".encode())
        journal.flush()
        start = journal.tell()
        offset = 0
        in_fd, out_fd = source.fileno(), journal.fileno()
        try:
            while offset < size:
                sent = os.sendfile(out_fd, in_fd, offset, size - offset)
                if sent == 0:
                    raise OSError(errno.EIO, f"segment {name} shrank while being journaled")
                offset += sent
        except OSError:
            journal.truncate(start - len(_MAGIC) - len(f"{size} {name}\n".encode()))
            raise
        journal.seek(start + size)

    def sync(self) -> None:
        """Make every appended record durable."""
        journal = self._require()
        journal.flush()
        os.fsync(journal.fileno())

    def checkpoint(self, store: Store) -> int:
        """Write the snapshot atomically, then empty the journal; returns the snapshot's size."""
        journal = self._require()
        with store.lock:
            payload = json.dumps(store.to_json(), separators=(",", ":")).encode()
        tmp = f"{self.path}.tmp.{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(os.path.dirname(self.path))
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StateError(e.errno, f"cannot write state snapshot {self.path}: {e.strerror}; "
                             "segments stay in the journal", self.path) from e  # fmt: skip
        journal.truncate(0)
        journal.seek(0)
        os.fsync(journal.fileno())
        return len(payload)

    def _require(self) -> BinaryIO:
        if self._journal is None:
            raise StateError(errno.EBADF, f"state {self.path} is not open", self.path)
        return self._journal

    def __enter__(self) -> DurableState:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
