"""What the exporter and the shipper both do to a spool: lock a state, move files, skip files.

Both consume segments claimed by a :class:`~biometrics.prometheus.Watcher`; what differs is
what counts as consumed (journaled for the exporter, acknowledged by the remote for the
shipper).  The file moves, the quarantine sidecar and the skip-until-changed rule are shared so
a segment is handled the same way whichever daemon gives up on it.

The daemons run as root beside writers who may be anyone able to write the spool, and who can
therefore plant any name in it: a link where the quarantine directory or a sidecar will be, a
FIFO, a hard link.  So nothing here is done by path.  Every directory a daemon writes into is
opened one component at a time with ``O_NOFOLLOW`` (see :func:`open_dir`), and every file in it
is created, opened, linked or renamed relative to that directory's descriptor, ``O_NOFOLLOW``
and, for a new file, ``O_EXCL``.  What is not a plain directory or a regular file is refused
with :class:`UnsafeFileError`, never followed, never replaced.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import SegmentError, StateError
from ..prometheus.watcher import kind_of

__all__ = [
    "Quarantined",
    "SkipList",
    "UnsafeFileError",
    "in_spool",
    "kind_of",
    "lock_state",
    "lock_state_at",
    "move",
    "open_dir",
    "open_file_at",
    "quarantine",
]

_MAX_LINES = 100
_MAX_CLASHES = 100
"""Names tried for one move or sidecar before giving up: a planted ``x``, ``x.1``... is finite."""
_MAX_LINKS = 40
"""Trusted symbolic links expanded while opening one directory, as the kernel's own limit."""
_DIR_MODE = 0o755
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
"""Never through a link; never blocked on a FIFO planted in place of a file."""
_COPY_CHUNK = 1 << 20


class UnsafeFileError(SegmentError):
    """A link or a special file stands where a daemon would write; it is refused, not followed.

    ``filename`` is the path refused; the message says what it is and what to do.
    """


def in_spool(given: str | None, spool: str, *default: str) -> str:
    """``given``, or the default place for it under the spool."""
    return given or os.path.join(spool, *default)


def _trusted(uid: int) -> bool:
    """Root's and our own links and directories; anyone else's could be repointed under us."""
    return uid in (0, os.geteuid())


def _refuse(path: str, what: str, hint: str, code: int = errno.EINVAL) -> UnsafeFileError:
    return UnsafeFileError(
        code,
        f"refusing {path}: {what}; a daemon never follows or writes through it "
        f"(anyone who can write the spool could have planted it): {hint}",
        path,
    )


