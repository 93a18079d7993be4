"""The exporter: consume a spool's finished segments into the store, durably, and render pages.

One thread ingests (the only writer of the store and the state files); HTTP threads only read.
A pass claims up to a batch of finished segments, folds each into the store and appends its
bytes to the journal, fsyncs the journal once, and only then deletes, archives or quarantines
the batch's files.  Segments their writers still hold are not waited for: the pass folds their
whole emissions (:mod:`.tail`), so a count is on the page one poll after it was written.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from dataclasses import dataclass

from .. import _clock
from .._daemon.consumer import Claimed, Disposal, SpoolConsumer, Words, Writing
from .._daemon.logfmt import log
from .._daemon.selfmetrics import SensorSet
from ..errors import ParseError, StateError
from ..prometheus import Parse, Reader, SlashMetrics, source_of
from .durable import DurableState
from .options import ExporterOptions
from .selfmetrics import ExporterMetrics
from .store import Store
from .tail import Tailed, Tailer

__all__ = ["Exporter"]


_BACKOFF_MAX = 30.0
_WORDS = Words(done="consumed", if_kept="it is journaled; will not re-read")


def _backoff(failures: int, poll_interval: float) -> float:
    """Seconds to wait after ``failures`` failed passes in a row: 10 polls, doubling, to 30 s.

    Long enough not to hammer a full volume (1 s at the default poll), short enough that
    ingest resumes soon after space returns; scaled by the poll so tests need not wait.
    """
    return max(poll_interval, min(_BACKOFF_MAX, 10 * poll_interval * 2.0 ** min(failures - 1, 16)))


@dataclass(slots=True)
class _Consumed:
    """A claimed segment folded into the store and journaled, waiting for the journal's sync."""

    reader: Reader
    size: int
    """Bytes journaled: what the batch's size limit counts."""
    problems: list[ParseError]
    reason: str | None = None
    """Why it goes to quarantine rather than away; None if it does not."""


