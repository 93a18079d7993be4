"""The spool directory: made when missing, with a mode that says who shares it.

``emit_every``, ``with-system-metrics`` and the gunicorn hooks all create a missing spool the
same way, so a shared spool is set up once, by whichever process comes first, and never through
a link someone planted where the spool should be.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat

from ..errors import SpoolError, UnsafeFileError
from ..prometheus.segment_emitter import Options

__all__ = ["PRIVATE_SPOOL_MODE", "SHARED_SPOOL_MODE", "ensure_spool", "spool_mode_for", "spool_of"]

LOGGER = logging.getLogger("biometrics")

SHARED_SPOOL_MODE = 0o2775
"""A spool shared by a group: setgid, so every entry takes the directory's group whoever makes
it, and group-writable, so each writer in the group and ``serve`` (a member) can create and
delete segments.  Pair it with group-writable segments, ``Options(mode=0o664)``, so ``serve``
can claim them exclusively."""
PRIVATE_SPOOL_MODE = 0o755
"""A spool of one user (writers and ``serve`` alike): others may read, only the owner writes."""


def spool_of(options: Options) -> str:
    """The directory ``options`` writes its segments in ("" for the working directory)."""
    return os.path.dirname(os.fspath(options.prefix))


def spool_mode_for(options: Options) -> int:
    """The mode a created spool gets by default: shared when the segments are group-writable.

    One setting then says "shared with my group" (``Options(mode=0o664)``) for files and
    directory alike; segments readable only by their owner keep a private spool.
    """
    return SHARED_SPOOL_MODE if options.mode & stat.S_IWGRP else PRIVATE_SPOOL_MODE


def ensure_spool(
    directory: str, mode: int, *, uid: int | None = None, gid: int | None = None
) -> bool:
    """Create ``directory`` if it is missing; True if this call made it.

    Missing ancestors are made as ``mkdir -p`` makes them (the umask applies, and links among
    the existing ancestors are followed: where the spool lives is the caller's choice).  The
    spool itself is made by one ``mkdir``, which never follows a link (a dangling link in its
    place is refused, not a directory made at its target), then opened ``O_NOFOLLOW`` and given
    ``mode`` exactly by ``fchmod``, whatever the umask, and ``uid``/``gid`` when given (the
    gunicorn master making the spool its workers write), only while it is still the directory
    this process owns.  An existing spool, or a link to one, is never changed.  Raises
    ``OSError`` (``SpoolError`` when something else stands in its place).
    """
    if not directory or os.path.isdir(directory):
        return False
    parent = os.path.dirname(os.path.abspath(directory))
    if not os.path.exists(parent):
        os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(directory, mode & 0o777)  # never wider than asked while it is not yet chmod-ed
    except FileExistsError:
        if os.path.isdir(directory):
            return False  # another process made it first: theirs to set up
        raise SpoolError(errno.EEXIST, f"spool {directory!r} exists and is not a directory (a "
                         "file, or a link to nothing): remove it or choose another spool",
                         directory) from None  # fmt: skip
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            raise UnsafeFileError(errno.EPERM, f"refusing to chmod {directory}: it was replaced "
                                  "by another user's directory after this process made it",
                                  directory)  # fmt: skip
        os.fchmod(fd, mode)
        owner = -1 if uid is None or uid == os.geteuid() else uid
        group = -1 if gid is None or gid == os.getegid() else gid
        if owner != -1 or group != -1:
            os.fchown(fd, owner, group)
    finally:
        os.close(fd)
    with contextlib.suppress(Exception):
        LOGGER.info("biometrics: created spool %s (mode %o)", directory, mode)
    return True
