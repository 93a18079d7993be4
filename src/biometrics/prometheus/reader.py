"""Reader: a finished segment, opened under a shared lock so it is never read half-written."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
from types import TracebackType

from ..errors import SegmentError
from . import _locks

__all__ = ["Reader"]


class Reader(io.BufferedReader):
    """A read-only binary file over one segment, holding its lock until closed.

    ``Reader.open`` waits for the writer to finish (as the seed describes, and with the seed's
    pitfall: it blocks while a writer holds the segment).  ``Reader.try_open`` never waits.
    The Watcher hands out Readers too, holding an exclusive claim instead of a shared lock.
    """

    def __init__(self, path: str, fd: int) -> None:
        super().__init__(io.FileIO(fd, "r", closefd=True))
        self._path = path

    @property
    def path(self) -> str:
        """The segment's path."""
        return self._path

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Reader:
        """Open ``path`` and wait (blocking) until no writer holds it."""
        reader = cls._open(os.fspath(path), wait=True)
        assert reader is not None
        return reader

    @classmethod
    def try_open(cls, path: str | os.PathLike[str]) -> Reader | None:
        """Open ``path`` if no writer holds it; None, without waiting, if one does."""
        return cls._open(os.fspath(path), wait=False)

    @classmethod
    def _open(cls, path: str, *, wait: bool) -> Reader | None:
        # O_NONBLOCK: a FIFO planted under a segment's name would block a read-only open
        # until someone writes to it; fstat then refuses anything but a regular file.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as e:
            what = "it is a symbolic link, never followed" if e.errno == errno.ELOOP else e.strerror
            raise SegmentError(e.errno, f"cannot open segment {path}: {what}", path) from e
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise SegmentError(errno.EINVAL, f"cannot open segment {path}: not a regular "
                                   "file; segments are regular files only", path)  # fmt: skip
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        try:
            if not _locks.lock(fd, exclusive=False, wait=wait):
                os.close(fd)
                return None
        except OSError as e:
            os.close(fd)
            raise SegmentError(e.errno, f"cannot lock segment {path}: {e.strerror}", path) from e
        return cls(path, fd)

    def unlink(self) -> None:
        """Remove the segment from its directory (the open file stays readable)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    def __enter__(self) -> Reader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Reader({self._path!r})"
