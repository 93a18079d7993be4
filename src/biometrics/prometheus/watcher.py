"""Watcher: consume finished segments from a directory without ever waiting on a writer."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType

from ..errors import SegmentError
from . import _locks
from .reader import Reader

__all__ = ["Held", "Watcher"]

SUFFIX = ".prom"
_OPEN_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
"""Never through a link, never blocked on a FIFO (opened read-only, it would wait for a writer)."""
_NOT_A_SEGMENT = frozenset({errno.ENOENT, errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENOTDIR})
"""Gone, or swapped for a link, socket or directory since the scan: not a segment to claim."""
_MAX_NEW_STRAYS = 1024
"""Strays held for :meth:`Watcher.strays` between calls: a spool full of them costs no more."""


def kind_of(mode: int) -> str:
    """What a file is, in the words every refusal uses (Watcher, daemons and tools alike)."""
    kinds = ((stat.S_ISREG, "regular file"), (stat.S_ISLNK, "symlink"),
             (stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
             (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "special file")


def _open_segment(dir_fd: int, name: str, path: str) -> tuple[int, bool] | None:
    """``(fd, exclusive)`` of ``name``, read-write if we may (else read-only); None if gone."""
    try:
        return os.open(name, os.O_RDWR | _OPEN_FLAGS, dir_fd=dir_fd), True
    except PermissionError:
        # Not ours to write: a shared lock still waits out the writer, but two Watchers
        # could then both read the file.  Documented in docs/ARCHITECTURE.md.
        try:
            return os.open(name, os.O_RDONLY | _OPEN_FLAGS, dir_fd=dir_fd), False
        except OSError as e:
            if e.errno in _NOT_A_SEGMENT:
                return None
            raise SegmentError(e.errno, f"cannot read segment {path}: {e.strerror}; give this "
                               f"process (uid {os.geteuid()}) read permission on it, e.g. with "
                               "the writers' Options(mode=0o644) or a group both share",
                               path) from e  # fmt: skip
    except OSError as e:
        if e.errno in _NOT_A_SEGMENT:
            return None
        raise SegmentError(e.errno, f"cannot open segment {path}: {e.strerror}", path) from e


@dataclass(slots=True)
class Held:
    """A segment its writer still holds, as a claim found it: open, never locked, never waited on.

    The claim already paid for the open (no link followed, a regular file) and the ``fstat``;
    handing them on lets a daemon read the part of an open segment that is already whole
    (``biometrics serve`` reads its finished emissions) without a second open, and decide from
    ``stat`` alone whether there is anything new.  The receiver closes it.
    """

    path: str
    fd: int
    stat: os.stat_result
    """The file as it was when opened: its identity and the size the reader may go up to."""

    def pread(self, size: int, offset: int) -> bytes:
        """Up to ``size`` bytes from ``offset``: fewer only if the file ends (or shrank) first."""
        parts: list[bytes] = []
        got = 0
        while got < size:  # bounded: every turn reads at least one byte, or stops
            part = os.pread(self.fd, size - got, offset + got)
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> Held:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _lock_at(
    dir_fd: int, name: str, path: str, fd: int, *, exclusive: bool, hold: bool
) -> Reader | Held | None:
    """``fd`` (``name`` in ``dir_fd``) claimed, or held by its writer; None: not to be taken.

    On None the caller closes ``fd``; otherwise the answer owns it.
    """
    try:
        mine = os.fstat(fd)
        if not stat.S_ISREG(mine.st_mode):  # swapped for a FIFO (or worse) since the scan
            return None
        os.set_blocking(fd, True)
        if not _locks.lock(fd, exclusive=exclusive, wait=False):
            return Held(path, fd, mine) if hold and mine.st_nlink > 0 else None
        there = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if mine.st_nlink == 0 or (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
        return None
    return Reader(path, fd)


class Watcher:
    """Offers each finished ``*.prom`` segment of ``directory``, oldest (mtime, then name) first.

    A segment is *claimed* before it is offered: opened read-write and exclusively locked without
    waiting (so a file a writer still holds is skipped, and a second Watcher, in this process or
    another, cannot claim it at the same time), then checked to still be the file its name points
    to (so a file another Watcher consumed and unlinked a moment ago is not consumed twice).  The
    callback consumes a segment by unlinking it (``reader.unlink()``) or moving it away; a segment
    it leaves in place is offered again, as in the seed.

    Only regular files whose name ends in ``.prom`` count; hidden names (the Emitter's temporary
    files) are ignored.  Anything else with a segment's name (a symlink, a FIFO, a directory) is
    never opened, let alone followed: anyone who can write the spool can plant one, and a
    daemon reading as root must neither read through a link nor block on a FIFO.  Such entries
    are listed by :meth:`strays` so a daemon can report them; a claim opens without following
    and without blocking, then checks the open file is regular, so a name swapped for one
    after the listing is refused too.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._directory = os.fspath(directory)
        self._strays: dict[str, tuple[int, ...]] = {}
        """Every stray of the last scan, as it was then (name -> identity)."""
        self._new_strays: dict[str, str] = {}
        """Strays found new or changed, not yet taken by :meth:`strays` (path -> kind)."""

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

    def strays(self) -> list[tuple[str, str]]:
        """``(path, kind)`` of each non-regular entry named like a segment, once until it changes.

        Entries found by the scans since the last call (``candidates``, ``backlog``) that were
        not there before or have changed (another inode, type or time).  A daemon logs and
        counts them; the Watcher itself only ever skips them.
        """
        found = sorted(self._new_strays.items())
        self._new_strays.clear()
        return found

    def _scan(self) -> list[tuple[int, str, str, int]]:
        found: list[tuple[int, str, str, int]] = []
        strays: dict[str, tuple[int, ...]] = {}
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
                    continue
                key = (st.st_ino, st.st_mode, st.st_mtime_ns, st.st_ctime_ns)
                if self._strays.get(name) != key:
                    if len(self._new_strays) >= _MAX_NEW_STRAYS:
                        continue  # not remembered as seen: offered again once there is room
                    self._new_strays[entry.path] = kind_of(st.st_mode)
                strays[name] = key
        self._strays = strays
        return found

    def claim(self, path: str) -> Reader | None:
        """Take ``path`` exclusively if it is finished and still there; None otherwise.

        None too for a name that is no longer a regular file (it is reported as a stray by the
        next scan).  Raises :class:`SegmentError` for a segment this process may not read: it
        would otherwise be passed over forever without a word.
        """
        taken = self._claim(path, hold=False)
        assert not isinstance(taken, Held)
        return taken

    def claim_or_hold(self, path: str) -> Reader | Held | None:
        """:meth:`claim`, but a segment its writer still holds comes back :class:`Held`.

        Only the writer's lock makes a :class:`Held`: a segment gone, unlinked or swapped for
        something else than a regular file is None, as for :meth:`claim`.
        """
        return self._claim(path, hold=True)

    def _claim(self, path: str, *, hold: bool) -> Reader | Held | None:
        directory, name = os.path.split(path)
        try:
            dir_fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None  # the directory went away since the listing: so did the segment
        try:
            return self._claim_at(dir_fd, name, path, hold)
        finally:
            os.close(dir_fd)

    def _claim_at(self, dir_fd: int, name: str, path: str, hold: bool) -> Reader | Held | None:
        opened = _open_segment(dir_fd, name, path)
        if opened is None:
            return None
        fd, exclusive = opened
        try:
            taken = _lock_at(dir_fd, name, path, fd, exclusive=exclusive, hold=hold)
        except BaseException:
            os.close(fd)
            raise
        if taken is None:
            os.close(fd)
        return taken

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
