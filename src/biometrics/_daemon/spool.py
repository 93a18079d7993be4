"""What a daemon does to a spool's files: move them, quarantine them, skip them until changed.

Both daemons consume segments claimed by a :class:`~biometrics.prometheus.Watcher`; what differs
is what counts as consumed (journaled for the exporter, acknowledged by the remote for the
shipper).  The file moves, the quarantine sidecar and the skip-until-changed rule live here so a
segment is handled the same way whichever daemon gives up on it.  Every move goes through
directory descriptors opened by :mod:`.safe_open`: a name planted in the spool or in the
destination is refused, never followed, never replaced.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import SegmentError
from ..prometheus.watcher import kind_of
from .safe_open import FILE_FLAGS, open_dir, open_file_at, refuse, write_all

__all__ = ["Quarantined", "SkipList", "in_spool", "move", "quarantine"]

_MAX_LINES = 100
"""Problems listed in one sidecar; the rest are counted."""
_MAX_CLASHES = 100
"""Names tried for one move or sidecar before giving up: a planted ``x``, ``x.1``... is finite."""
_COPY_CHUNK = 1 << 20


def in_spool(given: str | None, spool: str, *default: str) -> str:
    """``given``, or the default place for it under the spool."""
    return given or os.path.join(spool, *default)


@dataclass(frozen=True, slots=True)
class Quarantined:
    """Where a quarantined segment went, and its sidecar (None if none could be written)."""

    target: str
    sidecar: str | None
    sidecar_problem: str | None = None
    """Why the sidecar is missing or not at ``<target>.error``."""


def move(
    path: str,
    directory: str,
    *,
    rename_on_clash: bool = True,
    fd: int | None = None,
    hint: str = "",
) -> str:
    """Move ``path`` into ``directory``; a name clash gets ``.1``, ``.2``...

    Without ``rename_on_clash`` a clash raises ``FileExistsError`` instead: the outbox must keep
    names, which carry the source and the time.  ``fd``, the claimed segment, is what must
    arrive: a name swapped for another file meanwhile is not moved.  Nothing in ``directory``
    is ever replaced.  ``hint`` says what to do if ``directory`` is refused.
    """
    src_dir, base = os.path.split(path)
    src_fd = os.open(src_dir or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        dst_fd = open_dir(directory, create=True, hint=hint or f"make {directory} a directory")
        try:
            name = _Move(src_fd, base, dst_fd, directory, path, fd).run(
                rename_on_clash=rename_on_clash
            )
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    return os.path.join(directory, name)


@dataclass
class _Move:
    """One claimed file on its way from a spool directory into another, both held open."""

    src_fd: int
    base: str
    dst_fd: int
    directory: str
    path: str
    fd: int | None
    """The claimed file: what must arrive, whatever its name points to by now."""

    def run(self, *, rename_on_clash: bool) -> str:
        """Give the file a free name in ``dst_fd``, then drop ``base``; never replace a thing."""
        src_fd, base, fd = self.src_fd, self.base, self.fd
        if fd is not None:
            mine = os.fstat(fd)
        else:
            mine = os.stat(base, dir_fd=src_fd, follow_symlinks=False)
        if not stat.S_ISREG(mine.st_mode):
            raise refuse(self.path, f"it is a {kind_of(mine.st_mode)}, not a regular file",
                         "remove it")  # fmt: skip
        for n in range(_MAX_CLASHES):
            name = base if n == 0 else f"{base}.{n}"
            try:
                renamed = self._place(name, mine)
            except FileExistsError:
                if _same(self.dst_fd, name, mine):  # linked before a crash kept us from unlinking
                    renamed = False
                    break
                if not rename_on_clash:
                    raise FileExistsError(errno.EEXIST, "already in the outbox",
                                          os.path.join(self.directory, name)) from None  # fmt: skip
                continue
            break
        else:
            raise SegmentError(errno.EEXIST, f"cannot move {self.path}: {base} and "
                               f"{_MAX_CLASHES - 1} numbered names are taken in {self.directory}; "
                               "clear them out", self.path)  # fmt: skip
        if not renamed and _same(src_fd, base, mine):
            os.unlink(base, dir_fd=src_fd)
        return name

    def _place(self, name: str, mine: os.stat_result) -> bool:
        """Put the file at ``name``; True if ``base`` is gone (renamed) already.

        Raises FileExistsError if ``name`` is taken.  A hard link never replaces an entry; only
        where there are none (another file system, no link support) is it a copy or a rename.
        """
        src_fd, base, dst_fd = self.src_fd, self.base, self.dst_fd
        try:
            os.link(base, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
        except FileExistsError:
            raise
        except OSError as e:
            if e.errno == errno.EXDEV:
                self._copy(name, mine)
                return False
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
            # No hard links here (or not for our user on someone else's file): check, then
            # rename.  The check's window is the Emitter's fallback's; a rename never follows.
            try:
                os.stat(name, dir_fd=dst_fd, follow_symlinks=False)
            except FileNotFoundError:
                os.rename(base, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            else:
                raise FileExistsError(errno.EEXIST, "name taken", name) from None
            renamed = True
        else:
            renamed = False
        if not _same(dst_fd, name, mine):  # the spool name was swapped for another file
            os.unlink(name, dir_fd=dst_fd)
            raise refuse(self.path, "it was replaced while being moved", "remove it")
        return renamed

    def _copy(self, name: str, mine: os.stat_result) -> None:
        """Another file system: copy the claimed file to a new ``O_EXCL`` file, keep its mtime.

        The mtime orders the outbox for the shipper.  At most the size seen at the start is
        copied, so a file someone keeps appending to cannot keep us here.
        """
        fd = self.fd
        source = (
            fd
            if fd is not None
            else open_file_at(self.src_fd, self.base, os.O_RDONLY, self.path, "remove it")
        )
        try:
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | FILE_FLAGS, 0o600,
                          dir_fd=self.dst_fd)  # fmt: skip
            try:
                offset = 0
                while offset < mine.st_size:  # bounded: every turn copies a byte or stops
                    size = min(_COPY_CHUNK, mine.st_size - offset)
                    sent = os.sendfile(out, source, offset, size)
                    if sent <= 0:
                        break
                    offset += sent
                os.fchmod(out, stat.S_IMODE(mine.st_mode))
                os.utime(out, ns=(mine.st_atime_ns, mine.st_mtime_ns))
                os.fsync(out)
            except BaseException:
                os.unlink(name, dir_fd=self.dst_fd)
                raise
            finally:
                os.close(out)
        finally:
            if source != fd:
                os.close(source)


def _same(dir_fd: int, name: str, st: os.stat_result) -> bool:
    """True if ``name`` in ``dir_fd`` is (not links to) the file ``st`` describes."""
    try:
        there = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (there.st_dev, there.st_ino) == (st.st_dev, st.st_ino)


def quarantine(
    path: str,
    directory: str,
    reason: str,
    details: Sequence[object] = (),
    *,
    fd: int | None = None,
    hint: str = "",
) -> Quarantined:
    """Move ``path`` to ``directory`` with a ``.error`` sidecar saying why, line by line.

    The sidecar is a new file (``O_EXCL``, never through a link): if its name is taken, by a
    planted link or anything else, ``.error.1``, ``.error.2``... are tried.  A sidecar that
    cannot be written does not undo the move; :attr:`Quarantined.sidecar_problem` says why.
    """
    hint = hint or f"remove it, or point --quarantine at a real directory instead of {directory}"
    src_dir, base = os.path.split(path)
    src_fd = os.open(src_dir or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        dst_fd = open_dir(directory, create=True, hint=hint)
        try:
            name = _Move(src_fd, base, dst_fd, directory, path, fd).run(rename_on_clash=True)
            lines = [f"{path}: quarantined: {reason}"]
            lines += [str(d) for d in details[:_MAX_LINES]]
            if len(details) > _MAX_LINES:
                lines.append(f"... and {len(details) - _MAX_LINES} more")
            text = ("\n".join(lines) + "\n").encode("utf-8", errors="replace")
            sidecar = _write_sidecar(dst_fd, name + ".error", text)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    return Quarantined(
        os.path.join(directory, name),
        None if sidecar.name is None else os.path.join(directory, sidecar.name),
        sidecar.problem,
    )


@dataclass(frozen=True, slots=True)
class _Sidecar:
    """The sidecar's name in the quarantine (None if none was written) and what went wrong."""

    name: str | None
    problem: str | None = None


