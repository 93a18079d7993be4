"""Delivery: one request at a time, sent until the remote acknowledges it or rejects it for good.

Each answer gets a :class:`Verdict`.  A 2xx acknowledges; a 4xx (and a 5xx retried
``max_retries`` times) rejects for good, so the shipper quarantines the segments; 502/503/504,
429 and no answer at all are retried without limit, with jittered exponential backoff (or the
server's ``Retry-After``); 401/403/404/405/407 and redirects *block*: they are about the URL or
the credentials, not the data, so nothing is quarantined and one try is made every
``blocked_backoff`` until someone fixes them.  Several shards send at once (each keeps its
series in order); a :class:`Gate` shared by them is the backpressure: a failure or a slow
answer halves how many may be in flight and makes them all wait out the backoff, each quick
acknowledgement lets one more in again.  Time is read through a :class:`Clock`, so the backoff
and deadline arithmetic can be tested without sleeping.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .._daemon.logfmt import log
from .metrics import ShipMetrics
from .options import ShipOptions
from .remote_write import Answer, RemoteWriteClient

__all__ = ["Clock", "Delivery", "Gate", "Sender", "Verdict", "blocked_fix"]

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
_LOG_EVERY = 10
"""Retries logged at WARNING: the first and every tenth; the others at DEBUG."""


def blocked_fix(status: int) -> str:
    """What the operator must fix when the remote answers ``status`` (401, 404, a 3xx...)."""
    return _ENDPOINT.get(status, _REDIRECT_FIX)


class Verdict(enum.Enum):
    """What to do with an answer."""

    OK = "ok"
    """Acknowledged: the samples are delivered."""
    REJECT = "reject"
    """For good: the segments go to quarantine."""
    COUNT = "count"
    """Retry, counted against ``max_retries`` (a 500, or a 5xx but 502/503/504)."""
    WAIT = "wait"
    """Retry without counting: no answer, 502/503/504 or 429 (the server will be back)."""
    BLOCKED = "blocked"
    """Retry after ``blocked_backoff``: someone must fix the URL or the credentials first."""

    @classmethod
    def of(cls, answer: Answer, counted: int, max_retries: int) -> Verdict:
        """The verdict on ``answer`` after ``counted`` counted retries."""
        status = answer.status
        if status is None or status in _UNAVAILABLE or status == 429:
            return cls.WAIT
        if 200 <= status < 300:
            return cls.OK
        if status in _ENDPOINT or 300 <= status < 400:  # nothing wrong with the data
            return cls.BLOCKED
        if status >= 500:
            return cls.COUNT if counted < max_retries else cls.REJECT
        return cls.REJECT


class _StoppedError(Exception):
    """Stop was set, or the deadline came, while a request waited to be retried.

    The request is abandoned; its segments stay in the spool (nothing is lost).
    """


@dataclass(frozen=True, slots=True)
class Clock:
    """The time delivery reads and waits on; tests pass one that does not sleep."""

    monotonic: Callable[[], float] = time.monotonic
    """Deadlines and request durations."""
    wall: Callable[[], float] = time.time
    """The last acknowledgement's timestamp (a gauge in epoch seconds)."""
    wait: Callable[[threading.Event, float], bool] = threading.Event.wait
    """Sleep until the event is set or the seconds pass; True if it was set."""
    jitter: Callable[[float, float], float] = random.uniform
    """A backoff between half and all of its nominal delay, so shippers do not retry in step."""


class Sender(Protocol):
    """What delivery POSTs through: a :class:`RemoteWriteClient`, or a stand-in in tests."""

    def send(self, body: bytes, timeout: float | None = None) -> Answer:
        """POST ``body``; never raises (a transport failure is an answer without a status)."""

    def close(self) -> None:
        """Release the connections."""


