"""The shipper: every timestamped sample of a spool's segments, to a remote-write receiver.

Segments are claimed oldest first and read line by line into ``concurrency`` shards (a series
always into the same one, by a hash of its labels); a shard full at ``max_samples_per_request``
samples becomes a request, and each shard's requests are sent in order by its own thread
(:mod:`.shards`), so each series' samples arrive in time order while the shards run side by
side.  A segment leaves the spool only when every request that carried its samples, in every
shard, was acknowledged with a 2xx (at-least-once).  The lines each shard got acknowledged are
recorded in a small progress file after every acknowledgement, so a shipper killed half-way
through a large segment resumes each shard after its last acknowledged line instead of sending
it all again.

This module is the claim / read / settle loop; :mod:`.reader` turns lines into encoded samples,
:mod:`.delivery` sends the requests and decides what each answer means, and the spool handling
is the one both daemons share (:class:`~biometrics._daemon.consumer.SpoolConsumer`).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

from .._daemon.consumer import Claimed, Disposal, SpoolConsumer, Words
from .._daemon.logfmt import log
from .._daemon.preflight import check_places
from .._daemon.safe_open import lock_state
from ..errors import SegmentError
from ..prometheus.parser import Parse
from .delivery import Clock, Delivery, _StoppedError
from .metrics import ShipMetrics
from .options import ShipOptions
from .progress import FileId, Progress
from .reader import Reader, Target
from .shards import Request, Shards
from .wire import SeriesParts

__all__ = ["Shipper"]

_WORDS = Words(done="shipped", if_kept="it will be sent again")


@dataclass(eq=False, slots=True)
class _Segment:
    """A claimed segment and how far its samples got; hashed by identity (a request's key)."""

    claimed: Claimed
    file: FileId
    sink: Parse
    """Collects the segment's problems as the parser reports them (it is never iterated)."""
    floors: list[int]
    """Per shard: every sample of that shard on a line up to this one was acknowledged."""
    sent: list[int] = field(default_factory=list)
    """Per shard: the last line read into a request handed to that shard."""
    read: int = 0
    """Lines read so far."""
    waiting: int = 0
    """Requests handed over with samples of it and not answered yet."""
    complete: bool = False
    """Read to its end: it can be let go once nothing of it waits to be sent or answered."""
    rejected: str | None = None
    """Why the remote refused its samples for good; it then goes to quarantine."""


@dataclass(slots=True)
class _Batch:
    """The request being built for one shard: each segment's series, in the order read."""

    parts: dict[_Segment, SeriesParts] = field(default_factory=dict)


class Shipper:
    """Ships one spool.  ``open``, then ``run`` (or ``ship_pass`` at your own pace), ``close``.

    Construction refuses a token, password or CA file that cannot be used
    (:class:`~biometrics.errors.SecretFileError`).  ``clock`` is for tests: delivery's backoff,
    deadlines and waits read it.
    """

    def __init__(
        self,
        options: ShipOptions,
        metrics: ShipMetrics | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.options = options
        self.metrics = metrics or ShipMetrics()
        self._delivery = Delivery(options, self.metrics, clock)
        self._consumer = SpoolConsumer(options.spool, options.places, self.metrics, _WORDS)
        self._progress = Progress(options.state_path)
        self._reader = Reader(options, self.metrics)
        self._open: list[_Segment] = []
        self._batches = [_Batch() for _ in range(options.concurrency)]
        self._counts = [0] * options.concurrency
        """Samples in each shard's batch; the reader keeps it, as it appends."""
        self._shards: Shards[_Segment] | None = None
        self._lock_fd: int | None = None

    @property
    def blocked(self) -> int | None:
        """The HTTP status the remote blocks us with (401, 404...), None when not blocked."""
        return self._delivery.blocked

    @property
    def last_failure(self) -> str | None:
        """The last answer that was not an acknowledgement, for messages; None after one."""
        return self._delivery.last_failure

    def open(self) -> None:
        """Check the spool and the state, lock the progress file and load it.

        Raises :class:`~biometrics.errors.SpoolError` for a missing or unusable spool (it is
        never created: a mistyped one would be watched forever) and
        :class:`~biometrics.errors.StateError` for the progress file or its lock.
        """
        opts = self.options
        places = [("--archive", opts.archive), ("--quarantine", opts.quarantine_path)]
        missing = "check the path, or create it if the emitters have not yet"
        check_places(opts.spool, places, [opts.state_path, opts.state_path + ".lock"],
                     missing=missing)  # fmt: skip
        self._lock_fd = lock_state(opts.state_path + ".lock", f"spool {opts.spool} (shipping)",
                                   "give this one its own --state")  # fmt: skip
        self._progress.load(opts.spool)

    def close(self) -> None:
        """Release the lock and the connections."""
        self._delivery.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Shipper:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, stop: threading.Event) -> None:
        """Ship until ``stop`` is set; a request being retried is abandoned (and kept)."""
        while not stop.is_set():
            try:
                self.ship_pass(stop)
            except Exception as e:
                self.metrics.failures.click()
                log(logging.ERROR, "ship pass failed; retrying in 1 s", error=repr(e))
                stop.wait(1.0)
            stop.wait(self.options.poll_interval)

    # -- one pass -------------------------------------------------------------------------

    def ship_pass(
        self, stop: threading.Event | None = None, *, deadline: float | None = None
    ) -> bool:
        """Ship every finished segment there now; False if ``stop`` cut the pass short.

        ``deadline`` (a ``time.monotonic()`` value, or the clock's) also cuts it short: waits
        and requests are shortened to end by then, so ``ship --once`` cannot hang on an absent
        remote.
        """
        stop = stop or threading.Event()
        self._delivery.deadline = deadline
        try:
            candidates = self._consumer.candidates()
        except SegmentError as e:
            self.metrics.failures.click()
            log(logging.ERROR, "cannot list the spool; retrying", error=e.strerror)
            return False
        self._shards = Shards(self._delivery, self.metrics, self.options.concurrency)
        try:
            for path in candidates:
                if stop.is_set():
                    return False
                segment = self._claim(path)
                if segment is None:
                    continue
                self._open.append(segment)
                self._read(segment, stop)
                segment.complete = True
                if len(self._open) >= self.options.max_open_segments:
                    self._flush(stop)
                else:
                    self._settle()
            self._flush(stop)
            if self._progress.dirty:
                self._save_progress()
            return True
        except _StoppedError:
            return False
        finally:
            self._shards.close()
            if self._shards.collect(self._apply, raising=False):  # what was acknowledged counts
                self._save_progress()
            self._shards = None
            for segment in self._open:
                segment.claimed.reader.close()
            self._open.clear()
            for batch in self._batches:
                batch.parts.clear()
            self._counts[:] = [0] * len(self._counts)
            self._measure_backlog()

    def _claim(self, path: str) -> _Segment | None:
        claimed = self._consumer.claim(path)
        if claimed is None:
            return None
        file = FileId.of(claimed.reader.fileno())
        shards = self.options.concurrency
        floors = self._progress.acked(claimed.name, file, shards)
        return _Segment(claimed, file, Parse((), path=claimed.path), floors, list(floors))

    def _read(self, segment: _Segment, stop: threading.Event) -> None:
        claimed = segment.claimed

        def cut(shard: int, line: int) -> Target | None:
            segment.read = line
            self._cut(shard, stop)
            if segment.rejected is not None:
                return None
            target[0][shard] = self._batches[shard].parts.setdefault(segment, {})
            return target

        target: Target = ([b.parts.setdefault(segment, {}) for b in self._batches], self._counts)
        segment.read = self._reader.read(
            claimed.reader, sink=segment.sink, source=claimed.source,
            default_ms=claimed.default_ms, floors=segment.floors, target=target, cut=cut,
        )  # fmt: skip

    # -- requests ---------------------------------------------------------------------------

    def _cut(self, shard: int, stop: threading.Event) -> None:
        """Hand shard ``shard``'s batch over as a request (waiting if the shard is behind)."""
        assert self._shards is not None
        batch = self._batches[shard]
        parts = {segment: part for segment, part in batch.parts.items() if part}
        batch.parts = {}
        self._counts[shard] = 0
        if not parts:
            return
        lines = {}
        for segment in parts:
            lines[segment] = (segment.sent[shard] + 1, segment.read)
            segment.sent[shard] = segment.read
            segment.waiting += 1
        self._shards.submit(Request(shard, parts, lines), stop, self._apply)
        if self._shards.collect(self._apply):
            self._save_progress()

    def _flush(self, stop: threading.Event) -> None:
        """Send every batch, wait for every answer, and let go of the finished segments."""
        assert self._shards is not None
        for shard in range(len(self._batches)):
            self._cut(shard, stop)
        self._shards.drain(stop, self._apply)
        self._save_progress()
        self._settle()

    def _apply(self, request: Request[_Segment]) -> None:
        """An answered request: each of its segments got that far in its shard."""
        if not request.answered:  # stopped first: its segments must stay
            return
        shard = request.shard
        for segment, (_, last) in request.lines.items():
            segment.waiting -= 1
            if segment.rejected is None and segment not in request.refused:
                segment.floors[shard] = max(segment.floors[shard], last)
                self._progress.record(segment.claimed.name, segment.file, segment.floors)

    def _save_progress(self) -> None:
        try:
            self._progress.save()
        except OSError as e:
            log(logging.WARNING, "cannot record ship progress; a restart may re-send samples",
                path=self._progress.path, error=str(e))  # fmt: skip

    # -- finishing segments -----------------------------------------------------------------

    def _settle(self) -> None:
        """Finish every complete segment that has nothing waiting to be sent or answered."""
        if self._shards is not None:
            self._shards.collect(self._apply)
        keep = []
        for segment in self._open:
            if (
                segment.complete
                and not segment.waiting
                and not any(batch.parts.get(segment) for batch in self._batches)
            ):
                try:
                    self._finish(segment)
                finally:
                    segment.claimed.reader.close()
            else:
                keep.append(segment)
        self._open = keep

    def _finish(self, segment: _Segment) -> None:
        parse = segment.sink
        self._progress.forget(segment.claimed.name)
        reason = None
        if segment.rejected is not None:
            reason = f"the remote rejected its samples: {segment.rejected}"
        elif parse.malformed:
            reason = f"{len(parse.malformed)} malformed line(s); the other lines were delivered"
        fate = self._consumer.dispose(segment.claimed.reader, reason, parse.problems)
        if fate is Disposal.DELETED or fate is Disposal.ARCHIVED:
            self.metrics.segments.click()
            log(logging.DEBUG, "segment shipped", path=segment.claimed.path)

    def _measure_backlog(self) -> None:
        try:
            count, size = self._consumer.watcher.backlog()
        except SegmentError:
            return
        self.metrics.backlog.set(count)
        self.metrics.backlog_bytes.set(size)
