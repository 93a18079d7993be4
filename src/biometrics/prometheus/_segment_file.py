"""One segment file on disk: created exclusively, locked, then published under its final name.

Kept apart from the emitter's bookkeeping (stamps, rotation, fork) because this is where the
file contract's creation clause lives (see docs/ARCHITECTURE.md): the seed created the final
name and then locked it, leaving a moment in which a reader could lock the empty file, consume
and delete it while the writer went on writing into a deleted file.  Here the final name only
ever exists on an already locked file.

Creation races.  The Rust crate's Watcher offers every entry, hidden temporaries included: it
may lock our fresh temporary before we do, or lock, read and unlink it.  We then start again
under a fresh temporary name, a bounded number of times.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from dataclasses import replace

from ..errors import SegmentError
from . import _locks
from .exposition import ExpositionFamily, RenderedSample

__all__ = ["EMITTED", "END_LINE", "OpenSegment", "SegmentHolder", "create_segment"]

END_LINE = b"# END\n"
"""A segment's last line when its writer stopped cleanly: live-only gauges leave serve's merge."""
EMITTED = b"# EMITTED "
"""Starts the line ``# EMITTED <stamp>`` that follows every emission's lines (see the emitter)."""
_UNSET = object()
_GROUPED = frozenset(("histogram", "summary"))
"""Family types whose samples per label set are one reading: written together or not at all."""
_NAME_CLASH_TRIES = 10_000
_TEMP_TRIES = 100
_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK)


class OpenSegment:
    """One open, locked segment: its descriptor, name, times and unwritten bytes.

    ``start_ms`` is the stamp of its first reading, ``name_ms`` the time in its name (never at
    or before the writer's previous segment's, so it may be later than ``start_ms``).

    What only this segment knows lives here, so it ends with the segment (rotation, close, an
    abandoned write, a fork) and a new segment starts afresh: the families whose metadata it
    carries, the value it last wrote per series (``written``: a series not in it is written
    in full at its next emission), and ``emission``, the stamp of the emission under way whose
    ``# EMITTED`` marker is still due.
    """

    __slots__ = (
        "buffer",
        "emission",
        "families",
        "fd",
        "last_ms",
        "name_ms",
        "path",
        "size",
        "start_ms",
        "written",
    )

    def __init__(self, fd: int, path: str, start_ms: int, name_ms: int) -> None:
        self.fd = fd
        self.path = path
        self.start_ms = start_ms
        self.name_ms = name_ms
        self.last_ms = start_ms
        self.size = 0
        self.buffer = bytearray()
        self.families: set[str] = set()
        self.written: dict[object, object] = {}
        self.emission: int | None = None

    def end_emission(self) -> None:
        """Close the emission under way with its marker: a tailing reader may take it now.

        Buffered only: the caller drains (``flush``) or finishes the segment right after.
        """
        stamp = self.emission
        if stamp is not None:
            self.emission = None
            data = b"%s%d\n" % (EMITTED, stamp)
            self.buffer += data
            self.size += len(data)

    def unwritten(self, family: ExpositionFamily) -> ExpositionFamily:
        """The family less what this segment already wrote with the same value text.

        A histogram's samples of one label set go as one group.  What is kept is recorded in
        ``written``: the caller writes it.
        """
        samples = family.samples
        written = self.written
        out: list[RenderedSample] = []
        if family.type not in _GROUPED:
            for sample in samples:
                name, labels, value = sample
                if written.get((name, labels), _UNSET) != value:
                    written[name, labels] = value
                    out.append(sample)
        else:
            groups: dict[str, list[RenderedSample]] = {}
            for sample in samples:
                groups.setdefault(_without_le(sample[1]), []).append(sample)
            for base, group in groups.items():
                whole = tuple(group)
                if written.get((family.name, base, None), _UNSET) != whole:
                    written[family.name, base, None] = whole
                    out.extend(group)
        return family if len(out) == len(samples) else replace(family, samples=out)

    def drain(self) -> None:
        """Write the buffered bytes; what was written leaves the buffer even on an error."""
        buffer = self.buffer
        written = 0
        try:
            with memoryview(buffer) as view:
                while written < len(view):
                    written += os.write(self.fd, view[written:])
        finally:
            del buffer[:written]

    def finish(self) -> None:
        """End the emission under way, write what is buffered and close (the lock goes too)."""
        try:
            self.end_emission()
            self.drain()
        finally:
            os.close(self.fd)


