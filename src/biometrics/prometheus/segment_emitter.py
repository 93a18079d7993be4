"""The SegmentEmitter: readings appended to ``<prefix><epoch_ms>.prom`` segments, locked meanwhile.

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
ends one): the first ``emit_families`` after a flush starts a new emission, later ones with the
same or an earlier ``now_ms`` join it (never going back), and one with a later ``now_ms`` starts
a new emission anyway, so ``emit_*`` calls without any flush still never go backwards.
Segments are named by the stamp of their first reading, and never by a time at or before the
previous segment's name (a consumed segment's name is never reused), so names rise too.

How a segment file is created, locked and published is :mod:`._segment_file`'s.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta

from .. import _clock, _forks
from ..errors import InvalidValueError, SegmentError
from ..sensors import Counter
from ._segment_file import OpenSegment, SegmentHolder, create_segment
from .exposition import ExpositionFamily, FamilyEmitter, sample_line, segment_metadata

__all__ = ["Options", "SegmentEmitter", "child_prefix"]

_BUFFER = 64 * 1024


def _own_prefix(job: str) -> str:
    """``<job>.<host>.<pid>.``: a prefix no other process writes (see ``Options.per_process``)."""
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname()) or "_"
    return f"{job}.{host}.{os.getpid()}."


@dataclass(frozen=True)
class Options:
    """Where and how segments are written.

    ``flush_interval`` accepts seconds or a ``timedelta``; ``prefix`` may include a directory
    (``/var/spool/biometrics/web.``).  ``mode`` is applied to each segment exactly (umask or
    not); the directory itself is never touched.

    ``flush_interval`` (10 s, :func:`~biometrics.runtime.emit_every`'s default interval) is
    the age past which the next emission starts a new segment.  A reader takes a segment only
    once it is finished, so it bounds how long readings wait in an open one: ``emit_every``
    finishes a segment after every emission by default and then never waits for it; with
    ``finish_each=False``, or a bare ``SegmentEmitter``, a reading can wait up to
    ``flush_interval`` plus one emission interval.
    """

    segment_size: int = 64 * 2**20
    flush_interval: float | timedelta = 10.0
    prefix: str | os.PathLike[str] = field(default_factory=lambda: _own_prefix("biometrics"))
    """Default ``biometrics.<host>.<pid>.`` (taken when the options are made): two processes
    writing one prefix would interleave as one source, each one's drop read as a restart."""
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


class SegmentEmitter(FamilyEmitter):
    """A :class:`biometrics.typing.Emitter` that appends to rotating, locked segment files.

    Thread-safe.  Use as a context manager, or call ``close()``; an open segment is also finished
    at interpreter exit.  Write errors raise :class:`SegmentError` naming the file, are counted
    in ``failures``, and abandon the segment: its complete lines stay readable and the next
    emission starts a new one.
    """

    def __init__(self, options: Options | None = None) -> None:
        self._options = options or Options()
        self._lock = threading.Lock()
        self._holder = SegmentHolder()
        self._pid = os.getpid()
        self._stamp: int | None = None  # the current (or last) emission's stamp
        self._in_emission = False  # families were emitted since the last flush
        self._last_name: int | None = None  # the time in the last segment's name
        self._finalizer = weakref.finalize(self, SegmentHolder.end, self._holder)
        _forks.on_fork(self, after_in_child=SegmentEmitter.after_fork)
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

    def emit_families(self, families: list[ExpositionFamily], now_ms: int) -> None:
        """Append the families' lines to the open segment (a new one when due), stamped."""
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

    def _guard(self, segment: OpenSegment, action: Callable[[], None]) -> None:
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

    def _segment_for(self, stamp: int) -> OpenSegment:
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

    def _create(self, stamp: int) -> OpenSegment:
        """A new locked segment for ``stamp``, named later than this emitter's previous one."""
        last = self._last_name
        first = stamp if last is None else max(stamp, last + 1)
        try:
            segment = create_segment(
                os.fspath(self._options.prefix), stamp, first, self._options.mode
            )
        except SegmentError:
            self.failures.click()
            raise
        self._last_name = segment.name_ms
        self.segments.click()
        return segment

    def flush(self) -> None:
        """Write buffered lines to the segment (it stays locked and open); ends the emission."""
        with self._lock:
            self._in_emission = False  # the next emit_families starts a new emission
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
                now = _clock.now_ms() if now_ms is None else int(now_ms)
                self._in_emission = False
                segment = self._segment_for(self._stamp_for(now))
            self._in_emission = False
            self._guard(segment, self._holder.end)

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

    def __enter__(self) -> SegmentEmitter:
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