def open_dir(path: str, *, create: bool, hint: str) -> int:
    """A descriptor of directory ``path`` (created if ``create``), opened without trusting links.

    Each component is opened ``O_DIRECTORY|O_NOFOLLOW`` relative to the one before, and a
    missing one is made with ``mkdir`` relative to it, so no planted link is ever followed,
    not even by ``makedirs``.  A link on the way is followed only if root or we own it (the
    rule of ``fs.protected_symlinks``: the operator's ``/var/run -> /run`` works, a spool
    writer's link does not); the last component must be a real directory, owned by root or
    by us, since whoever owns it can swap its entries.  Raises :class:`UnsafeFileError`
    (saying ``hint``: what to do) for a refusal, ``OSError`` otherwise.
    """
    parts = path.split("/")
    if not parts[-1]:
        parts.pop()  # a trailing slash names the same directory
    fd = os.open("/" if path.startswith("/") else ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    walked = "/" if path.startswith("/") else ""
    links = 0
    try:
        # Bounded: every turn consumes a part; a link adds its target's parts, at most
        # _MAX_LINKS times.
        while parts:
            name = parts.pop(0)
            if name in ("", "."):
                continue
            last = all(p in ("", ".") for p in parts)
            shown = os.path.join(walked, name)
            try:
                step = _open_dir_at(fd, name, create=create)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise _refuse(shown, f"it is a {kind_of(st.st_mode)}, not a directory",
                                  hint) from e  # fmt: skip
                if last or not _trusted(st.st_uid):
                    raise _refuse(shown, f"it is a symbolic link (owner uid {st.st_uid})",
                                  hint, errno.ELOOP) from e  # fmt: skip
                links += 1
                if links > _MAX_LINKS:
                    raise _refuse(shown, "too many levels of symbolic links", hint,
                                  errno.ELOOP) from e  # fmt: skip
                target = os.readlink(name, dir_fd=fd)
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    walked = "/"
                parts[:0] = target.split("/")
                continue
            os.close(fd)
            fd, walked = step, shown
        st = os.fstat(fd)
        if not _trusted(st.st_uid):
            raise _refuse(path, f"it is owned by uid {st.st_uid}, neither root nor this daemon "
                          f"(uid {os.geteuid()}), who could swap its entries", hint)  # fmt: skip
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_dir_at(fd: int, name: str, *, create: bool) -> int:
    """``name`` in ``fd``, a real directory (made if missing and ``create``)."""
    if name == "..":  # never a link: the physical parent of what was opened
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise
    with contextlib.suppress(FileExistsError):  # made meanwhile, or planted: opened with care
        os.mkdir(name, _DIR_MODE, dir_fd=fd)
    return os.open(name, _DIR_FLAGS, dir_fd=fd)


def open_file_at(
    dir_fd: int, name: str, flags: int, path: str, hint: str, *, mode: int = 0o644
) -> int:
    """Open regular file ``name`` in ``dir_fd``: never a link, never a FIFO or device.

    ``flags`` are the access flags (plus ``O_CREAT``/``O_EXCL``/``O_TRUNC`` as needed);
    ``path`` is how errors name the file.  A file opened for writing must have no other hard
    link: one planted there would make our writes (or a journal cut-back) land in the file it
    links to.  The descriptor is returned in blocking mode.
    """
    try:
        fd = os.open(name, flags | _FILE_FLAGS, mode, dir_fd=dir_fd)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENOTDIR):
            raise
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            raise e from None
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(path, "it is a symbolic link", hint, errno.ELOOP) from e
        raise _refuse(path, f"it is a {kind_of(st.st_mode)}, not a regular file", hint) from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, f"it is a {kind_of(st.st_mode)}, not a regular file", hint)
        if flags & os.O_ACCMODE != os.O_RDONLY and st.st_nlink != 1:
            raise _refuse(path, f"it has {st.st_nlink - 1} other hard link(s)", hint)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock_state(path: str, what: str, hint: str) -> int:
    """Create and flock ``path``: one daemon per state; the fd is the lock, keep it open."""
    directory, name = os.path.split(path)
    try:
        dir_fd = open_dir(directory or ".", create=True, hint=hint)
    except OSError as e:
        raise StateError(e.errno, f"cannot use state directory {directory or '.'}: "
                         f"{e.strerror}; {hint}", directory or ".") from e  # fmt: skip
    try:
        return lock_state_at(dir_fd, name, path, what, hint)
    finally:
        os.close(dir_fd)


def lock_state_at(dir_fd: int, name: str, path: str, what: str, hint: str) -> int:
    """:func:`lock_state` for ``name`` in an already opened state directory."""
    try:
        fd = open_file_at(dir_fd, name, os.O_RDWR | os.O_CREAT, path, hint)
    except OSError as e:
        raise StateError(e.errno, f"cannot create lock {path}: {e.strerror}; {hint}",
                         path) from e  # fmt: skip
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        raise StateError(errno.EBUSY, f"{what} is in use by another biometrics process "
                         f"(lock {path}); stop it or {hint}", path) from e  # fmt: skip
    return fd


@dataclass(frozen=True)
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
            raise _refuse(self.path, f"it is a {kind_of(mine.st_mode)}, not a regular file",
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
            raise _refuse(self.path, "it was replaced while being moved", "remove it")
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
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, 0o600,
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
            sidecar, problem = _write_sidecar(dst_fd, name + ".error", text)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    return Quarantined(
        os.path.join(directory, name),
        None if sidecar is None else os.path.join(directory, sidecar),
        problem,
    )


def _write_sidecar(dir_fd: int, wanted: str, text: bytes) -> tuple[str | None, str | None]:
    """Write ``text`` to a new file named ``wanted`` or the first free ``wanted.N``."""
    taken = 0
    for n in range(_MAX_CLASHES):
        name = wanted if n == 0 else f"{wanted}.{n}"
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, 0o644,
                         dir_fd=dir_fd)  # fmt: skip
        except FileExistsError:
            taken += 1
            continue
        except OSError as e:
            return None, f"cannot create sidecar {name}: {e.strerror}"
        try:
            view = memoryview(text)
            while view:  # bounded: every turn writes at least one byte or raises
                written = os.write(fd, view)
                if written <= 0:
                    raise OSError(errno.ENOSPC, "sidecar write made no progress")
                view = view[written:]
        except OSError as e:
            return name, f"sidecar {name} is incomplete: {e.strerror}"
        finally:
            os.close(fd)
        return name, (f"{wanted} was taken (a planted name?); wrote {name}" if taken else None)
    return None, f"{wanted} and {_MAX_CLASHES - 1} numbered names are taken; no sidecar written"


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
