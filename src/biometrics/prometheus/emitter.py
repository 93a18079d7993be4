"""The file Emitter: readings appended to ``<prefix><epoch_ms>.prom`` segments, locked meanwhile.

The file contract (see docs/ARCHITECTURE.md) in short: a segment is created exclusively and
write-locked *before* its final name exists (made under a temporary name our Watcher ignores,
then hard-linked into place without overwriting), so nobody can consume it half-written; it
holds Prometheus text lines with millisecond timestamps; it is finished (flushed, unlocked,
never written again) on rotation, ``close()`` or process exit.

Time.  Readers keep, per source and series, only a reading newer than the last one, so an
emitter's timestamps must rise strictly from one emission to the next.  The caller's ``now_ms``
cannot promise that: two emissions fall in one millisecond (a final ``stop()`` right after a
tick), and wall clocks step back.  So each *emission* gets a stamp ``max(now_ms, previous + 1)``,
and every line of the emission carries it.  An emission is what is taken between two
``flush()`` calls (``Collector.emit`` flushes once at the end of its batch; ``close()`` also
ends one): the first ``_take`` after a flush starts a new emission, later ones with the same or
an earlier ``now_ms`` join it (never going back), and one with a later ``now_ms`` starts a new
emission anyway, so ``emit_*`` calls without any flush still never go backwards.  Segments are
named by the stamp of their first reading, and never by a time at or before the previous
segment's name (a consumed segment's name is never reused), so names rise too.

Creation races.  The Rust crate's Watcher offers every entry, hidden temporaries included: it
may lock our fresh temporary before we do, or lock, read and unlink it.  We then start again
under a fresh temporary name, a bounded number of times.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from .. import _forks
from ..errors import InvalidValueError, SegmentError
from ..sensors import Counter
from . import _locks
from ._text import Family, FamilyEmitter, sample_line, segment_metadata

__all__ = ["Emitter", "Options", "child_prefix"]

_BUFFER = 64 * 1024
END_LINE = b"# END\n"
"""A segment's last line when its writer stopped cleanly: live-only gauges leave serve's merge."""
_NAME_CLASH_TRIES = 10_000
_TEMP_TRIES = 100
_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK)


@dataclass(frozen=True)
class Options:
    """Where and how segments are written.

    ``flush_interval`` accepts seconds or a ``timedelta``; ``prefix`` may include a directory
    (``/var/spool/biometrics/web.``).  ``mode`` is applied to each segment exactly (umask or
    not); the directory itself is never touched.

    ``flush_interval`` (10 s, :func:`~biometrics.prometheus.emit_every`'s default interval) is
    the age past which the next emission starts a new segment.  A reader takes a segment only
    once it is finished, so it bounds how long readings wait in an open one: ``emit_every``
    finishes a segment after every emission by default and then never waits for it; with
    ``finish_each=False``, or a bare ``Emitter``, a reading can wait up to ``flush_interval``
    plus one emission interval.
    """

    segment_size: int = 64 * 2**20
    flush_interval: float | timedelta = 10.0
    prefix: str | os.PathLike[str] = "biometrics."
    mode: int = 0o644

    def __post_init__(self) -> None:
        interval = self.flush_interval
        seconds = interval.total_seconds() if isinstance(interval, timedelta) else interval
        if not isinstance(seconds, int | float) or not seconds > 0:
            raise InvalidValueError(f"flush_interval must be positive, got {interval!r}")
        object.__setattr__(self, "flush_interval", float(seconds))
        if not isinstance(self.segment_size, int) or self.segment_size <= 0:
            raise InvalidValueError(
                f"segment_size must be a positive int, got {self.segment_size!r}"
            )
        if not os.fspath(self.prefix) or os.fspath(self.prefix).endswith(os.sep):
            raise InvalidValueError(
                f"prefix {self.prefix!r} must name a file prefix, e.g. 'spool/app.' "
                "(a directory alone would make segments named '<epoch>.prom')"
            )

    @property
    def flush_interval_ms(self) -> int:
        """The flush interval in milliseconds."""
        return int(float(self.flush_interval) * 1000)  # type: ignore[arg-type]

    @classmethod
    def per_process(
        cls,
        spool_dir: str | os.PathLike[str],
        job: str,
        *,
        host: str | None = None,
        pid: int | None = None,
        **options: object,
    ) -> Options:
        """Options whose prefix ``<spool_dir>/<job>.<host>.<pid>.`` is unique to this process.

        Many processes can then share one spool directory with no clash, and the exporter sees
        each process as its own source.
        """
        host = host if host is not None else socket.gethostname()
        pid = pid if pid is not None else os.getpid()

        def safe(part: str) -> str:
            return "".join(c if c.isalnum() or c in "-_" else "_" for c in part) or "_"

        prefix = os.path.join(os.fspath(spool_dir), f"{safe(job)}.{safe(host)}.{pid}.")
        return cls(prefix=prefix, **options)  # type: ignore[arg-type]


class _Segment:
    """One open, locked segment: its descriptor, name, start time and unwritten bytes."""

    __slots__ = ("buffer", "families", "fd", "last_ms", "path", "size", "start_ms")

    def __init__(self, fd: int, path: str, start_ms: int) -> None:
        self.fd = fd
        self.path = path
        self.start_ms = start_ms
        self.last_ms = start_ms
        self.size = 0
        self.buffer = bytearray()
        self.families: set[str] = set()

    def drain(self) -> None:
        buffer = self.buffer
        written = 0
        try:
            with memoryview(buffer) as view:
                while written < len(view):
                    written += os.write(self.fd, view[written:])
        finally:
            del buffer[:written]

    def finish(self) -> None:
        try:
            self.drain()
        finally:
            os.close(self.fd)


class _Holder:
    """The emitter's open segment, reachable from the exit-time finalizer without the emitter."""

    __slots__ = ("segment",)

    def __init__(self) -> None:
        self.segment: _Segment | None = None

    def finish(self) -> None:
        segment, self.segment = self.segment, None
        if segment is not None:
            segment.finish()

    def end(self) -> None:
        """Finish the open segment with ``# END`` (the writer is done), if one is open."""
        segment = self.segment
        if segment is not None:
            segment.buffer += END_LINE
            self.finish()


class Emitter(FamilyEmitter):
    """An :class:`biometrics.Emitter` that appends to rotating, locked segment files.

    Thread-safe.  Use as a context manager, or call ``close()``; an open segment is also finished
    at interpreter exit.  Write errors raise :class:`SegmentError` naming the file, are counted
    in ``failures``, and abandon the segment: its complete lines stay readable and the next
    emission starts a new one.
    """

    def __init__(self, options: Options | None = None) -> None:
        self._options = options or Options()
        self._lock = threading.Lock()
        self._holder = _Holder()
        self._pid = os.getpid()
        self._stamp: int | None = None  # the current (or last) emission's stamp
        self._in_emission = False  # a _take happened since the last flush
        self._last_name: int | None = None  # the time in the last segment's name
        self._finalizer = weakref.finalize(self, _Holder.end, self._holder)
        _forks.on_fork(self, after_in_child=Emitter.after_fork)
        self.failures = Counter("biometrics.prometheus.emit.failure")
        """Write and create errors, for registering with a Collector."""
        self.segments = Counter("biometrics.prometheus.emit.segments")
        """Segments created."""

    @property
    def options(self) -> Options:
        """The options this emitter writes with."""
        return self._options

    @property
    def path(self) -> str | None:
        """The segment being written, if any."""
        segment = self._holder.segment
        return None if segment is None else segment.path

    def _take(self, families: list[Family], now_ms: int) -> None:
        with self._lock:
            stamp = self._stamp_for(int(now_ms))
            ts = str(stamp)
            segment = self._segment_for(stamp)
            parts = []
            for family in families:
                if family.name not in segment.families:
                    segment.families.add(family.name)
                    parts.append(segment_metadata(family))
                parts.extend(sample_line(s, ts) for s in family.samples)
            data = "".join(parts).encode()
            segment.buffer += data
            segment.size += len(data)
            if len(segment.buffer) >= _BUFFER:
                self._guard(segment, segment.drain)

    def _stamp_for(self, now_ms: int) -> int:
        """The current emission's stamp: later than the previous emission's, never going back."""
        stamp = self._stamp
        if stamp is not None and self._in_emission and now_ms <= stamp:
            return stamp
        stamp = now_ms if stamp is None else max(now_ms, stamp + 1)
        self._stamp = stamp
        self._in_emission = True
        return stamp

    def _guard(self, segment: _Segment, action: Callable[[], None]) -> None:
        try:
            action()
        except OSError as e:
            self.failures.click()
            self._holder.segment = None
            with contextlib.suppress(OSError):
                os.close(segment.fd)
            raise SegmentError(
                e.errno,
                f"cannot write segment {segment.path}: {e.strerror}; the segment is abandoned "
                "(its complete lines stay readable) and the next emission starts a new one",
                segment.path,
            ) from e

    def _segment_for(self, stamp: int) -> _Segment:
        options = self._options
        segment = self._holder.segment
        if (
            segment is not None
            and stamp > segment.last_ms
            and (
                segment.size >= options.segment_size
                or stamp - segment.start_ms >= options.flush_interval_ms
            )
        ):
            self._guard(segment, self._holder.finish)
            segment = None
        if segment is None:
            segment = self._create(stamp)
            self._holder.segment = segment
        segment.last_ms = max(segment.last_ms, stamp)
        return segment

    def _create(self, stamp: int) -> _Segment:
        """A new locked segment for readings stamped ``stamp``, named no earlier than it.

        A temporary taken from under us (locked, or unlinked, by a Watcher that offers hidden
        files too) is abandoned and the creation starts again under a fresh temporary name.
        """
        prefix = os.fspath(self._options.prefix)
        directory, base = os.path.split(prefix)
        last = self._last_name
        first = stamp if last is None else max(stamp, last + 1)
        for _ in range(_TEMP_TRIES):
            temp = os.path.join(
                directory, f".{base}{stamp}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            )
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue  # another writer's random name, or a stale leftover: draw again
            except OSError as e:
                self.failures.click()
                raise SegmentError(
                    e.errno, f"cannot create a segment next to {prefix!r}: {e.strerror}", temp
                ) from e
            try:
                published = self._lock_and_publish(temp, fd, prefix, first)
            except OSError as e:
                self.failures.click()
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
            self._last_name = ms
            self.segments.click()
            return _Segment(fd, path, stamp)
        self.failures.click()
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
        self, temp: str, fd: int, prefix: str, first: int
    ) -> tuple[str, int] | None:
        """Lock the fresh file and give it its final name; None if it was taken from under us."""
        if not _locks.lock(fd, exclusive=True, wait=False):
            return None  # a reader locked our temporary between our create and our lock
        if not _same_file(temp, fd):
            return None  # ... or locked, read and unlinked it, then let go: ours is nameless
        os.fchmod(fd, self._options.mode)
        try:
            return self._publish(temp, prefix, first)
        except FileNotFoundError:
            return None  # unlinked since the check (by a writer that ignores our lock)

    @staticmethod
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

    def flush(self) -> None:
        """Write buffered lines to the segment (it stays locked and open); ends the emission."""
        with self._lock:
            self._in_emission = False  # the next _take starts a new emission, a new stamp
            segment = self._holder.segment
            if segment is not None:
                self._guard(segment, segment.drain)

    def close(self) -> None:
        """Finish the open segment: flush, unlock, close; ends the emission.  Idempotent."""
        with self._lock:
            self._in_emission = False
            segment = self._holder.segment
            if segment is not None:
                self._guard(segment, self._holder.finish)

    def end(self, now_ms: int | None = None) -> None:
        """The writer is done: write ``# END`` as the segment's last line and finish it.

        ``biometrics serve`` then drops this source's values from ``live_only`` gauges (its
        counters stay).  ``emit_every`` calls it after its final emission (``stop()``, exit);
        an open segment left at interpreter exit gets it too.  With no segment open, a segment
        holding only ``# END`` is written (stamped ``now_ms``, default now, as any emission),
        unless this emitter never wrote anything.  Emitting again afterwards starts a new
        segment, and the source's live values count again.
        """
        with self._lock:
            segment = self._holder.segment
            if segment is None:
                if self._stamp is None:
                    return
                now = time.time_ns() // 1_000_000 if now_ms is None else int(now_ms)
                self._in_emission = False
                segment = self._segment_for(self._stamp_for(now))
            self._in_emission = False
            segment.buffer += END_LINE
            segment.size += len(END_LINE)
            self._guard(segment, self._holder.finish)

    def after_fork(self) -> None:
        """In a forked child: drop the parent's segment unwritten, and take a prefix of our own.

        Runs by itself after ``os.fork()``; calling it again in the same process does nothing.
        The inherited descriptor is closed without writing (the parent still holds the lock and
        its buffered lines), and the prefix becomes :func:`child_prefix` of the parent's, so the
        exporter sees the child as a source of its own.
        """
        pid = os.getpid()
        if pid == self._pid:
            return
        self._lock = threading.Lock()  # another thread may have held it at the fork
        # A new source: its first emission starts afresh (the parent's stamp stays as a floor).
        self._in_emission = False
        self._last_name = None
        segment, self._holder.segment = self._holder.segment, None
        if segment is not None:
            with contextlib.suppress(OSError):
                os.close(segment.fd)
        prefix = child_prefix(os.fspath(self._options.prefix), self._pid, pid)
        self._options = replace(self._options, prefix=prefix)
        self._pid = pid

    def __enter__(self) -> Emitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def child_prefix(prefix: str, parent_pid: int, child_pid: int) -> str:
    """A forked child's prefix: the parent's pid component swapped for the child's, or appended.

    ``spool/web.host.100.`` (from :meth:`Options.per_process`) becomes ``spool/web.host.205.``;
    ``biometrics.`` becomes ``biometrics.205.``.
    """
    tail = f".{parent_pid}."
    if prefix.endswith(tail):
        return f"{prefix[: -len(tail)]}.{child_pid}."
    return f"{prefix}{child_pid}."


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
