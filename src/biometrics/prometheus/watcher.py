"""Watcher: consume finished segments from a directory without ever waiting on a writer."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator

from ..errors import SegmentError
from . import _locks
from .reader import Reader

__all__ = ["Watcher"]

SUFFIX = ".prom"


class Watcher:
    """Offers each finished ``*.prom`` segment of ``directory``, oldest (mtime, then name) first.

    A segment is *claimed* before it is offered: opened read-write and exclusively locked without
    waiting (so a file a writer still holds is skipped, and a second Watcher, in this process or
    another, cannot claim it at the same time), then checked to still be the file its name points
    to (so a file another Watcher consumed and unlinked a moment ago is not consumed twice).  The
    callback consumes a segment by unlinking it (``reader.unlink()``) or moving it away; a segment
    it leaves in place is offered again, as in the seed.

    Only regular files whose name ends in ``.prom`` count; hidden names (the Emitter's temporary
    files), subdirectories and symlinks are ignored, and symlinks are never followed.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._directory = os.fspath(directory)

    @property
    def directory(self) -> str:
        """The directory watched."""
        return self._directory

    def candidates(self) -> list[str]:
        """Paths of segments that may be finished, oldest first (none is opened or locked)."""
        return [path for _, _, path, _ in sorted(self._scan())]

    def backlog(self) -> tuple[int, int]:
        """How many segments are waiting, and their bytes (the one being written included)."""
        found = self._scan()
        return len(found), sum(size for _, _, _, size in found)

    def _scan(self) -> list[tuple[int, str, str, int]]:
        found: list[tuple[int, str, str, int]] = []
        try:
            entries = os.scandir(self._directory)
        except OSError as e:
            raise SegmentError(e.errno, f"cannot list {self._directory}: {e.strerror}",
                               self._directory) from e  # fmt: skip
        with entries:
            for entry in entries:
                name = entry.name
                if not name.endswith(SUFFIX) or name.startswith("."):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.append((st.st_mtime_ns, name, entry.path, st.st_size))
        return found

    def claim(self, path: str) -> Reader | None:
        """Take ``path`` exclusively if it is finished and still there; None otherwise."""
        exclusive = True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except PermissionError:
            # Not ours to write: a shared lock still waits out the writer, but two Watchers
            # could then both read the file.  Documented in docs/ARCHITECTURE.md.
            exclusive = False
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                return None
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ELOOP):
                return None
            raise SegmentError(e.errno, f"cannot open segment {path}: {e.strerror}", path) from e
        try:
            if not _locks.lock(fd, exclusive=exclusive, wait=False):
                os.close(fd)
                return None
            mine = os.fstat(fd)
            there = os.lstat(path)
        except FileNotFoundError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if mine.st_nlink == 0 or (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
            os.close(fd)
            return None
        return Reader(path, fd)

    def ingest_one(self, process: Callable[[Reader], object]) -> bool:
        """Give the oldest finished segment to ``process``; False when there is none."""
        for path in self.candidates():
            reader = self.claim(path)
            if reader is not None:
                with reader:
                    process(reader)
                return True
        return False

    def segments(self) -> Iterator[Reader]:
        """Every finished segment, oldest first, each claimed while the caller holds it."""
        for path in self.candidates():
            reader = self.claim(path)
            if reader is not None:
                with reader:
                    yield reader

    def watch(
        self,
        process: Callable[[Reader], object],
        *,
        stop: threading.Event | None = None,
        poll_interval: float = 0.1,
        timeout: float | None = None,
    ) -> int:
        """Consume segments as they are finished until ``stop`` is set (or ``timeout`` passes).

        Polls the directory every ``poll_interval`` seconds when idle; returns how many
        segments were offered.
        """
        stop = stop or threading.Event()
        deadline = None if timeout is None else time.monotonic() + timeout
        offered = 0
        while not stop.is_set():
            while not stop.is_set() and self.ingest_one(process):
                offered += 1
            remaining = poll_interval if deadline is None else deadline - time.monotonic()
            if remaining <= 0 or stop.wait(min(poll_interval, remaining)):
                break
        return offered
