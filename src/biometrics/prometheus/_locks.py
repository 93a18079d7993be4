"""Whole-file record locks that interoperate with the Rust crate's POSIX ``fcntl`` locks.

Open-file-description (OFD) locks are preferred: they conflict with POSIX record locks (so a
Rust writer and a Python reader see each other), they belong to the open file rather than the
process (so two threads of one process conflict, as they must), and closing one descriptor of a
file does not silently drop a lock held through another.  Where OFD locks do not exist we fall
back to POSIX locks through ``fcntl.lockf`` (same wire behaviour, weaker within one process).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

_OFD_SETLK: int | None = getattr(fcntl, "F_OFD_SETLK", None)
_OFD_SETLKW: int | None = getattr(fcntl, "F_OFD_SETLKW", None)
# struct flock on Linux LP64: short l_type, short l_whence, off_t l_start, off_t l_len,
# pid_t l_pid (must be 0 for OFD locks), padded to 32 bytes.
_FLOCK = "hhqqi4x"
_BUSY = (errno.EAGAIN, errno.EACCES)

OFD_LOCKS = (
    _OFD_SETLK is not None and struct.calcsize(_FLOCK) == 32 and os.uname().sysname == "Linux"
)
"""Whether this platform gives us open-file-description locks."""


def _ofd(fd: int, kind: int, wait: bool) -> bool:
    assert _OFD_SETLK is not None and _OFD_SETLKW is not None
    request = struct.pack(_FLOCK, kind, os.SEEK_SET, 0, 0, 0)
    try:
        fcntl.fcntl(fd, _OFD_SETLKW if wait else _OFD_SETLK, request)
    except OSError as e:
        if e.errno in _BUSY and not wait:
            return False
        raise
    return True


def _posix(fd: int, kind: int, wait: bool) -> bool:
    op = fcntl.LOCK_EX if kind == fcntl.F_WRLCK else fcntl.LOCK_SH
    try:
        fcntl.lockf(fd, op if wait else op | fcntl.LOCK_NB, 0, 0, os.SEEK_SET)
    except OSError as e:
        if e.errno in _BUSY and not wait:
            return False
        raise
    return True


def lock(fd: int, *, exclusive: bool, wait: bool) -> bool:
    """Lock the whole file; False when ``wait`` is False and another holder conflicts."""
    kind = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
    return (_ofd if OFD_LOCKS else _posix)(fd, kind, wait)
