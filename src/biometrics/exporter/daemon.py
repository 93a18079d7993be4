"""The exporter: consume a spool's finished segments into the store, durably, and render pages.

One thread ingests (the only writer of the store and the state files); HTTP threads only read.
A pass claims up to a batch of finished segments, folds each into the store and appends its
bytes to the journal, fsyncs the journal once, and only then deletes, archives or quarantines
the batch's files.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from dataclasses import dataclass, field

from ..errors import ParseError, SegmentError, StateError
from ..prometheus import Parse, Reader, SlashMetrics, Watcher
from ._logging import log
from ._selfmetrics import SensorSet
from ._spool import SkipList, UnsafeFileError, in_spool, move, quarantine
from .durable import DurableState
from .segments import source_of
from .store import MergeRules, Store

__all__ = ["Exporter", "ExporterOptions"]


_BACKOFF_MAX = 30.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _backoff(failures: int, poll_interval: float) -> float:
    """Seconds to wait after ``failures`` failed passes in a row: 10 polls, doubling, to 30 s.

    Long enough not to hammer a full volume (1 s at the default poll), short enough that
    ingest resumes soon after space returns; scaled by the poll so tests need not wait.
    """
    return max(poll_interval, min(_BACKOFF_MAX, 10 * poll_interval * 2.0 ** min(failures - 1, 16)))


@dataclass
class ExporterOptions:
    """Everything ``biometrics serve`` can be told; the defaults are the documented ones."""

    spool: str
    state: str | None = None
    """Snapshot path; default ``<spool>/.biometrics/state.json`` (journal and lock beside it)."""
    archive: str | None = None
    """Move consumed segments here instead of deleting them."""
    outbox: str | None = None
    """Move every consumed segment here (for the shipper), malformed ones included."""
    quarantine: str | None = None
    """Where unparseable segments go, with a ``.error`` sidecar; default ``<spool>/quarantine``."""
    rules: MergeRules = field(default_factory=MergeRules)
    forget_after_ms: int | None = None
    max_series: int = 500_000
    """Source-series held at most: sized so the daemon stays within 512 MB of RSS with
    counters (see docs/ARCHITECTURE.md, "Bounds", and benchmarks/store_memory.py)."""
    max_series_per_source: int | None = None
    """Series one source may feed at most, so one runaway process cannot take every other
    source's room; None: a tenth of ``max_series``."""
    honor_timestamps: bool = False
    poll_interval: float = 0.1
    checkpoint_interval: float = 60.0
    checkpoint_bytes: int = 64 << 20
    batch_files: int = 256
    batch_bytes: int = 64 << 20

    @property
    def source_limit(self) -> int:
        """``max_series_per_source``, defaulted."""
        if self.max_series_per_source is not None:
            return self.max_series_per_source
        return max(1, self.max_series // 10)

    @property
    def state_path(self) -> str:
        """The snapshot path, defaulted."""
        return in_spool(self.state, self.spool, ".biometrics", "state.json")

    @property
    def quarantine_path(self) -> str:
        """The quarantine directory, defaulted."""
        return in_spool(self.quarantine, self.spool, "quarantine")


class _SelfMetrics(SensorSet):
    """``biometrics_exporter_*``: the daemon's own health, rendered after the merged series."""

    def __init__(self) -> None:
        super().__init__("biometrics.exporter")
        counter, gauge = self.counter, self.gauge
        self.segments = counter("segments_consumed", "Segments consumed from the spool.")
        self.bytes = counter("ingested_bytes", "Bytes of segments ingested.")
        self.samples = counter("ingested_samples", "Sample lines ingested.")
        self.parse_errors = counter("parse_errors", "Malformed lines skipped.")
        self.quarantined = counter("quarantined_segments", "Segments moved to quarantine.")
        self.dropped = counter(
            "dropped_series", "New series refused by --max-series or --max-series-per-source."
        )
        self.dropped_share = counter(
            "dropped_series_source_limit",
            "New series refused by --max-series-per-source (also in dropped_series_total).",
        )
        self.conflicts = counter(
            "type_conflicts", "Readings dropped: their name has another kind (or layout)."
        )
        self.layout_conflicts = counter(
            "histogram_layout_conflicts", "Histogram readings that do not fit the family layout."
        )
        self.checkpoints = counter("checkpoints", "State snapshots written.")
        self.failures = counter(
            "ingest_failures", "Failed ingest attempts (I/O): segment, journal or pass."
        )
        self.lag = gauge("ingest_lag_seconds", "Age of the oldest finished unconsumed segment.")
        self.series = gauge("series", "Merged series in the store.")
        self.entries = gauge("source_series", "Per-source series held (see --max-series).")
        self.sources = gauge("sources", "Sources in the store.")
        self.scrape = self.histogram("scrape_duration_seconds", "Time to render a page.")

    def sync_store(self, store: Store) -> None:
        with store.lock:
            # (int(): these are only ever count()ed, so their reads are whole)
            self.dropped.count(store.dropped_series - int(self.dropped.read()))
            share = store.dropped["max_series_per_source"]
            self.dropped_share.count(share - int(self.dropped_share.read()))
            self.conflicts.count(store.conflicts - int(self.conflicts.read()))
            layout = store.layout_conflicts - int(self.layout_conflicts.read())
            self.layout_conflicts.count(layout)
            self.series.set(store.series_count())
            self.entries.set(store.entries)
            self.sources.set(store.source_count())


class Exporter:
    """The ingest side of ``biometrics serve`` plus page rendering; HTTP lives in ``http``."""

    def __init__(self, options: ExporterOptions) -> None:
        self.options = options
        self.store = Store(options.rules, max_series=options.max_series,
                           max_series_per_source=options.source_limit)  # fmt: skip
        self.metrics = _SelfMetrics()
        self.also_shown: list[SensorSet] = []
        """More self-metrics for the page, e.g. the shipper's when ``serve`` also ships."""
        self.watcher = Watcher(options.spool)
        self.durable = DurableState(options.state_path)
        self.ready = threading.Event()
        self._last_checkpoint = time.monotonic()
        self._skipped = SkipList()
        self._journal_failures = 0
        """Passes in a row the journal failed (see _commit)."""
        self._page_cache: dict[bool, str] = {}
        self._page_version = -1

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
        """Consume one batch of finished segments; True if a full batch left more waiting."""
        opts = self.options
        batch: list[tuple[Reader, str | None, list[ParseError]]] = []
        size_total = 0
        waiting_since: float | None = None
        failed: StateError | None = None  # the journal's fault: the pass stops, nothing skipped
        try:
            for path in self.watcher.candidates():
                if (
                    len(batch) >= opts.batch_files
                    or size_total >= opts.batch_bytes
                    or (stop is not None and stop.is_set())
                ):
                    with contextlib.suppress(OSError):
                        waiting_since = os.stat(path).st_mtime
                    break
                try:
                    taken = self._take(path)
                except StateError as e:
                    failed = e
                    break
                if taken is not None:
                    size_total += taken[3]
                    batch.append(taken[:3])
            self._commit(batch, failed)
        finally:
            for reader, _, _ in batch:
                reader.close()
        now = _now_ms() if now_ms is None else now_ms
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
        return waiting_since is not None

    def _take(self, path: str) -> tuple[Reader, str | None, list[ParseError], int] | None:
        for stray, kind in self.watcher.strays():  # once each, until it changes
            self.metrics.failures.click()
            log(logging.WARNING, "not a regular file; ignored, never opened or followed",
                path=stray, kind=kind, fix="remove it: segments are regular files only (a "
                "process that can write the spool may have planted it)")  # fmt: skip
        if self._skipped.skipped(path):
            return None
        try:
            reader = self.watcher.claim(path)
        except SegmentError as e:
            self._skip(path, "cannot open segment", e)
            return None
        if reader is None:
            return None
        try:
            return (reader, *self._consume(reader))
        except StateError:
            reader.close()  # the journal's fault, not the segment's: it stays, unskipped
            raise
        except OSError as e:
            reader.close()
            self._skip(path, "cannot read segment", e)
            return None

    def _consume(self, reader: Reader) -> tuple[str | None, list[ParseError], int]:
        name = os.path.basename(reader.path)
        parsed_name = source_of(name) if "\n" not in name else None
        if parsed_name is None:
            return "file name has no <epoch_ms> before .prom; cannot tell its time", [], 0
        size = os.fstat(reader.fileno()).st_size
        self.durable.append(name, reader, size)  # all or nothing; StateError: the journal's fault
        parsed = Parse(reader, path=reader.path)  # claimed: its writer is done, it cannot grow
        self._fold(parsed_name[0], parsed_name[1], parsed)
        self.metrics.segments.click()
        self.metrics.bytes.count(size)
        problems = parsed.problems
        self.metrics.parse_errors.count(len(problems))
        serious = parsed.malformed
        if len(serious) < len(problems):
            benign = [p for p in problems if p not in serious]
            log(logging.INFO, "segment readings dropped: cut short by a stopped writer, or a "
                "name another source gave another kind", path=reader.path, dropped=len(benign),
                first_problem=str(benign[0]))  # fmt: skip
        if serious:
            return (
                f"{len(serious)} malformed line(s); the other lines were ingested",
                problems,
                size,
            )
        return None, problems, size

    def _fold(self, source: str, default_ts: int, parsed: Parse) -> None:
        self.store.ingest_segment(source, parsed, default_ts)
        self.metrics.samples.count(parsed.samples)

    def _finish(self, reader: Reader, reason: str | None, problems: list[ParseError]) -> None:
        path, fd = reader.path, reader.fileno()
        try:
            if self.options.outbox is not None and source_of(os.path.basename(path)):
                move(path, self.options.outbox, rename_on_clash=False, fd=fd,
                     hint="remove it (the outbox lives beside --state)")  # fmt: skip
            elif reason is not None:
                self._quarantine(path, reason, problems, fd)
            elif self.options.archive is not None:
                move(path, self.options.archive, fd=fd,
                     hint="remove it, or point --archive at a real directory")  # fmt: skip
            else:
                reader.unlink()
        except FileExistsError:
            log(logging.WARNING, "outbox has a segment of this name; moving it later", path=path)
            return
        except UnsafeFileError as e:
            # Refused, never followed: the segment is journaled, so it stays here, skipped
            # until it changes (or serve restarts), rather than go through a planted link.
            self._skip(path, "refusing to move consumed segment; it stays in the spool", e)
            return
        except OSError as e:
            self._skip(
                path, "cannot remove consumed segment (it is journaled; will not re-read)", e
            )
            return
        log(logging.DEBUG, "segment consumed", path=path)

    def _quarantine(
        self, path: str, reason: str, problems: list[ParseError], fd: int | None = None
    ) -> None:
        done = quarantine(path, self.options.quarantine_path, reason, problems, fd=fd)
        self.metrics.quarantined.click()
        log(logging.WARNING, "segment quarantined", path=path, moved_to=done.target,
            sidecar=done.sidecar or "-", reason=reason,
            first_problem=str(problems[0]) if problems else "")  # fmt: skip
        if done.sidecar_problem is not None:
            log(logging.WARNING, "quarantine sidecar not at its usual name", path=done.target,
                problem=done.sidecar_problem)  # fmt: skip

    def _skip(self, path: str, what: str, error: OSError) -> None:
        self.metrics.failures.click()
        self._skipped.add(path)
        log(logging.ERROR, what, path=path, error=str(error),
            errno=errno.errorcode.get(error.errno or 0, error.errno))  # fmt: skip

    def _commit(
        self, batch: list[tuple[Reader, str | None, list[ParseError]]], failed: StateError | None
    ) -> None:
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
            for reader, reason, problems in batch:
                self._finish(reader, reason, problems)
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
        store = self.store
        # Not under the ingest lock: a large page takes seconds, and the store renders it in
        # chunks.  One page at a time: a second scrape waits, then finds it cached.  The page
        # holds every change up to the version read before it was built (and maybe later
        # ones, which moved the version on, so the next scrape builds afresh).
        with store.render_lock:
            version = store.version
            if self._page_version != version:
                self._page_cache.clear()
                self._page_version = version
            body = self._page_cache.get(openmetrics)
            if body is None:
                stamps = self.options.honor_timestamps
                body = store.render(openmetrics=openmetrics, timestamps=stamps, eof=False)
                self._page_cache[openmetrics] = body
        slash = SlashMetrics()
        now = _now_ms()
        for sensors in (self.metrics, *self.also_shown):
            sensors.emit(slash, now)
        tail = slash.render_openmetrics() if openmetrics else slash.render()
        self.metrics.scrape.observe(time.perf_counter() - started)
        return body + tail
