"""What the exporter and the shipper both do to a spool: lock a state, move files, skip files.

Both consume segments claimed by a :class:`~biometrics.prometheus.Watcher`; what differs is
what counts as consumed (journaled for the exporter, acknowledged by the remote for the
shipper).  The file moves, the quarantine sidecar and the skip-until-changed rule are shared so
a segment is handled the same way whichever daemon gives up on it.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import shutil
from collections.abc import Sequence

from ..errors import StateError

__all__ = ["SkipList", "in_spool", "lock_state", "move", "quarantine"]

_MAX_LINES = 100


def in_spool(given: str | None, spool: str, *default: str) -> str:
    """``given``, or the default place for it under the spool."""
    return given or os.path.join(spool, *default)


def lock_state(path: str, what: str, hint: str) -> int:
    """Create and flock ``path``: one daemon per state; the fd is the lock, keep it open."""
    directory = os.path.dirname(path)
    try:
        if directory:
            os.makedirs(directory, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
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


def move(path: str, directory: str, *, rename_on_clash: bool = True) -> str:
    """Move ``path`` into ``directory``; a name clash gets ``.1``, ``.2``...

    Without ``rename_on_clash`` a clash raises ``FileExistsError`` instead: the outbox must keep
    names, which carry the source and the time.
    """
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    target = os.path.join(directory, base)
    for n in itertools.count(1):
        if not os.path.lexists(target):
            break
        if not rename_on_clash:
            raise FileExistsError(errno.EEXIST, "already in the outbox", target)
        target = os.path.join(directory, f"{base}.{n}")
    shutil.move(path, target)
    return target


def quarantine(path: str, directory: str, reason: str, details: Sequence[object] = ()) -> str:
    """Move ``path`` to ``directory`` with a ``.error`` sidecar saying why, line by line."""
    target = move(path, directory)
    lines = [f"{path}: quarantined: {reason}"]
    lines += [str(d) for d in details[:_MAX_LINES]]
    if len(details) > _MAX_LINES:
        lines.append(f"... and {len(details) - _MAX_LINES} more")
    with open(target + ".error", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return target


class SkipList:
    """Files that failed for a reason of their own (unreadable, unremovable).

    They are not retried until they change, so one bad file is never looped on.  Never add a
    file for a failure of the daemon's own volume (a full state journal): a finished segment
    never changes, so it would be stranded; those are retried with a backoff instead.
    """

    def __init__(self) -> None:
        self._skipped: dict[str, tuple[int, int]] = {}

    def add(self, path: str) -> None:
        """Skip ``path`` as it is now."""
        try:
            st = os.stat(path)
        except OSError:
            return
        self._skipped[path] = (st.st_mtime_ns, st.st_size)

    def skipped(self, path: str) -> bool:
        """True while ``path`` is skipped and unchanged (or gone)."""
        if path not in self._skipped:
            return False
        try:
            st = os.stat(path)
        except OSError:
            del self._skipped[path]
            return True
        if self._skipped[path] == (st.st_mtime_ns, st.st_size):
            return True
        del self._skipped[path]
        return False