def _write_sidecar(dir_fd: int, wanted: str, text: bytes) -> _Sidecar:
    """Write ``text`` to a new file named ``wanted`` or the first free ``wanted.N``."""
    taken = 0
    for n in range(_MAX_CLASHES):
        name = wanted if n == 0 else f"{wanted}.{n}"
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | FILE_FLAGS, 0o644,
                         dir_fd=dir_fd)  # fmt: skip
        except FileExistsError:
            taken += 1
            continue
        except OSError as e:
            return _Sidecar(None, f"cannot create sidecar {name}: {e.strerror}")
        try:
            write_all(fd, bytes(text), "sidecar")
        except OSError as e:
            return _Sidecar(name, f"sidecar {name} is incomplete: {e.strerror}")
        finally:
            os.close(fd)
        return _Sidecar(
            name, f"{wanted} was taken (a planted name?); wrote {name}" if taken else None
        )
    return _Sidecar(
        None, f"{wanted} and {_MAX_CLASHES - 1} numbered names are taken; no sidecar written"
    )


class SkipList:
    """Files that failed for a reason of their own (unreadable, unremovable, refused).

    They are not retried until they change, so one bad file is never looped on (nor logged
    again).  A change is any change of the entry itself, never of what a link points to:
    content (mtime, size), a replacement (inode), or its permissions (ctime), since ``chmod``
    is how an unreadable segment is fixed.  Never add a file for a failure of the daemon's own
    volume (a full state journal): a finished segment never changes, so it would be stranded;
    those are retried with a backoff instead.
    """

    def __init__(self) -> None:
        self._skipped: dict[str, tuple[int, ...]] = {}

    @staticmethod
    def _key(path: str) -> tuple[int, ...]:
        st = os.lstat(path)
        return (st.st_ino, st.st_mode, st.st_mtime_ns, st.st_ctime_ns, st.st_size)

    def add(self, path: str) -> None:
        """Skip ``path`` as it is now."""
        try:
            self._skipped[path] = self._key(path)
        except OSError:
            return

    def skipped(self, path: str) -> bool:
        """True while ``path`` is skipped and unchanged (or gone)."""
        if path not in self._skipped:
            return False
        try:
            key = self._key(path)
        except OSError:
            del self._skipped[path]
            return True
        if self._skipped[path] == key:
            return True
        del self._skipped[path]
        return False
