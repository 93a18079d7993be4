"""The shipper: every timestamped sample of a spool's segments, to a remote-write receiver.

Segments are claimed oldest first and streamed line by line into requests of at most
``max_samples_per_request`` samples; one request is in flight at a time, so each series' samples
arrive in time order.  A segment leaves the spool only when every request that carried its
samples was acknowledged with a 2xx (at-least-once).  The lines acknowledged so far are recorded
in a small progress file after every acknowledgement, so a shipper killed half-way through a
large segment resumes after its last acknowledged line instead of sending it all again.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .._labels import LabelPairs, check_label_name
from ..errors import InvalidValueError, SegmentError
from ..prometheus import Metadata, Parse, Reader, Sample, Watcher
from ._logging import log
from ._preflight import check_directory, check_state_files
from ._progress import Progress
from ._selfmetrics import SensorSet
from ._spool import SkipList, in_spool, lock_state, move, quarantine
from .remote_write import Answer, Encoder, RemoteWriteClient, RemoteWriteOptions, group
from .segments import SeriesNames, source_of

__all__ = ["ShipMetrics", "ShipOptions", "Shipper", "blocked_fix"]

_UNAVAILABLE = frozenset({502, 503, 504})
# About the URL or the credentials, not the data: quarantining would empty the spool, and
# remote write 1.0 says not to retry them as they are.  Each maps to what the operator fixes.
_ENDPOINT = {
    401: "the receiver refuses our credentials: check --bearer-token-file or "
    "--basic-auth-user/--basic-auth-password-file",
    403: "the credentials are valid but may not write: grant them write permission on the "
    "receiver (tenant, role or policy)",
    404: "nothing is at this URL: check the path in the URL (Prometheus: /api/v1/write with "
    "--web.enable-remote-write-receiver; Mimir, Cortex: /api/v1/push)",
    405: "the URL does not take POST requests: check the path in the URL (Prometheus: "
    "/api/v1/write; Mimir, Cortex: /api/v1/push)",
    407: "a proxy on the way wants credentials: check HTTPS_PROXY/HTTP_PROXY (user:password@)",
}
_REDIRECT_FIX = "the URL redirects (not followed for a POST): put the final URL in the options"


def blocked_fix(status: int) -> str:
    """What the operator must fix when the remote answers ``status`` (401, 404, a 3xx...)."""
    return _ENDPOINT.get(status, _REDIRECT_FIX)


_LABEL_CACHE = 100_000
_LOG_EVERY = 10

Part = list[tuple[LabelPairs, int, float]]


@dataclass(frozen=True)
class ShipOptions:
    """Everything ``biometrics ship`` can be told; the defaults are the documented ones."""

    spool: str
    remote: RemoteWriteOptions
    state: str | None = None
    """Progress file; default ``<spool>/.biometrics/ship.json`` (and ``ship.json.lock``)."""
    archive: str | None = None
    """Move shipped segments here instead of deleting them."""
    quarantine: str | None = None
    """For rejected or malformed segments, with ``.error`` sidecars; default SPOOL/quarantine."""
    source_label: str | None = "source"
    """Add the segment's source (its file-name prefix) as this label; None: do not (then two
    processes writing one series interleave in it, and Prometheus keeps one value per ms)."""
    external_labels: Mapping[str, str] = field(default_factory=dict)
    """Added to every series that has no label of that name."""
    max_samples_per_request: int = 2000
    max_retries: int = 10
    """Re-sends of one request answered 500 (or another 5xx but 502/503/504) before giving up."""
    min_backoff: float = 0.1
    max_backoff: float = 10.0
    max_retry_after: float = 300.0
    """Longest ``Retry-After`` honoured; a longer one is cut to this."""
    poll_interval: float = 0.1
    max_open_segments: int = 256
    blocked_backoff: float = 300.0
    """Wait between tries while the remote refuses the URL or the credentials (401, 403, 404,
    405, 407, 3xx): they will not change until someone fixes them, so no tight loop."""

    def __post_init__(self) -> None:
        if self.source_label is not None:
            check_label_name(self.source_label)
        for name, value in self.external_labels.items():
            check_label_name(name)
            if not value:
                raise InvalidValueError(f"external label {name!r} has an empty value")
        for name in ("max_samples_per_request", "max_open_segments"):
            if getattr(self, name) < 1:
                raise InvalidValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.blocked_backoff > 0:
            raise InvalidValueError(f"blocked_backoff must be > 0, got {self.blocked_backoff!r}")
        if self.max_retries < 0 or not 0 < self.min_backoff <= self.max_backoff:
            raise InvalidValueError(
                "max_retries must be >= 0 and 0 < min_backoff <= max_backoff, got "
                f"{self.max_retries}, {self.min_backoff}, {self.max_backoff}"
            )

    @property
    def state_path(self) -> str:
        """The progress file, defaulted."""
        return in_spool(self.state, self.spool, ".biometrics", "ship.json")

    @property
    def quarantine_path(self) -> str:
        """The quarantine directory, defaulted."""
        return in_spool(self.quarantine, self.spool, "quarantine")


class ShipMetrics(SensorSet):
    """``biometrics_ship_*``: what the shipper did, for ``serve`` pages and segment files."""

    def __init__(self) -> None:
        super().__init__("biometrics.ship")
        counter, gauge = self.counter, self.gauge
        self.sent = counter("samples_sent", "Samples acknowledged by the remote.")
        self.failed = counter("samples_failed", "Samples rejected for good (quarantined).")
        self.retried = counter("samples_retried", "Samples in requests sent again.")
        self.invalid = counter("samples_invalid", "Sample lines refused before sending.")
        self.duplicates = counter("samples_duplicate", "Samples dropped: same series and ms.")
        self.requests = counter("requests", "Requests sent, retries included.")
        self.retries = counter("retries", "Requests sent again after a failure.")
        self.bytes = counter("sent_bytes", "Compressed bytes of acknowledged requests.")
        self.segments = counter("segments_shipped", "Segments fully acknowledged.")
        self.quarantined = counter("segments_quarantined", "Segments moved to quarantine.")
        self.failures = counter("segment_failures", "Segments that could not be read or moved.")
        self.last_success = gauge("last_success_timestamp_seconds", "Last acknowledgement.")
        self.backlog = gauge("backlog_segments", "Segments waiting in the spool.")
        self.backlog_bytes = gauge("backlog_bytes", "Bytes of segments waiting in the spool.")
        self.blocked = gauge("blocked", "1 while the remote refuses the URL or the credentials.")
        self.blocked_status = gauge(
            "blocked_status", "The HTTP status that blocks shipping (401, 403, 404...); 0 if none."
        )
        self.request_seconds = self.histogram("request_duration_seconds", "Time per request.")


class _StoppedError(Exception):
    pass


class _Segment:
    """A claimed segment and how far its samples got."""

    def __init__(self, reader: Reader, path: str, source: str, default_ts: int) -> None:
        self.reader = reader
        self.path = path
        self.name = os.path.basename(path)
        self.source = source
        self.default_ts = default_ts
        st = os.fstat(reader.fileno())
        self.key = [st.st_dev, st.st_ino]
        self.acked = 0
        """Every sample on a line up to this one was acknowledged."""
        self.last = 0
        """Line of the newest sample in the request being built."""
        self.complete = False
        self.parse = Parse(reader, path=path)  # lazy: nothing is read before _read iterates
        self.rejected: str | None = None


def _verdict(answer: Answer, counted: int, max_retries: int) -> str:
    """What to do with an answer: ``ok``, ``reject``, ``count``, ``wait`` or ``blocked``.

    ``reject`` is for good (quarantine), ``count`` a retry counted against ``max_retries``,
    ``wait`` an uncounted retry, ``blocked`` a retry after ``blocked_backoff``: someone must
    fix the URL or the credentials first.
    """
    status = answer.status
    if status is None or status in _UNAVAILABLE or status == 429:
        return "wait"
    if 200 <= status < 300:
        return "ok"
    if status in _ENDPOINT or 300 <= status < 400:  # nothing wrong with the data
        return "blocked"
    if status >= 500:
        return "count" if counted < max_retries else "reject"
    return "reject"


class Shipper:
    """Ships one spool.  ``open``, then ``run`` (or ``ship_pass`` at your own pace), ``close``."""

    def __init__(self, options: ShipOptions, metrics: ShipMetrics | None = None) -> None:
        self.options = options
        self.metrics = metrics or ShipMetrics()
        self.watcher = Watcher(options.spool)
        self._client = RemoteWriteClient(options.remote)
        self._encoder = Encoder()
        self._progress = Progress(options.state_path)
        self._skipped = SkipList()
        self._labels: dict[tuple[str, LabelPairs, str], LabelPairs] = {}
        self._names = SeriesNames()
        """Counters ship under their canonical ``_total`` name, as serve's page shows them."""
        self._open: list[_Segment] = []
        self._parts: dict[_Segment, Part] = {}
        self._count = 0
        self._lock_fd: int | None = None
        self._deadline: float | None = None
        self.blocked: int | None = None
        """The HTTP status the remote blocks us with (401, 404...), None when not blocked."""
        self.last_failure: str | None = None
        """The last answer that was not an acknowledgement, for messages; None after one."""

    def open(self) -> None:
        """Check the spool and the state, lock the progress file and load it.

        Raises :class:`~biometrics.exporter._preflight.SpoolError` for a missing or unusable
        spool (it is never created: a mistyped one would be watched forever) and
        :class:`~biometrics.errors.StateError` for the progress file or its lock.  (A token,
        password or CA file that cannot be used was refused by the constructor already.)
        """
        opts = self.options
        check_directory(opts.spool, "spool", missing="check the path, or create it if the "
                        "emitters have not yet")  # fmt: skip
        for option, path in (("--archive", opts.archive), ("--quarantine", opts.quarantine_path)):
            if path is not None and os.path.lexists(path):
                check_directory(path, option)
        check_state_files([opts.state_path, opts.state_path + ".lock"])
        self._lock_fd = lock_state(self.options.state_path + ".lock",
                                   f"spool {self.options.spool} (shipping)",
                                   "give this one its own --state")  # fmt: skip
        self._progress.load(self.options.spool)

    def close(self) -> None:
        """Release the lock and the connections."""
        self._client.close()
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

        ``deadline`` (a ``time.monotonic()`` value) also cuts it short: waits and requests
        are shortened to end by then, so ``ship --once`` cannot hang on an absent remote.
        """
        stop = stop or threading.Event()
        self._deadline = deadline
        try:
            candidates = self.watcher.candidates()
        except SegmentError as e:
            self.metrics.failures.click()
            log(logging.ERROR, "cannot list the spool; retrying", error=e.strerror)
            return False
        try:
            for path in candidates:
                if stop.is_set():
                    return False
                if self._skipped.skipped(path):
                    continue
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
            for segment in self._open:
                segment.reader.close()
            self._open.clear()
            self._parts.clear()
            self._count = 0
            self._measure_backlog()

    def _claim(self, path: str) -> _Segment | None:
        for stray, kind in self.watcher.strays():  # once each, until it changes
            self.metrics.failures.click()
            log(logging.WARNING, "not a regular file; ignored, never opened or followed",
                path=stray, kind=kind, fix="remove it: segments are regular files only (a "
                "process that can write the spool may have planted it)")  # fmt: skip
        named = source_of(os.path.basename(path))
        try:
            reader = self.watcher.claim(path)
        except SegmentError as e:
            self._skip(path, "cannot open segment", e)
            return None
        if reader is None:
            return None
        if named is None:
            with reader:
                self._quarantine_path(path, "file name has no <epoch_ms> before .prom; cannot "
                                      "tell its samples' time", [], reader.fileno())  # fmt: skip
            return None
        segment = _Segment(reader, path, named[0], named[1])
        segment.acked = self._progress.acked(segment.name, segment.key)
        return segment

    def _read(self, segment: _Segment, stop: threading.Event) -> None:
        parsed = segment.parse
        acked, default_ts, source = segment.acked, segment.default_ts, segment.source
        limit = self.options.max_samples_per_request
        labels_of, cache, names = self._series_labels, self._labels, self._names
        names.segment()
        named: dict[str, str] = {}  # names() for this segment's TYPE lines so far, at 40 ns
        part: Part | None = None
        for item in parsed:
            if type(item) is not Sample:
                if type(item) is Metadata and item.kind == "TYPE":
                    names.declare(item.name, item.text)
                    named.clear()
                continue
            if item.line <= acked:
                continue
            name = named.get(item.name)
            if name is None:
                name = named[item.name] = names(item.name)
            labels: LabelPairs | str | None = cache.get((name, item.labels, source))
            if labels is None:
                labels = labels_of(name, item.labels, source)
            if isinstance(labels, str):
                parsed.report(item.line, labels)
                self.metrics.invalid.click()
                continue
            if part is None:
                part = self._parts.setdefault(segment, [])
            ts = item.timestamp_ms
            part.append((labels, default_ts if ts is None else ts, item.value))
            segment.last = item.line
            self._count += 1
            if self._count >= limit:
                self._flush(stop)
                part = None
                if segment.rejected is not None:
                    return

    def _series_labels(self, name: str, labels: LabelPairs, source: str) -> LabelPairs | str:
        """The label set sent for a sample, or why it cannot be sent.

        Checked here so an invalid or duplicate label never reaches a server, which may answer
        500 and be retried in vain.
        """
        opts = self.options
        pairs = dict(labels)
        for key in pairs:
            if key.startswith("__"):
                return f"label {key!r}: names starting with '__' are reserved"
        label = opts.source_label
        if label is not None:
            if label in pairs:
                exported = f"exported_{label}"
                if exported in pairs:
                    return f"labels {label!r} and {exported!r} both set; no room for the source"
                pairs[exported] = pairs[label]
            pairs[label] = source
        for key, value in opts.external_labels.items():
            pairs.setdefault(key, value)
        pairs["__name__"] = name
        # str order is code-point order, which is UTF-8 byte order: the spec's bytewise sort.
        result = tuple(sorted(p for p in pairs.items() if p[1]))
        if len(self._labels) >= _LABEL_CACHE:
            self._labels.clear()
        self._labels[(name, labels, source)] = result
        return result

    # -- delivery -------------------------------------------------------------------------

    def _flush(self, stop: threading.Event) -> None:
        parts, self._parts, self._count = self._parts, {}, 0
        if parts:
            answer = self._deliver(parts, stop)
            if answer is not None and len(parts) > 1:
                # A request is one transaction: find which segments the answer is about.
                for segment, part in parts.items():
                    alone = self._deliver({segment: part}, stop)
                    if alone is not None:
                        self._reject(segment, part, alone)
            elif answer is not None:
                for segment, part in parts.items():
                    self._reject(segment, part, answer)
        self._settle()

    def _deliver(self, parts: dict[_Segment, Part], stop: threading.Event) -> Answer | None:
        """Send until acknowledged (None) or rejected for good (the answer)."""
        opts, metrics = self.options, self.metrics
        samples = sum(len(part) for part in parts.values())
        series, dropped = group(itertools.chain.from_iterable(parts.values()))
        body = self._encoder.encode(series)
        metrics.duplicates.count(dropped)
        attempt = counted = 0
        while True:  # bounded by stop and the deadline; every failed try waits first
            started = time.perf_counter()
            answer = self._client.send(body, timeout=self._time_left())
            metrics.requests.click()
            metrics.request_seconds.observe(time.perf_counter() - started)
            verdict = _verdict(answer, counted, opts.max_retries)
            if verdict == "ok":
                self._acknowledged(parts, samples, len(body), attempt)
                return None
            if verdict == "reject":
                return answer
            status = "no answer" if answer.status is None else f"HTTP {answer.status}"
            self.last_failure = f"{status}: {answer.message[:200] or '(no message)'}"
            counted += verdict == "count"
            if verdict == "blocked":
                delay = opts.blocked_backoff
                self._block(answer, delay)
            else:
                delay = min(opts.max_backoff, opts.min_backoff * 2 ** min(attempt, 30))
                delay = random.uniform(delay / 2, delay)
                if answer.status == 429 and answer.retry_after is not None:
                    delay = min(answer.retry_after, opts.max_retry_after)
                level = logging.WARNING if attempt % _LOG_EVERY == 0 else logging.DEBUG
                log(level, "remote write failed; retrying", url=opts.remote.url,
                    status=answer.status or "-", answer=answer.message[:200],
                    attempt=attempt + 1, retry_in=f"{delay:.2f}s", samples=samples)  # fmt: skip
            attempt += 1
            metrics.retries.click()
            metrics.retried.count(samples)
            left = self._time_left()
            if left is not None and left < delay:
                stop.wait(left)
                raise _StoppedError
            if stop.wait(delay):
                raise _StoppedError

    def _time_left(self) -> float | None:
        """Seconds until the pass's deadline (at least a little, for one last request)."""
        if self._deadline is None:
            return None
        return max(0.001, self._deadline - time.monotonic())

    def _block(self, answer: Answer, delay: float) -> None:
        """Enter (or stay in) the blocked state: gauges up, one log line saying what to fix."""
        status = answer.status or 0
        fix = blocked_fix(status)
        self.metrics.blocked.set(1)
        self.metrics.blocked_status.set(status)
        self.blocked = status
        log(logging.ERROR, "remote write blocked: the receiver refuses the URL or the "
            "credentials; segments stay in the spool", url=self.options.remote.url,
            status=status, answer=answer.message[:200], fix=fix,
            retry_in=f"{delay:g}s")  # fmt: skip

    def _acknowledged(
        self, parts: dict[_Segment, Part], samples: int, size: int, attempt: int
    ) -> None:
        metrics = self.metrics
        metrics.sent.count(samples)
        metrics.bytes.count(size)
        metrics.last_success.set(time.time())
        if attempt:
            log(logging.INFO, "remote write recovered", attempts=attempt + 1)
        self.last_failure = None
        if self.blocked is not None:
            log(logging.INFO, "remote write unblocked", url=self.options.remote.url,
                was=self.blocked)  # fmt: skip
            self.blocked = None
            metrics.blocked.set(0)
            metrics.blocked_status.set(0)
        for segment in parts:
            segment.acked = segment.last
            self._progress.entries[segment.name] = [*segment.key, segment.last]
        self._save_progress()

    def _save_progress(self) -> None:
        try:
            self._progress.save()
        except OSError as e:
            log(logging.WARNING, "cannot record ship progress; a restart may re-send samples",
                path=self._progress.path, error=str(e))  # fmt: skip

    def _reject(self, segment: _Segment, part: Part, answer: Answer) -> None:
        self.metrics.failed.count(len(part))
        status = "no answer" if answer.status is None else f"HTTP {answer.status}"
        segment.rejected = (
            f"{status}: {answer.message or '(no message)'} (its request held "
            f"{len(part)} samples from lines {segment.acked + 1}..{segment.last}; lines up to "
            f"{segment.acked} were delivered before, later lines were not sent)"
        )

    # -- finishing segments -----------------------------------------------------------------

    def _settle(self) -> None:
        """Finish every complete segment that has nothing waiting in the request being built."""
        keep = []
        for segment in self._open:
            if segment.complete and segment not in self._parts:
                try:
                    self._finish(segment)
                finally:
                    segment.reader.close()
            else:
                keep.append(segment)
        self._open = keep

    def _finish(self, segment: _Segment) -> None:
        problems = segment.parse.problems
        if self._progress.entries.pop(segment.name, None) is not None:
            self._progress.dirty = True
        if segment.rejected is not None:
            reason = f"the remote rejected its samples: {segment.rejected}"
            self._quarantine_path(segment.path, reason, problems, segment.reader.fileno())
            return
        if segment.parse.malformed:
            reason = (
                f"{len(segment.parse.malformed)} malformed line(s); the other lines were delivered"
            )
            self._quarantine_path(segment.path, reason, problems, segment.reader.fileno())
            return
        try:
            if self.options.archive is not None:
                move(segment.path, self.options.archive, fd=segment.reader.fileno(),
                     hint="remove it, or point --archive at a real directory")  # fmt: skip
            else:
                os.unlink(segment.path)
        except OSError as e:  # a refused archive (a link, not ours) included: never followed
            self._skip(segment.path, "cannot remove shipped segment (it will be sent again)", e)
            return
        self.metrics.segments.click()
        log(logging.DEBUG, "segment shipped", path=segment.path)

    def _quarantine_path(
        self, path: str, reason: str, problems: Sequence[object], fd: int | None = None
    ) -> None:
        try:
            done = quarantine(path, self.options.quarantine_path, reason, problems, fd=fd)
        except OSError as e:  # a refused quarantine (a link, not ours) included: never followed
            self._skip(path, "cannot quarantine segment; it stays in the spool", e)
            return
        self.metrics.quarantined.click()
        log(logging.WARNING, "segment quarantined", path=path, moved_to=done.target,
            sidecar=done.sidecar or "-", reason=reason)  # fmt: skip
        if done.sidecar_problem is not None:
            log(logging.WARNING, "quarantine sidecar not at its usual name", path=done.target,
                problem=done.sidecar_problem)  # fmt: skip

    def _skip(self, path: str, what: str, error: OSError) -> None:
        self.metrics.failures.click()
        self._skipped.add(path)
        log(logging.ERROR, what, path=path, error=str(error))

    def _measure_backlog(self) -> None:
        try:
            count, size = self.watcher.backlog()
        except SegmentError:
            return
        self.metrics.backlog.set(count)
        self.metrics.backlog_bytes.set(size)