class Gate:
    """How many shards may have a request out now, and until when they all wait.

    Additive increase, multiplicative decrease: it starts at one request in flight (a remote
    that refuses everything gets one try, not one per shard), grows by one per quick
    acknowledgement up to ``limit``, and halves after a failure or an acknowledgement slower
    than ``slow`` seconds (the receiver is saturating).  A failure's backoff (or its
    ``Retry-After``) pauses every shard, not only the one that got it.  Waits are on the
    clock and the stop event: nothing spins.
    """

    def __init__(self, limit: int, clock: Clock, slow: float) -> None:
        self.limit = limit
        self.allowed = 1
        self._clock = clock
        self._slow = slow
        self._active = 0
        self._until = 0.0
        self._cv = threading.Condition()

    def enter(self, stop: threading.Event, time_left: Callable[[], float | None]) -> None:
        """Wait for the pause to end and a free place; raises :class:`_StoppedError` instead."""
        clock = self._clock
        while True:
            with self._cv:
                pause = self._until - clock.monotonic()
                if pause <= 0:
                    if self._active < self.allowed:
                        self._active += 1
                        return
                    self._cv.wait(0.1)  # woken by leave(); the timeout only sees stop
                    if stop.is_set():
                        raise _StoppedError
                    left = time_left()
                    if left is not None and left <= 0.001:
                        raise _StoppedError
                    continue
            left = time_left()
            if left is not None and left < pause:
                clock.wait(stop, left)
                raise _StoppedError
            if clock.wait(stop, pause):
                raise _StoppedError

    def leave(self, ok: bool, seconds: float, pause: float) -> None:
        """A request is answered: ``ok`` and how long it took, and the pause it asks for."""
        with self._cv:
            self._active -= 1
            if ok and seconds < self._slow:
                self.allowed = min(self.limit, self.allowed + 1)
            else:
                self.allowed = max(1, self.allowed // 2)
            if pause > 0:
                self._until = max(self._until, self._clock.monotonic() + pause)
            self._cv.notify_all()


class Delivery:
    """Sends request bodies to one remote; keeps the blocked state and the last failure.

    Thread-safe: each shard sends through its own connection (:meth:`client`) and the
    :class:`Gate` they share.
    """

    def __init__(
        self,
        options: ShipOptions,
        metrics: ShipMetrics,
        clock: Clock | None = None,
        client: Sender | None = None,
    ) -> None:
        self._options = options
        self._metrics = metrics
        self._clock = clock or Clock()
        self._given = client
        # The real client checks the secret files first.
        self._clients: list[Sender] = [
            client if client is not None else RemoteWriteClient(options.remote)
        ]
        self.gate = Gate(options.concurrency, self._clock, options.remote.timeout / 2)
        metrics.concurrency.set(self.gate.allowed)
        self.deadline: float | None = None
        """A ``clock.monotonic()`` value by which every wait and request must end, or None."""
        self.blocked: int | None = None
        """The HTTP status the remote blocks us with (401, 404...), None when not blocked."""
        self.last_failure: str | None = None
        """The last answer that was not an acknowledgement, for messages; None after one."""

    def client(self, shard: int) -> Sender:
        """Shard ``shard``'s connection, made at first use (or the one given, for tests)."""
        while len(self._clients) <= shard:
            self._clients.append(self._given or RemoteWriteClient(self._options.remote))
        return self._clients[shard]

    def close(self) -> None:
        """Close the connections."""
        for client in self._clients:
            client.close()
        del self._clients[1:]

    def send(
        self, body: bytes, samples: int, stop: threading.Event, client: Sender | None = None
    ) -> Answer | None:
        """Send ``body`` (``samples`` samples) until acknowledged (None) or rejected (the answer).

        Raises :class:`_StoppedError` when ``stop`` is set or the deadline comes first.
        """
        opts, metrics, clock, gate = self._options, self._metrics, self._clock, self.gate
        sender = client or self._clients[0]
        attempt = counted = 0
        while True:  # bounded by stop and the deadline; every failed try pauses the gate
            gate.enter(stop, self._time_left)
            started = clock.monotonic()
            answer = sender.send(body, timeout=self._time_left())
            seconds = clock.monotonic() - started
            metrics.requests.click()
            metrics.request_seconds.observe(seconds)
            verdict = Verdict.of(answer, counted, opts.max_retries)
            if verdict is Verdict.OK or verdict is Verdict.REJECT:
                gate.leave(verdict is Verdict.OK, seconds, 0.0)
                metrics.concurrency.set(gate.allowed)
                if verdict is Verdict.REJECT:
                    return answer
                self._acknowledged(samples, len(body), attempt)
                return None
            status = "no answer" if answer.status is None else f"HTTP {answer.status}"
            self.last_failure = f"{status}: {answer.message[:200] or '(no message)'}"
            counted += verdict is Verdict.COUNT
            if verdict is Verdict.BLOCKED:
                delay = opts.blocked_backoff
                self._block(answer, delay)
            else:
                delay = self._backoff(answer, attempt)
                level = logging.WARNING if attempt % _LOG_EVERY == 0 else logging.DEBUG
                log(level, "remote write failed; retrying", url=opts.remote.url,
                    status=answer.status or "-", answer=answer.message[:200],
                    attempt=attempt + 1, retry_in=f"{delay:.2f}s", samples=samples)  # fmt: skip
            gate.leave(False, seconds, delay)
            metrics.concurrency.set(gate.allowed)
            attempt += 1
            metrics.retries.click()
            metrics.retried.count(samples)

    def _backoff(self, answer: Answer, attempt: int) -> float:
        """Seconds before retry ``attempt + 1``: doubling and jittered, or the ``Retry-After``."""
        opts = self._options
        if answer.status == 429 and answer.retry_after is not None:
            return min(answer.retry_after, opts.max_retry_after)
        delay = min(opts.max_backoff, opts.min_backoff * 2 ** min(attempt, 30))
        return self._clock.jitter(delay / 2, delay)

    def _time_left(self) -> float | None:
        """Seconds until the deadline (at least a little, for one last request)."""
        if self.deadline is None:
            return None
        return max(0.001, self.deadline - self._clock.monotonic())

    def _block(self, answer: Answer, delay: float) -> None:
        """Enter (or stay in) the blocked state: gauges up, one log line saying what to fix."""
        status = answer.status or 0
        self._metrics.blocked.set(1)
        self._metrics.blocked_status.set(status)
        self.blocked = status
        log(logging.ERROR, "remote write blocked: the receiver refuses the URL or the "
            "credentials; segments stay in the spool", url=self._options.remote.url,
            status=status, answer=answer.message[:200], fix=blocked_fix(status),
            retry_in=f"{delay:g}s")  # fmt: skip

    def _acknowledged(self, samples: int, size: int, attempt: int) -> None:
        metrics = self._metrics
        metrics.sent.count(samples)
        metrics.bytes.count(size)
        metrics.last_success.set(self._clock.wall())
        if attempt:
            log(logging.INFO, "remote write recovered", attempts=attempt + 1)
        self.last_failure = None
        if self.blocked is not None:
            log(logging.INFO, "remote write unblocked", url=self._options.remote.url,
                was=self.blocked)  # fmt: skip
            self.blocked = None
            metrics.blocked.set(0)
            metrics.blocked_status.set(0)
