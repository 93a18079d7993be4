"""Opening a daemon's directories and files without trusting a single link in the spool.

The daemons run as root beside writers who may be anyone able to write the spool, and who can
therefore plant any name in it: a link where the quarantine directory or a sidecar will be, a
FIFO, a hard link.  So nothing is done by path.  Every directory a daemon writes into is
opened one component at a time with ``O_NOFOLLOW`` (see :func:`open_dir`), and every file in it
is created, opened, linked or renamed relative to that directory's descriptor, ``O_NOFOLLOW``
and, for a new file, ``O_EXCL``.  What is not a plain directory or a regular file is refused
with :class:`~biometrics.errors.UnsafeFileError`, never followed, never replaced.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat

from ..errors import StateError, UnsafeFileError
from ..prometheus.watcher import kind_of

__all__ = ["FILE_FLAGS", "lock_state", "lock_state_at", "open_dir", "open_file_at", "refuse"]

_MAX_LINKS = 40
"""Trusted symbolic links expanded while opening one directory, as the kernel's own limit."""
_DIR_MODE = 0o755
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
"""Never through a link; never blocked on a FIFO planted in place of a file."""


def _trusted(uid: int) -> bool:
    """Root's and our own links and directories; anyone else's could be repointed under us."""
    return uid in (0, os.geteuid())


def refuse(path: str, what: str, hint: str, code: int = errno.EINVAL) -> UnsafeFileError:
    """The error for ``path``, which is ``what`` (a link, a FIFO...); ``hint`` says what to do."""
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
                    raise refuse(shown, f"it is a {kind_of(st.st_mode)}, not a directory",
                                 hint) from e  # fmt: skip
                if last or not _trusted(st.st_uid):
                    raise refuse(shown, f"it is a symbolic link (owner uid {st.st_uid})",
                                 hint, errno.ELOOP) from e  # fmt: skip
                links += 1
                if links > _MAX_LINKS:
                    raise refuse(shown, "too many levels of symbolic links", hint,
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
            raise refuse(path, f"it is owned by uid {st.st_uid}, neither root nor this daemon "
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
        fd = os.open(name, flags | FILE_FLAGS, mode, dir_fd=dir_fd)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENOTDIR):
            raise
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            raise e from None
        if stat.S_ISLNK(st.st_mode):
            raise refuse(path, "it is a symbolic link", hint, errno.ELOOP) from e
        raise refuse(path, f"it is a {kind_of(st.st_mode)}, not a regular file", hint) from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refuse(path, f"it is a {kind_of(st.st_mode)}, not a regular file", hint)
        if flags & os.O_ACCMODE != os.O_RDONLY and st.st_nlink != 1:
            raise refuse(path, f"it has {st.st_nlink - 1} other hard link(s)", hint)
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


def write_all(fd: int, data: bytes, what: str) -> None:
    """``os.write`` until all of ``data`` is out: a short write is not an error by itself."""
    view = memoryview(data)
    while view:  # bounded: every turn writes at least one byte or raises
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, f"{what} write made no progress")
        view = view[written:]