class SegmentHolder:
    """The emitter's open segment, reachable from the exit-time finalizer without the emitter."""

    __slots__ = ("segment",)

    def __init__(self) -> None:
        self.segment: OpenSegment | None = None

    def finish(self) -> None:
        """Finish the open segment, if one is open; it is let go of first, even on an error."""
        segment, self.segment = self.segment, None
        if segment is not None:
            segment.finish()

    def end(self) -> None:
        """Finish the open segment with ``# END`` (the writer is done), if one is open."""
        segment = self.segment
        if segment is not None:
            segment.end_emission()  # the last marker before ``# END``
            segment.buffer += END_LINE
            self.finish()


def _without_le(labels: str) -> str:
    """A bucket's rendered label set less its ``le`` (always rendered last), or ``labels``.

    Label values escape their quotes, so ``le="`` after ``{`` or ``,`` is the label itself.
    """
    at = labels.rfind('le="')
    if at > 0 and labels[at - 1] in "{,":
        return labels[: at - 1] + "}" if labels[at - 1] == "," else ""
    return labels


def create_segment(prefix: str, stamp: int, first: int, mode: int) -> OpenSegment:
    """A new segment for readings stamped ``stamp``, locked, named ``<prefix><ms>.prom``.

    ``ms`` is the first free time from ``first`` on.  The file is created under a temporary
    name, locked, ``fchmod``-ed to ``mode`` and only then linked to its final name, so the final
    name never exists unlocked.  A temporary taken from under us (locked, or unlinked, by a
    Watcher that offers hidden files too) is abandoned and the creation starts again under a
    fresh temporary name.  Every failure is a :class:`SegmentError`.
    """
    directory, base = os.path.split(prefix)
    for _ in range(_TEMP_TRIES):
        temp = os.path.join(directory, f".{base}{stamp}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue  # another writer's random name, or a stale leftover: draw again
        except OSError as e:
            raise SegmentError(
                e.errno, f"cannot create a segment next to {prefix!r}: {e.strerror}", temp
            ) from e
        try:
            published = _lock_and_publish(temp, fd, prefix, first, mode)
        except OSError as e:
            _unlink_if_ours(temp, fd)
            os.close(fd)
            if isinstance(e, SegmentError):
                raise
            final = f"{prefix}{first}.prom"
            raise SegmentError(
                e.errno, f"cannot create segment {final}: {e.strerror}", final
            ) from e
        if published is None:  # the temporary was taken from under us
            _unlink_if_ours(temp, fd)
            os.close(fd)
            continue
        path, ms = published
        _unlink_if_ours(temp, fd)
        return OpenSegment(fd, path, stamp, ms)
    final = f"{prefix}{first}.prom"
    raise SegmentError(
        errno.EAGAIN,
        f"cannot create segment {final}: {_TEMP_TRIES} fresh temporary files in a row were "
        f"locked or removed by another process before we could lock them; something is "
        f"consuming hidden files (names starting with '.') in {directory or '.'!r}: make it "
        "skip them, or give this emitter a directory of its own",
        final,
    )


def _lock_and_publish(
    temp: str, fd: int, prefix: str, first: int, mode: int
) -> tuple[str, int] | None:
    """Lock the fresh file and give it its final name; None if it was taken from under us."""
    if not _locks.lock(fd, exclusive=True, wait=False):
        return None  # a reader locked our temporary between our create and our lock
    if not _same_file(temp, fd):
        return None  # ... or locked, read and unlinked it, then let go: ours is nameless
    os.fchmod(fd, mode)
    try:
        return _publish(temp, prefix, first)
    except FileNotFoundError:
        return None  # unlinked since the check (by a writer that ignores our lock)


def _publish(temp: str, prefix: str, first: int) -> tuple[str, int]:
    """Give the locked file its final name, never overwriting: on a clash, the next ms."""
    for ms in range(first, first + _NAME_CLASH_TRIES):
        path = f"{prefix}{ms}.prom"
        try:
            os.link(temp, path)
            return path, ms
        except FileExistsError:
            continue
        except OSError as e:
            if e.errno not in _NO_HARD_LINKS:
                raise
            # No hard links here (some network and FAT file systems): a rename cannot refuse
            # to overwrite portably, so check-then-rename with O_EXCL's guarantee lost.
            if os.path.lexists(path):
                continue
            os.rename(temp, path)
            return path, ms
    raise SegmentError(
        errno.EEXIST,
        f"{_NAME_CLASH_TRIES} segment names taken after {prefix}{first}.prom",
        prefix,
    )


def _same_file(path: str, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not unlinked, not replaced)."""
    try:
        named = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_ino, named.st_dev) == (held.st_ino, held.st_dev)


def _unlink_if_ours(path: str, fd: int) -> None:
    """Remove our temporary name, but never a file someone else has put under it since."""
    with contextlib.suppress(OSError):
        if _same_file(path, fd):
            os.unlink(path)
