"""The shards: one thread each, sending its requests in order, side by side.

A series always hashes to one shard, and a shard has one request out at a time, so a series'
samples arrive in time order however many shards run.  The shipper's thread builds requests and
hands them over (:meth:`Shards.submit`, which waits while that shard already has ``depth``
queued: the backpressure that keeps memory flat when the receiver slows down); answered
requests come back to it (:meth:`Shards.collect`), in each shard's order, and only it touches
the segments' progress and the spool.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from .delivery import Delivery, Sender, _StoppedError
from .metrics import ShipMetrics
from .remote_write import Answer
from .wire import SeriesParts, encode

__all__ = ["Request", "Shards"]


class _Refusable(Protocol):
    rejected: str | None


K = TypeVar("K", bound=_Refusable)


@dataclass(eq=False, slots=True)
class Request(Generic[K]):
    """One shard's request: each segment's series, and the lines they were read from."""

    shard: int
    parts: dict[K, SeriesParts]
    lines: dict[K, tuple[int, int]]
    """Segment -> (first, last) line read into this request (this shard's samples of them)."""
    refused: set[K] = field(default_factory=set)
    """Segments whose samples the remote refused for good (set by the shard's thread)."""
    answered: bool = False
    """Acknowledged, or refused for good; False when stopped first (then nothing is known)."""


class Shards(Generic[K]):
    """``count`` sender threads, started at the first request and stopped by :meth:`close`."""

    def __init__(
        self, delivery: Delivery, metrics: ShipMetrics, count: int, depth: int = 2
    ) -> None:
        self._delivery = delivery
        self._metrics = metrics
        self._count = count
        self._depth = depth
        self._cv = threading.Condition()
        self._queues: list[deque[Request[K]]] = [deque() for _ in range(count)]
        """Each shard's requests, the one being sent first (it leaves when answered)."""
        self._done: deque[Request[K]] = deque()
        self._threads: list[threading.Thread] = []
        self._halt = threading.Event()
        """Set at close, or when the caller's stop is seen: a shard's retry wait ends."""
        self._stopped = False
        self._error: BaseException | None = None

    def submit(
        self, request: Request[K], stop: threading.Event, apply: Callable[[Request[K]], None]
    ) -> None:
        """Queue ``request``; while its shard is full, apply the answered ones and wait."""
        if stop.is_set():
            self._halt.set()
            raise _StoppedError
        if not self._threads:
            self._start()
        queue = self._queues[request.shard]
        with self._cv:
            while len(queue) >= self._depth:
                self._wait(stop, apply)
            queue.append(request)
            self._cv.notify_all()

    def collect(self, apply: Callable[[Request[K]], None], *, raising: bool = True) -> bool:
        """Apply every answered request now; True if there was one.  Raises what a shard hit."""
        with self._cv:
            done = list(self._done)
            self._done.clear()
        for request in done:
            apply(request)
        if raising:
            self._raise()
        return bool(done)

    def drain(self, stop: threading.Event, apply: Callable[[Request[K]], None]) -> None:
        """Wait until every request was answered, applying them as they are."""
        with self._cv:
            while any(self._queues) or self._done:
                self._wait(stop, apply)

    def close(self) -> None:
        """Stop the threads: queued requests are dropped (their segments stay in the spool)."""
        self._halt.set()
        with self._cv:
            for queue in self._queues:
                while len(queue) > 1:
                    queue.pop()
            self._cv.notify_all()
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def _wait(self, stop: threading.Event, apply: Callable[[Request[K]], None]) -> None:
        """Under the lock: apply what is answered, else sleep until a shard answers."""
        if self._done:
            self._cv.release()
            try:
                self.collect(apply)
            finally:
                self._cv.acquire()
            return
        self._raise()
        if stop.is_set():
            self._halt.set()
            raise _StoppedError
        self._cv.wait(0.1)  # notified at every answer; the timeout only sees stop

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
        if self._stopped:
            raise _StoppedError

    def _start(self) -> None:
        for shard in range(self._count):
            client = self._delivery.client(shard)  # here: a failure is the caller's
            thread = threading.Thread(target=self._run, args=(shard, client),
                                      name=f"biometrics-ship-{shard}", daemon=True)  # fmt: skip
            thread.start()
            self._threads.append(thread)

    def _run(self, shard: int, client: Sender) -> None:
        queue = self._queues[shard]
        while True:
            with self._cv:
                while not queue and not self._halt.is_set():
                    self._cv.wait()
                if self._halt.is_set():
                    return
                request = queue[0]
            try:
                self._send(request, client)
            except _StoppedError:
                self._stopped = True
            except Exception as e:  # handed to the shipper's thread, which logs it
                self._error = e
            with self._cv:
                queue.popleft()
                self._done.append(request)
                self._cv.notify_all()
                if self._stopped or self._error is not None:
                    return

    def _send(self, request: Request[K], client: Sender) -> None:
        """Send one request; on a refusal, find which segments it is about, as one would alone."""
        live = {s: part for s, part in request.parts.items() if s.rejected is None}
        if live:
            body, samples, dropped = encode(live.values())
            self._metrics.duplicates.count(dropped)
            answer = self._delivery.send(body, samples, self._halt, client)
            if answer is not None and len(live) == 1:
                self._refuse(request, next(iter(live)), samples, answer)
            elif answer is not None:
                for segment, part in live.items():  # one transaction: try each segment alone
                    body, samples, _ = encode([part])
                    alone = self._delivery.send(body, samples, self._halt, client)
                    if alone is not None:
                        self._refuse(request, segment, samples, alone)
        request.answered = True

    def _refuse(self, request: Request[K], segment: K, samples: int, answer: Answer) -> None:
        self._metrics.failed.count(samples)
        request.refused.add(segment)
        first, last = request.lines[segment]
        status = "no answer" if answer.status is None else f"HTTP {answer.status}"
        segment.rejected = (
            f"{status}: {answer.message or '(no message)'} (its request held {samples} samples "
            f"from lines {first}..{last}; the samples sent before it were delivered, later "
            "lines were not sent)"
        )