class Exporter:
    """The ingest side of ``biometrics serve`` and its page (HTTP: :mod:`.app`, :mod:`.server`)."""

    def __init__(self, options: ExporterOptions) -> None:
        self.options = options
        self.store = Store(options.rules, max_series=options.max_series,
                           max_series_per_source=options.source_limit)  # fmt: skip
        self.metrics = ExporterMetrics()
        self.also_shown: list[SensorSet] = []
        """More self-metrics for the page, e.g. the shipper's when ``serve`` also ships."""
        self.consumer = SpoolConsumer(options.spool, options.places, self.metrics, _WORDS)
        """Claims, skips and disposes of the spool's segments (shared with the shipper)."""
        self.durable = DurableState(options.state_path)
        self.tailer = Tailer(self.store, self.metrics, options.batch_bytes)
        """What was taken of the segments writers still hold (in memory only: see .tail)."""
        self.ready = threading.Event()
        self._last_checkpoint = time.monotonic()
        self._journal_failures = 0
        """Passes in a row the journal failed (see _commit)."""

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> None:
        """Lock and load the state, re-ingest the journal, and fold it into a fresh snapshot."""
        os.makedirs(self.options.spool, exist_ok=True)
        self.durable.open()
        try:
            loaded = self.durable.load(self.store)
            replayed = 0
            for name, data in self.durable.replay():
                parsed = source_of(name)
                if parsed is None:  # _consume never journals such a name: the record is damaged
                    log(logging.WARNING, "journal record names no segment; not replayed",
                        journal=self.durable.journal_path, name=name)  # fmt: skip
                    continue
                self._fold(parsed[0], parsed[1], Parse([data], path=f"journal:{name}"))
                replayed += 1
            if replayed:
                self.checkpoint()
        except BaseException:
            self.durable.close()
            raise
        log(logging.INFO, "state loaded", snapshot=loaded, journal_segments=replayed,
            series=self.store.series_count(), state=self.durable.path)  # fmt: skip
        self.ready.set()

    def close(self) -> None:
        """Write the final snapshot and release the state."""
        try:
            self.checkpoint()
        finally:
            self.durable.close()

    def checkpoint(self) -> None:
        """Snapshot the store and empty the journal."""
        size = self.durable.checkpoint(self.store)
        self._last_checkpoint = time.monotonic()
        self.metrics.checkpoints.click()
        log(logging.DEBUG, "checkpoint written", bytes=size, path=self.durable.path)

    def run(self, stop: threading.Event) -> None:
        """Ingest until ``stop`` is set; the pass in hand is finished first.

        No OSError ends the loop (a full state volume, a vanished spool): the daemon must
        resume by itself once the cause is gone.  A failing pass is counted, logged once per
        streak, and retried after a backoff, so it neither dies nor spins.
        """
        poll = self.options.poll_interval
        failures = 0  # passes in a row that raised
        while not stop.is_set():
            try:
                busy = self.ingest_pass(stop=stop)
            except OSError as e:
                failures += 1
                busy = False
                self.metrics.failures.click()
                if failures == 1:
                    log(logging.ERROR, "ingest pass failed; retrying", error=str(e),
                        errno=errno.errorcode.get(e.errno or 0, e.errno))  # fmt: skip
            else:
                if failures:
                    log(logging.INFO, "ingest pass succeeded again", failed_passes=failures)
                failures = 0
            streak = max(failures, self._journal_failures)
            if streak:
                stop.wait(_backoff(streak, poll))
            elif not busy:
                stop.wait(poll)

    # -- ingest ---------------------------------------------------------------------------

    def ingest_pass(self, now_ms: int | None = None, stop: threading.Event | None = None) -> bool:
        """Consume one batch of finished segments and tail open ones; True if more is waiting.

        An open segment whose emissions were folded counts as a file of the batch, and the
        bytes read from it count against its bytes.
        """
        opts = self.options
        batch: list[_Consumed] = []
        files = size_total = 0
        more = False  # an open segment's tail left for the next pass
        waiting_since: float | None = None
        failed: StateError | None = None  # the journal's fault: the pass stops, nothing skipped
        try:
            candidates = self.consumer.candidates()
            self.tailer.prune(candidates)
            for path in candidates:
                if (
                    files >= opts.batch_files
                    or size_total >= opts.batch_bytes
                    or (stop is not None and stop.is_set())
                ):
                    with contextlib.suppress(OSError):
                        waiting_since = os.stat(path).st_mtime
                    break
                try:
                    taken = self._take(path, opts.batch_bytes - size_total)
                except StateError as e:
                    failed = e
                    break
                if isinstance(taken, Tailed):
                    size_total += taken.read
                    files += taken.folded > 0
                    more = more or taken.cut
                elif taken is not None:
                    size_total += taken.size
                    files += 1
                    batch.append(taken)
            self._commit(batch, failed)
        finally:
            for taken in batch:
                taken.reader.close()
        now = _clock.now_ms() if now_ms is None else now_ms
        if opts.forget_after_ms is not None:
            # Behind a backlog, judge age by the newest data read: the wall clock would forget
            # live sources whose newer segments are still waiting.
            clock = now if waiting_since is None else min(now, self.store.newest_ts)
            for source in self.store.forget_stale(clock, opts.forget_after_ms):
                log(logging.INFO, "source forgotten", source=source)
        self.metrics.lag.set(0.0 if waiting_since is None else max(0.0, now / 1000 - waiting_since))
        self.metrics.sync_store(self.store)
        if self.durable.journal_bytes and (
            self.durable.journal_bytes >= opts.checkpoint_bytes
            or time.monotonic() - self._last_checkpoint >= opts.checkpoint_interval
        ):
            self.checkpoint()
        return more or waiting_since is not None

    def _take(self, path: str, budget: int) -> _Consumed | Tailed | None:
        claimed = self.consumer.claim_or_held(path)
        if claimed is None:
            return None
        if isinstance(claimed, Writing):
            with claimed.held:
                return self.tailer.tail(claimed, budget)
        try:
            return self._consume(claimed)
        except StateError:
            claimed.reader.close()  # the journal's fault, not the segment's: it stays, unskipped
            raise
        except OSError as e:
            claimed.reader.close()
            self.consumer.skip(path, "cannot read segment", e)
            return None

    def _consume(self, claimed: Claimed) -> _Consumed:
        """Journal the whole segment; fold what tailing it while open did not (see .tail)."""
        reader = claimed.reader
        st = os.fstat(reader.fileno())
        size = st.st_size
        self.durable.append(claimed.name, reader, size)  # all or nothing; StateError: journal's
        read = self.tailer.finish(claimed.path, reader.fileno(), st)
        reader.seek(read.offset)  # claimed: its writer is done, it cannot grow
        if size - read.offset <= self.options.batch_bytes:  # in memory: known lines fold fast
            parsed = self.store.ingest_bytes(claimed.source, reader.read(), claimed.default_ms,
                                             path=reader.path, first_line=read.line,
                                             types=read.types)  # fmt: skip
            self.metrics.samples.count(parsed.samples)
        else:  # streamed, however large a writer made it
            parsed = Parse(reader, path=reader.path, first_line=read.line)
            self._fold(claimed.source, claimed.default_ms, parsed, read.types)
        self.metrics.segments.click()
        self.metrics.bytes.count(size)
        problems = parsed.problems
        self.metrics.parse_errors.count(len(problems))  # the tailed part's: counted then
        serious = parsed.malformed
        if len(serious) < len(problems):
            benign = [p for p in problems if p not in serious]
            log(logging.INFO, "segment readings dropped: cut short by a stopped writer, or a "
                "name another source gave another kind", path=reader.path, dropped=len(benign),
                first_problem=str(benign[0]))  # fmt: skip
        consumed = _Consumed(reader, size, [*read.problems, *problems])
        malformed = read.malformed + len(serious)
        if malformed:
            consumed.reason = f"{malformed} malformed line(s); the other lines were ingested"
        return consumed

    def _fold(
        self, source: str, default_ts: int, parsed: Parse, types: dict[str, str] | None = None
    ) -> None:
        self.store.ingest_segment(source, parsed, default_ts, types=types)
        self.metrics.samples.count(parsed.samples)

    def _finish(self, consumed: _Consumed) -> None:
        reader = consumed.reader
        if self.consumer.dispose(reader, consumed.reason, consumed.problems) is not Disposal.KEPT:
            log(logging.DEBUG, "segment consumed", path=reader.path)

    def _commit(self, batch: list[_Consumed], failed: StateError | None) -> None:
        """Sync the journal, only then let the batch's segments go; count journal failures.

        A failed sync has cut the batch's records off, so its segments must stay in the spool
        (already folded, they are a no-op when retaken).  A full state volume fails every pass
        until space returns: one log line per pass would flood the log, and skip-listing the
        segments would strand them, so the first failure of a streak is logged and the end of
        the streak noted.
        """
        synced = False
        if batch:
            try:
                self.durable.sync()
                synced = True
            except StateError as e:
                failed = e
        if synced:
            for consumed in batch:
                self._finish(consumed)
        if failed is not None:
            self._journal_failures += 1
            self.metrics.failures.click()
            if self._journal_failures == 1:
                log(logging.ERROR, "cannot write the journal; segments stay in the spool, retrying",
                    journal=self.durable.journal_path,
                    errno=errno.errorcode.get(failed.errno or 0, failed.errno),
                    error=failed.strerror)  # fmt: skip
        elif synced and self._journal_failures:
            log(logging.INFO, "journal written again; ingest resumed",
                journal=self.durable.journal_path,
                failed_passes=self._journal_failures)  # fmt: skip
            self._journal_failures = 0

    # -- pages ----------------------------------------------------------------------------

    def page(self, *, openmetrics: bool = False) -> str:
        """The /metrics page: merged series, then ``biometrics_exporter_*``."""
        started = time.perf_counter()
        stamps = self.options.honor_timestamps
        body = self.store.page(openmetrics=openmetrics, timestamps=stamps)
        slash = SlashMetrics()
        now = _clock.now_ms()
        for sensors in (self.metrics, *self.also_shown):
            sensors.emit(slash, now)
        tail = slash.render_openmetrics() if openmetrics else slash.render()
        self.metrics.scrape.observe(time.perf_counter() - started)
        return body + tail
