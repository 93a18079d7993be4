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

Changes only.  Within one segment a series is written at its first emission and afterwards
only when its value differs from what this segment last wrote for it (a histogram's or moments'
lines as one group); the first emission of every segment carries everything, with its
metadata.  A reader keeps each series' last reading, so the newest values it holds are the
same as if every emission were written whole, while an emission where little changed costs a
few lines (and no rendering) instead of every family.  Segments rotate by ``flush_interval``,
so every series is still written at least that often (remote-write series never go stale) and
a reader that starts at any segment has all series from its first emission.  (A write error
mid-emission abandons the segment; the series that emission had already passed are written at
the next one, in the new segment.)

The marker.  Every emission ends with the line ``# EMITTED <stamp>`` (a plain comment to other
readers), written after its lines at the ``flush()`` that ends it (or when a later stamp,
``close()``, ``end()`` or rotation ends it), also when nothing changed.  A reader tailing an
open segment takes only what comes before the last marker: whole emissions.  ``flush()`` also
writes the buffer out, so an emission is in the file when ``Collector.emit`` returns.

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
from typing import Any

from .. import _clock, _forks
from ..errors import InvalidValueError, SegmentError
from ..histogram import Histogram, HistogramReading
from ..moments import Moments, MomentsReading
from ..sensors import Counter, Gauge, Sensor
from ._segment_file import OpenSegment, SegmentHolder, create_segment
from .exposition import (
    ExpositionFamily,
    FamilyEmitter,
    counter_families,
    gauge_families,
    histogram_families,
    moments_families,
    segment_metadata,
)

__all__ = ["Options", "SegmentEmitter", "child_prefix"]

_BUFFER = 64 * 1024
_UNSET = object()


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

    ``flush_interval`` (60 s) is the age past which the next emission starts a new segment.
    Each segment's first emission writes every series, so it is also how long an unchanged
    series can go unwritten (with ``changes_only``): a minute keeps remote-write series far
    from Prometheus's 5 minute staleness, and a daemon tailing open segments sees each
    emission anyway (see ``# EMITTED`` in the module docstring).  A reader that takes only
    finished segments waits up to ``flush_interval`` plus one emission interval.

    ``changes_only`` (default on) writes a series in an emission only when it is new to the
    segment or changed since the segment last wrote it: a process whose counters mostly stand
    still writes a few lines per emission instead of every series and its HELP/TYPE.  Turn it
    off for readers that take one emission at a time as a complete snapshot of the process (a
    ``tail`` of the file, a reader that forgets series missing from an emission).
    """

    segment_size: int = 64 * 2**20
    flush_interval: float | timedelta = 60.0
    prefix: str | os.PathLike[str] = field(default_factory=lambda: _own_prefix("biometrics"))
    """Default ``biometrics.<host>.<pid>.`` (taken when the options are made): two processes
    writing one prefix would interleave as one source, each one's drop read as a restart."""
    mode: int = 0o644
    changes_only: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "changes_only", bool(self.changes_only))
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
        """Append the families' lines to the open segment (a new one when due), stamped.

        With ``changes_only``, a sample whose value text this segment already wrote is left
        out; a histogram's (or summary's) samples of one label set go as a group.
        """
        with self._lock:
            stamp = self._stamp_for(int(now_ms))
            segment = self._segment_for(stamp)
            if self._options.changes_only:
                families = [segment.unwritten(f) for f in families]
            self._append(segment, families, str(stamp))

    def emit_counter(self, counter: Counter, now_ms: int) -> None:
        """Take a counter reading (written only if it changed, see ``Options.changes_only``)."""
        if self._options.changes_only:
            self._emit_reading(counter, counter.read(), counter_families, now_ms)
        else:
            super().emit_counter(counter, now_ms)

    def emit_gauge(self, gauge: Gauge, now_ms: int) -> None:
        """Take a gauge reading (written only if it changed, see ``Options.changes_only``)."""
        if self._options.changes_only:
            self._emit_reading(gauge, gauge.read(), gauge_families, now_ms)
        else:
            super().emit_gauge(gauge, now_ms)

    def emit_moments(self, moments: Moments, now_ms: int) -> None:
        """Take a moments reading: all its families, or none when it did not change."""
        if self._options.changes_only:
            self._emit_reading(moments, moments.read(), moments_families, now_ms)
        else:
            super().emit_moments(moments, now_ms)

    def emit_histogram(self, histogram: Histogram, now_ms: int) -> None:
        """Take a histogram reading: all its lines, or none when it did not change."""
        if self._options.changes_only:
            reading = histogram.read()
            self._emit_reading(histogram, reading, histogram_families, now_ms)
        else:
            super().emit_histogram(histogram, now_ms)

    def _emit_reading(
        self,
        sensor: Sensor,
        reading: float | HistogramReading | MomentsReading,
        render: Callable[[Any, Any], list[ExpositionFamily]],
        now_ms: int,
    ) -> None:
        """Render and append ``reading`` unless this segment last wrote an equal one.

        Readings are compared, not texts, so an unchanged series costs a dict look-up and no
        rendering.  Equal readings render alike (``1`` and ``1.0`` read back as one value).
        The sensor object is the key (one sensor, one series; hashed by identity, cheaply).
        """
        with self._lock:
            stamp = self._stamp_for(int(now_ms))
            segment = self._segment_for(stamp)
            written = segment.written
            last = written.get(sensor, _UNSET)
            if last is reading or last == reading:
                return
            self._append(segment, render(sensor, reading), str(stamp))
            written[sensor] = reading

    def _append(self, segment: OpenSegment, families: list[ExpositionFamily], ts: str) -> None:
        parts: list[str] = []
        append = parts.append
        for family in families:
            if family.name not in segment.families:
                segment.families.add(family.name)
                append(segment_metadata(family))
            for name, labels, value in family.samples:  # sample_line, inlined: the hot loop
                append(f"{name}{labels} {value} {ts}\n")
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
        if segment is not None and segment.emission not in (None, stamp):
            segment.end_emission()  # a later stamp ended the emission without a flush
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
        segment.emission = stamp
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
        """End the emission with its ``# EMITTED`` marker and write it out (still locked).

        A reader tailing the segment then has the whole emission at once.
        """
        with self._lock:
            self._in_emission = False  # the next emit_families starts a new emission
            segment = self._holder.segment
            if segment is not None:
                segment.end_emission()
                self._guard(segment, segment.drain)

    def due(self, now_ms: int) -> bool:
        """Whether an emission at ``now_ms`` would find the open segment past its age.

        ``emit_every`` asks with its next emission's time and finishes the segment now if so:
        the segment is readable at once instead of an interval later, and every series is
        written again ``flush_interval`` after the segment's first emission, not an interval
        later.
        """
        with self._lock:
            segment = self._holder.segment
            return (
                segment is not None
                and int(now_ms) - segment.start_ms >= self._options.flush_interval_ms
            )

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
                segment.emission = None  # no emission, no marker: the segment is ``# END`` only
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
