"""Several requests in flight: per-series order, backpressure, and when a segment may go."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

from biometrics.prometheus.parser import Parse, Sample
from biometrics.ship import RemoteWriteOptions, ShipOptions, Shipper

from ..helpers import wait_for
from ._receiver import Decoded, Receiver, Reply

T0 = 1_700_000_000_000


def write_segment(spool: Path, source: str, series: int, steps: int, start: int = T0) -> Path:
    """One segment: ``series`` counters, ``steps`` emits 1 s apart, one TYPE line."""
    lines = ["# TYPE m_total counter"]
    for step in range(steps):
        lines += [
            f'm_total{{i="{i}"}} {step * 10 + i} {start + 1000 * step}' for i in range(series)
        ]
    path = spool / f"{source}.{start}.prom"
    path.write_text("\n".join(lines) + "\n")
    return path


Series = dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]


def wanted(series: int, steps: int, source: str) -> Series:
    return {
        (("__name__", "m_total"), ("i", str(i)), ("source", source)):
            [(T0 + 1000 * step, float(step * 10 + i)) for step in range(steps)]
        for i in range(series)
    }  # fmt: skip


def shipper(spool: Path, url: str, timeout: float = 5, **options: object) -> Shipper:
    opts = ShipOptions(str(spool), RemoteWriteOptions(url, timeout=timeout), min_backoff=0.01,
                       max_backoff=0.05, **options)  # type: ignore[arg-type]  # fmt: skip
    s = Shipper(opts)
    s.open()
    return s


def test_each_series_stays_in_order_with_several_requests_in_flight(
    spool: Path, receiver: Receiver
) -> None:
    """Four shards, some requests answered late: requests overlap, yet a series is never in two
    requests at once and its samples arrive in time order, every one exactly once."""
    write_segment(spool, "a", 40, 10)
    write_segment(spool, "b", 40, 10, T0 + 20_000)
    receiver.answer = lambda n, _s: ("slow", 0.05, 204) if n % 3 == 0 else 204
    s = shipper(spool, receiver.url, concurrency=4, max_samples_per_request=8)
    try:
        assert s.ship_pass()
    finally:
        s.close()
    assert receiver.max_in_flight >= 2, "several requests were in flight at once"
    want = wanted(40, 10, "a")
    want.update({(k[0], k[1], ("source", "b")): [(t + 20_000, v) for t, v in samples]
                 for k, samples in wanted(40, 10, "b").items()})  # fmt: skip
    assert receiver.accepted() == want
    spans: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    for request in receiver.requests:
        assert request.answered is not None
        assert sum(len(samples) for _, samples in request.series) <= 8
        for labels, _ in request.series:
            spans.setdefault(labels, []).append((request.arrived, request.answered))
    for labels, times in spans.items():
        for (_, answered), (arrived, _) in itertools.pairwise(times):
            assert arrived >= answered, f"{labels} was in two requests at once"
    assert list(spool.glob("*.prom")) == []


def test_a_429_pauses_every_shard_and_loses_nothing(spool: Path, receiver: Receiver) -> None:
    """A 429 with Retry-After: 1 once the shards are all busy: no request at all for a second
    after it, then everything arrives; one retry, no request sent more than twice."""
    write_segment(spool, "a", 40, 20)
    receiver.answer = lambda n, _s: (429, {"Retry-After": "1"}, "slow down") if n == 6 else 204
    s = shipper(spool, receiver.url, concurrency=4, max_samples_per_request=20)
    try:
        assert s.ship_pass()
    finally:
        s.close()
    refused = receiver.requests[6]
    assert refused.status == 429 and refused.answered is not None
    # The shipper reads the answer a few ms after it was written: a request that shard sends
    # then is not paused yet; from 0.1 s on, every shard waits.
    during = [r.number for r in receiver.requests
              if refused.answered + 0.1 < r.arrived < refused.answered + 0.95]  # fmt: skip
    assert during == [], "every shard waits out the Retry-After"
    assert any(r.arrived >= refused.answered + 0.95 for r in receiver.requests)
    assert receiver.accepted() == wanted(40, 20, "a")
    assert s.metrics.retries.read() == 1
    assert len(receiver.requests) == len({r.body for r in receiver.requests}) + 1


def test_a_slow_receiver_gets_one_request_at_a_time(spool: Path, receiver: Receiver) -> None:
    """Answers slower than half the timeout mean the receiver is saturated: concurrency stays
    at one (never more than one request in flight), and nothing is lost."""
    write_segment(spool, "a", 40, 5)
    receiver.answer = lambda _n, _s: ("slow", 0.3, 204)
    s = shipper(spool, receiver.url, timeout=0.5, concurrency=4, max_samples_per_request=40)
    try:
        assert s.ship_pass()
    finally:
        s.close()
    assert len(receiver.requests) >= 5
    assert receiver.max_in_flight == 1
    assert s.metrics.concurrency.read() == 1
    assert receiver.accepted() == wanted(40, 5, "a")


def test_a_segment_stays_until_every_shard_acknowledged_it(spool: Path, receiver: Receiver) -> None:
    """One shard's request held back while the others are acknowledged: the segment stays in the
    spool; once that request is answered, it goes."""
    path = write_segment(spool, "a", 40, 10)
    release = threading.Event()

    def answer(n: int, _s: Decoded) -> Reply:
        if n == 4:
            release.wait(10)
        return 204

    receiver.answer = answer
    s = shipper(spool, receiver.url, concurrency=4, max_samples_per_request=10)
    passed: list[bool] = []
    thread = threading.Thread(target=lambda: passed.append(s.ship_pass()))
    thread.start()
    try:
        wait_for(lambda: len(receiver.requests) > 4, "the held request", timeout=30)
        wait_for(lambda: any(r.number > 4 and r.status == 204 for r in receiver.requests),
                 "another shard acknowledged", timeout=30)  # fmt: skip
        assert receiver.requests[4].status is None
        assert path.exists(), "not gone while one shard's request is unanswered"
    finally:
        release.set()
        thread.join(30)
        s.close()
    assert passed == [True]
    assert not path.exists()
    assert receiver.accepted() == wanted(40, 10, "a")


def test_the_fast_path_accepts_and_refuses_what_the_parser_does(
    spool: Path, receiver: Receiver
) -> None:
    """Lines of known series (the fast path) with odd values and timestamps ship exactly as the
    parser reads them, and the lines it refuses are the parser's, with its messages."""
    odd = ["1", "1.5", "-2e3", "+Inf", "-Inf", ".5", "1_0", "0x10", "1e", "+3", "7\t"]
    stamps = ["1700000000000", "0001700000000001", "99999999999999999999", "17e11", "1700000000002"]
    lines = [f'o_total{{k="{i}"}} {value} {stamp}' for i, value in enumerate(odd)
             for stamp in stamps]  # fmt: skip
    lines.append('o_total{k="0"} 4 1700000000009\r')
    text = "\n".join(lines) + "\n"
    path = spool / "f.1700000000000.prom"
    path.write_text(text)
    parsed = Parse([text.encode()], path=str(path))
    want: Series = {}
    for item in parsed:
        if isinstance(item, Sample) and item.timestamp_ms is not None:
            key = (("__name__", item.name), *item.labels, ("source", "f"))
            want.setdefault(key, []).append((item.timestamp_ms, item.value))
    assert parsed.problems
    s = shipper(spool, receiver.url)
    try:
        s.ship_pass()
    finally:
        s.close()
    got = receiver.accepted()
    assert got == {k: sorted(dict(v).items()) for k, v in want.items()}  # later line wins a ms
    sidecar = (spool / "quarantine" / (path.name + ".error")).read_text()
    for problem in parsed.problems:
        assert str(problem) in sidecar
