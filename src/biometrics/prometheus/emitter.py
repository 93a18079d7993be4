"""The file Emitter: readings appended to ``<prefix><epoch_ms>.prom`` segments, locked meanwhile.

The file contract (see docs/ARCHITECTURE.md) in short: a segment is created exclusively and
write-locked *before* its final name exists (made under a temporary name the Watcher ignores,
then hard-linked into place without overwriting), so nobody can consume it half-written; it
holds Prometheus text lines with millisecond timestamps; it is finished (flushed, unlocked,
never written again) on rotation, ``close()`` or process exit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from .. import _forks
from ..errors import InvalidValueError, SegmentError
from ..sensors import Counter
from . import _locks
from ._text import Family, FamilyEmitter, metadata_lines, sample_line

__all__ = ["Emitter", "Options", "child_prefix"]

_BUFFER = 64 * 1024
_NAME_CLASH_TRIES = 10_000
_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK)


@dataclass(frozen=True)
class Options:
    """Where and how segments are written.

    ``flush_interval`` accepts seconds or a ``timedelta``; ``prefix`` may include a directory
    (``/var/spool/biometrics/web.``).  ``mode`` is applied to each segment exactly (umask or
    not); the directory itself is never touched.
    """

    segment_size: int = 64 * 2**20
    flush_interval: float | timedelta = 30.0
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
        self._finalizer = weakref.finalize(self, _Holder.finish, self._holder)
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
        ts = str(int(now_ms))
        with self._lock:
            segment = self._segment_for(int(now_ms))
            parts = []
            for family in families:
                if family.name not in segment.families:
                    segment.families.add(family.name)
                    parts.append(metadata_lines(family))
                parts.extend(sample_line(s, ts) for s in family.samples)
            data = "".join(parts).encode()
            segment.buffer += data
            segment.size += len(data)
            if len(segment.buffer) >= _BUFFER:
                self._guard(segment, segment.drain)

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

    def _segment_for(self, now_ms: int) -> _Segment:
        options = self._options
        segment = self._holder.segment
        if (
            segment is not None
            and now_ms > segment.last_ms
            and (
                segment.size >= options.segment_size
                or now_ms - segment.start_ms >= options.flush_interval_ms
            )
        ):
            self._guard(segment, self._holder.finish)
            segment = None
        if segment is None:
            segment = self._create(now_ms)
            self._holder.segment = segment
        segment.last_ms = max(segment.last_ms, now_ms)
        return segment

    def _create(self, now_ms: int) -> _Segment:
        prefix = os.fspath(self._options.prefix)
        directory, base = os.path.split(prefix)
        temp = os.path.join(directory, f".{base}{now_ms}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as e:
            self.failures.click()
            raise SegmentError(
                e.errno, f"cannot create a segment next to {prefix!r}: {e.strerror}", temp
            ) from e
        try:
            if not _locks.lock(fd, exclusive=True, wait=False):
                raise SegmentError(
                    errno.EAGAIN, f"fresh file {temp} is locked by someone else", temp
                )
            os.fchmod(fd, self._options.mode)
            path = self._publish(temp, fd, prefix, now_ms)
        except OSError as e:
            self.failures.click()
            os.close(fd)
            _unlink_quietly(temp)
            if isinstance(e, SegmentError):
                raise
            final = f"{prefix}{now_ms}.prom"
            raise SegmentError(
                e.errno, f"cannot create segment {final}: {e.strerror}", final
            ) from e
        _unlink_quietly(temp)
        self.segments.click()
        return _Segment(fd, path, now_ms)

    @staticmethod
    def _publish(temp: str, fd: int, prefix: str, now_ms: int) -> str:
        """Give the locked file its final name, never overwriting: on a clash, the next ms."""
        for ms in range(now_ms, now_ms + _NAME_CLASH_TRIES):
            path = f"{prefix}{ms}.prom"
            try:
                os.link(temp, path)
                return path
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
                return path
        raise SegmentError(
            errno.EEXIST,
            f"{_NAME_CLASH_TRIES} segment names taken after {prefix}{now_ms}.prom",
            prefix,
        )

    def flush(self) -> None:
        """Write buffered lines to the segment (it stays locked and open)."""
        with self._lock:
            segment = self._holder.segment
            if segment is not None:
                self._guard(segment, segment.drain)

    def close(self) -> None:
        """Finish the open segment: flush, unlock, close.  Idempotent."""
        with self._lock:
            segment = self._holder.segment
            if segment is not None:
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


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
