"""Delivery in isolation: verdicts, backoff, the blocked state and the deadline, on a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import pytest

from biometrics.ship import Answer, Clock, RemoteWriteOptions, ShipMetrics, ShipOptions
from biometrics.ship.delivery import Delivery, Verdict, _StoppedError

BODY = b"not decoded by the fake sender"


class FakeTime:
    """A clock whose waits advance it instead of sleeping; every wait is recorded."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return stop.is_set()

    def clock(self) -> Clock:
        return Clock(monotonic=self.monotonic, wall=lambda: 1.7e9, wait=self.wait,
                     jitter=lambda low, high: high)  # fmt: skip


class Script:
    """A sender answering from a list, then 204 for ever."""

    def __init__(self, answers: Iterable[Answer]) -> None:
        self.answers = list(answers)
        self.sent = 0

    def send(self, body: bytes, timeout: float | None = None) -> Answer:
        self.sent += 1
        return self.answers.pop(0) if self.answers else Answer(204, "")

    def close(self) -> None:
        pass


def delivery(answers: Iterable[Answer], time: FakeTime, **options: object) -> Delivery:
    remote = RemoteWriteOptions("http://127.0.0.1:1/api/v1/write")
    opts = ShipOptions("spool", remote, **options)  # type: ignore[arg-type]
    return Delivery(opts, ShipMetrics(), time.clock(), Script(answers))


@pytest.mark.parametrize(
    ("status", "counted", "verdict"),
    [
        (204, 0, Verdict.OK),
        (None, 99, Verdict.WAIT),
        (503, 99, Verdict.WAIT),
        (429, 99, Verdict.WAIT),
        (401, 0, Verdict.BLOCKED),
        (404, 0, Verdict.BLOCKED),
        (307, 0, Verdict.BLOCKED),
        (500, 9, Verdict.COUNT),
        (500, 10, Verdict.REJECT),
        (400, 0, Verdict.REJECT),
    ],
)
def test_each_answer_gets_its_verdict(status: int | None, counted: int, verdict: Verdict) -> None:
    """The documented table: retry forever, retry counted, blocked, or reject for good."""
    assert Verdict.of(Answer(status, ""), counted, max_retries=10) is verdict


def test_unavailable_answers_back_off_doubling_without_sleeping() -> None:
    """Three 503s: waits of 0.1, 0.2, 0.4 s on the injected clock, then the acknowledgement."""
    time = FakeTime()
    d = delivery([Answer(503, "down")] * 3, time)
    assert d.send(BODY, 2, threading.Event()) is None
    assert time.waits == pytest.approx([0.1, 0.2, 0.4])
    assert d.last_failure is None


def test_a_blocking_answer_waits_the_blocked_backoff_until_unblocked() -> None:
    """A 401 blocks (status kept for messages) until a 2xx, one try per blocked_backoff."""
    time = FakeTime()
    d = delivery([Answer(401, "no")] * 2, time, blocked_backoff=300.0)
    assert d.send(BODY, 2, threading.Event()) is None
    assert time.waits == pytest.approx([300.0, 300.0])
    assert d.blocked is None


def test_the_deadline_cuts_the_wait_short_and_abandons_the_request() -> None:
    """With 1 s left and a 5 s Retry-After, delivery waits out the second and gives up."""
    time = FakeTime()
    d = delivery([Answer(429, "slow", retry_after=5.0)] * 5, time)
    d.deadline = time.now + 1.0
    with pytest.raises(_StoppedError):
        d.send(BODY, 2, threading.Event())
    assert time.waits == pytest.approx([1.0])
    assert d.last_failure is not None and d.last_failure.startswith("HTTP 429")


def test_a_rejection_is_returned_not_retried() -> None:
    """A 400 comes back as the answer at once, for the shipper to quarantine."""
    time = FakeTime()
    d = delivery([Answer(400, "bad sample")], time)
    answer = d.send(BODY, 2, threading.Event())
    assert answer is not None and answer.status == 400
    assert time.waits == []
