"""The shipper against a local receiver: delivery, ordering, retries, quarantine, resume."""

from __future__ import annotations

import collections
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from biometrics import Collector, Counter, Gauge, Histogram
from biometrics._daemon.logfmt import LOGGER, configure
from biometrics.errors import InvalidLabelError, InvalidValueError, SpoolError, StateError
from biometrics.prometheus import Options, SegmentEmitter
from biometrics.ship import RemoteWriteOptions, ShipOptions, Shipper

from ..helpers import read_samples, wait_for
from ._receiver import Decoded, Receiver, Reply

Series = dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]


def emit_history(spool: Path, source: str, start_ms: int, emits: int) -> list[str]:
    """A process's segments: ``emits`` emits, 1 s apart, of a counter, a gauge and a histogram."""
    c = Collector()
    requests = c.register(Counter("http.requests", labels={"route": "/a"}, help="Requests."))
    busy = c.register(Gauge("http.in_flight"))
    latency = c.register(Histogram("http.latency_seconds"))
    paths = []
    with SegmentEmitter(Options(prefix=str(spool / f"{source}."), flush_interval=2)) as e:
        for i in range(emits):
            requests.count(i + 1)
            busy.set(i)
            latency.observe(0.001 * (i + 1))
            c.emit(e, start_ms + 1000 * i)
            if e.path is not None and e.path not in paths:
                paths.append(e.path)
    return paths


def expected(paths: list[str], source_label: str | None = "source") -> Series:
    """What should arrive, computed by parsing the files before they are shipped."""
    out: Series = {}
    for path in paths:
        source = Path(path).name.rsplit(".", 2)[0].rstrip("._-")
        default_ts = int(Path(path).name.rsplit(".", 2)[1])
        for item in read_samples(path):
            labels = dict(item.labels)
            if source_label:
                labels[source_label] = source
            labels["__name__"] = item.name
            key = tuple(sorted(labels.items()))
            ts = default_ts if item.timestamp_ms is None else item.timestamp_ms
            out.setdefault(key, []).append((ts, item.value))
    return out


def shipper(spool: Path, url: str, **options: object) -> Shipper:
    remote = options.pop("remote", None) or RemoteWriteOptions(url, timeout=5)
    assert isinstance(remote, RemoteWriteOptions)
    options.setdefault("blocked_backoff", 0.05)
    ship_options = ShipOptions(str(spool), remote, source_label="source", min_backoff=0.01,
                               max_backoff=0.05, **options)  # type: ignore[arg-type]  # fmt: skip
    s = Shipper(ship_options)
    s.open()
    return s


def ship_once(spool: Path, url: str, **options: object) -> Shipper:
    """One pass of a fresh shipper, closed after; returned for its metrics."""
    s = shipper(spool, url, **options)
    try:
        s.ship_pass()
    finally:
        s.close()
    return s


def prom_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.prom"))


def test_every_sample_arrives_once_in_order_with_the_protocol_headers(
    spool: Path, receiver: Receiver
) -> None:
    """Several processes' segments: every sample at its own ms, series sorted, files removed."""
    paths = emit_history(spool, "web-1", 1_700_000_000_000, 5)
    paths += emit_history(spool, "web-2", 1_700_000_000_500, 5)
    want = expected(paths)
    s = shipper(spool, receiver.url, max_samples_per_request=7)
    assert s.ship_pass()
    s.close()
    got = receiver.accepted()
    assert got == want
    assert sum(len(v) for v in got.values()) == sum(len(v) for v in want.values()) > 50
    for request in receiver.requests:
        assert sum(len(samples) for _, samples in request.series) <= 7
        assert request.headers["Content-Encoding"] == "snappy"
        assert request.headers["Content-Type"] == "application/x-protobuf"
        assert request.headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
        assert request.headers["User-Agent"].startswith("biometrics/")
        assert not request.body.startswith(b"\xff\x06\x00\x00sNaPpY")  # block, not framed
        for labels, samples in request.series:
            assert [n for n, _ in labels] == sorted(n for n, _ in labels)
            assert all(v for _, v in labels)
            assert [t for t, _ in samples] == sorted(t for t, _ in samples)
    assert prom_files(spool) == []
    assert json.loads((spool / ".biometrics" / "ship.json").read_text())["segments"] == {}
    assert s.metrics.sent.read() == sum(len(v) for v in want.values())
    assert s.metrics.segments.read() == len(paths)


def test_a_rejected_segment_is_quarantined_and_the_others_delivered(
    spool: Path, receiver: Receiver
) -> None:
    """400 about one source's samples: that segment alone goes to quarantine with the answer."""
    good = expected(emit_history(spool, "good", 1_700_000_000_000, 2))
    bad = emit_history(spool, "bad", 1_700_000_001_000, 2)
    bad_samples = sum(len(v) for v in expected(bad).values())

    def answer(_n: int, series: Decoded) -> Reply:
        if any(("source", "bad") in labels for labels, _ in series):
            return (400, {}, "out of order sample")
        return 204

    receiver.answer = answer
    s = ship_once(spool, receiver.url)
    assert receiver.accepted() == good
    assert prom_files(spool) == []
    quarantined = spool / "quarantine" / Path(bad[0]).name
    assert quarantined.exists()
    sidecar = Path(str(quarantined) + ".error").read_text()
    assert "HTTP 400: out of order sample" in sidecar and bad[0] in sidecar
    assert s.metrics.quarantined.read() == 1
    assert s.metrics.failed.read() == bad_samples


def test_429_waits_for_retry_after_and_loses_nothing(spool: Path, receiver: Receiver) -> None:
    """A 429 with Retry-After: 1 is retried no sooner than a second later, counted as a retry, and
    every sample arrives.
    """
    want = expected(emit_history(spool, "web", 1_700_000_000_000, 2))
    receiver.answer = lambda n, _s: (429, {"Retry-After": "1"}, "slow down") if n == 0 else 204
    s = ship_once(spool, receiver.url)
    assert receiver.accepted() == want
    first, second = receiver.requests[0], receiver.requests[1]
    assert second.arrived - first.arrived >= 0.95
    assert s.metrics.retries.read() == 1


def test_500_is_retried_max_retries_times_then_quarantined(spool: Path, receiver: Receiver) -> None:
    """Prometheus 2.42 answers 'too old sample' with 500: retrying forever would wedge the spool.

    Each shard's request is sent max_retries + 1 times, then the segment is quarantined.
    """
    old = emit_history(spool, "old", 1_600_000_000_000, 1)
    receiver.answer = lambda _n, _s: (500, {}, "too old sample")
    ship_once(spool, receiver.url, max_retries=2)
    tries = collections.Counter(r.body for r in receiver.requests)
    assert tries and set(tries.values()) == {3}
    sidecar = (spool / "quarantine" / (Path(old[0]).name + ".error")).read_text()
    assert "HTTP 500: too old sample" in sidecar


@pytest.mark.parametrize("failure", ["reset", "slow", 503])
def test_transient_failures_keep_the_segment_until_acknowledged(
    spool: Path, receiver: Receiver, failure: Reply
) -> None:
    """Connection resets, timeouts and 503 are retried, never quarantined."""
    want = expected(emit_history(spool, "web", 1_700_000_000_000, 2))
    reply: Reply = ("slow", 1.0, 204) if failure == "slow" else failure
    receiver.answer = lambda n, _s: reply if n < 2 else 204
    remote = RemoteWriteOptions(receiver.url, timeout=0.3)
    s = ship_once(spool, receiver.url, remote=remote, max_retries=0)
    failed = receiver.requests[:2]
    assert [r.status for r in receiver.requests[2:]] == [204] * (len(receiver.requests) - 2)
    for request in failed:  # each failed request was sent again as it was, and acknowledged
        assert request.status != 204
        assert any(r.body == request.body for r in receiver.requests[2:])
    assert len(receiver.requests) == 2 + len({r.body for r in receiver.requests})
    assert prom_files(spool) == [] and not (spool / "quarantine").exists()
    assert receiver.accepted() == want
    assert sum(len(v) for v in want.values()) == s.metrics.sent.read()


def test_a_stopped_shipper_keeps_unacknowledged_segments_and_resumes_without_resending(
    spool: Path, receiver: Receiver
) -> None:
    """Acknowledged lines are recorded; a restart sends only the rest, each sample once."""
    paths = emit_history(spool, "web", 1_700_000_000_000, 20)
    want = expected(paths)
    stop = threading.Event()

    def answer(n: int, _s: Decoded) -> Reply:
        if n >= 2:
            stop.set()
            return 503
        return 204

    receiver.answer = answer
    s = shipper(spool, receiver.url, max_samples_per_request=10)
    assert not s.ship_pass(stop)
    s.close()
    assert prom_files(spool) == sorted(Path(p).name for p in paths)
    progress = json.loads((spool / ".biometrics" / "ship.json").read_text())["segments"]
    assert max(next(iter(progress.values()))[3]) > 0, "per-shard lines acknowledged"

    receiver.answer = lambda _n, _s: 204
    s = shipper(spool, receiver.url, max_samples_per_request=10)
    assert s.ship_pass()
    s.close()
    got = receiver.accepted()
    assert got == want  # equality of lists: no sample twice
    assert prom_files(spool) == []


def test_labels_are_checked_before_sending(spool: Path, receiver: Receiver) -> None:
    """A reserved label name is refused with file:line; a clashing source label is kept."""
    segment = spool / "job.1700000000000.prom"
    segment.write_text(
        'ok_total{source="mine"} 1 1700000000000\n'
        'bad_total{__meta="x"} 2 1700000000000\n'
        'empty_total{zone=""} 3 1700000000000\n'
    )
    ship_once(spool, receiver.url, external_labels={"cluster": "eu", "source": "ignored"})
    got = receiver.accepted()
    assert got == {
        (("__name__", "ok_total"), ("cluster", "eu"), ("exported_source", "mine"),
         ("source", "job")): [(1_700_000_000_000, 1.0)],
        (("__name__", "empty_total"), ("cluster", "eu"), ("source", "job")):
            [(1_700_000_000_000, 3.0)],
    }  # fmt: skip
    sidecar = (spool / "quarantine" / "job.1700000000000.prom.error").read_text()
    assert f"{segment}:2: label '__meta'" in sidecar


def test_malformed_lines_are_reported_and_the_rest_delivered(
    spool: Path, receiver: Receiver
) -> None:
    """Rust-style lines without timestamps take the file's time; a torn last line is dropped."""
    (spool / "rust.1700000000000.prom").write_text("a_total 1\n{oops} 1\nb 2.5\n")
    (spool / "torn.1700000000001.prom").write_text("c_total 4 1700000000001\nc_tot")
    ship_once(spool, receiver.url)
    got = receiver.accepted()
    assert got[(("__name__", "a_total"), ("source", "rust"))] == [(1_700_000_000_000, 1.0)]
    assert got[(("__name__", "b"), ("source", "rust"))] == [(1_700_000_000_000, 2.5)]
    assert got[(("__name__", "c_total"), ("source", "torn"))] == [(1_700_000_000_001, 4.0)]
    assert prom_files(spool / "quarantine") == ["rust.1700000000000.prom"]
    sidecar = (spool / "quarantine" / "rust.1700000000000.prom.error").read_text()
    assert "rust.1700000000000.prom:2: not a sample line" in sidecar
    assert prom_files(spool) == []


def test_same_series_and_millisecond_keeps_the_later_line(spool: Path, receiver: Receiver) -> None:
    """Two lines of one series in one millisecond ship once, with the later line's value, in time
    order, and the duplicate is counted.
    """
    (spool / "w.1700000000000.prom").write_text("a_total 1 5\na_total 2 5\na_total 3 4\n")
    s = ship_once(spool, receiver.url)
    assert receiver.accepted() == {(("__name__", "a_total"), ("source", "w")): [(4, 3.0), (5, 2.0)]}
    assert s.metrics.duplicates.read() == 1


def test_credentials_come_from_files(tmp_path: Path, spool: Path, receiver: Receiver) -> None:
    """The bearer token is read from its file at each pass (a rotation takes effect), extra headers
    are sent, and basic auth takes its password from a file.
    """
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    (spool / "w.1700000000000.prom").write_text("a_total 1\n")
    remote = RemoteWriteOptions(receiver.url, bearer_token_file=str(token),
                                headers={"X-Scope-OrgID": "team-a"})  # fmt: skip
    s = shipper(spool, receiver.url, remote=remote)
    s.ship_pass()
    token.write_text("rotated")
    (spool / "w.1700000000001.prom").write_text("a_total 2\n")
    s.ship_pass()
    s.close()
    assert receiver.requests[0].headers["Authorization"] == "Bearer s3cret"
    assert receiver.requests[1].headers["Authorization"] == "Bearer rotated"
    assert receiver.requests[0].headers["X-Scope-OrgID"] == "team-a"

    password = tmp_path / "password"
    password.write_text("pw")
    remote = RemoteWriteOptions(receiver.url, basic_auth_user="u",
                                basic_auth_password_file=str(password))  # fmt: skip
    (spool / "w.1700000000002.prom").write_text("a_total 3\n")
    s = ship_once(spool, receiver.url, remote=remote)
    assert receiver.requests[2].headers["Authorization"] == "Basic dTpwdw=="


def test_options_are_validated() -> None:
    """ShipOptions refuses an invalid source label, a reserved external label name and a
    non-positive max_samples_per_request.
    """
    remote = RemoteWriteOptions("http://127.0.0.1:1/api/v1/write")
    with pytest.raises(InvalidLabelError, match="'bad-name'"):
        ShipOptions("spool", remote, source_label="bad-name")
    with pytest.raises(InvalidLabelError, match="reserved"):
        ShipOptions("spool", remote, external_labels={"__x": "1"})
    with pytest.raises(InvalidValueError, match="max_samples_per_request"):
        ShipOptions("spool", remote, max_samples_per_request=0)


def test_backlog_is_measured(spool: Path, receiver: Receiver) -> None:
    """While the receiver refuses, the backlog gauges count the waiting segment and its bytes, and
    the shipper's state directory exists in the spool.
    """
    emit_history(spool, "web", 1_700_000_000_000, 1)
    receiver.answer = lambda _n, _s: 503
    stop = threading.Event()
    s = shipper(spool, receiver.url)
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    s.ship_pass(stop)
    timer.join()
    s.close()
    assert s.metrics.backlog.read() == 1
    assert s.metrics.backlog_bytes.read() == sum(p.stat().st_size for p in spool.glob("*.prom"))
    assert os.listdir(spool / ".biometrics")


def test_a_missing_spool_is_an_error_logged_not_raised(
    tmp_path: Path, spool: Path, receiver: Receiver
) -> None:
    """A pass over a spool that vanished returns False and counts one failure instead of raising."""
    s = shipper(spool, receiver.url)
    spool.rename(tmp_path / "gone")
    assert not s.ship_pass()
    assert s.metrics.failures.read() == 1
    s.close()


def test_a_timestamp_beyond_int64_is_quarantined_not_fatal(spool: Path, receiver: Receiver) -> None:
    """A poison timestamp (above int64, or 5000 digits) is dropped at its line; the rest ships."""
    (spool / "p.1700000000000.prom").write_text(
        f"a_total 1 1700000000000\nb_total 2 9223372036854775808\nc_total 3 {'9' * 5000}\n"
    )
    ship_once(spool, receiver.url)
    got = receiver.accepted()
    assert got == {(("__name__", "a_total"), ("source", "p")): [(1_700_000_000_000, 1.0)]}
    sidecar = (spool / "quarantine" / "p.1700000000000.prom.error").read_text()
    assert "p.1700000000000.prom:2: timestamp '9223372036854775808' is beyond int64" in sidecar
    assert "p.1700000000000.prom:3: timestamp" in sidecar


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """The exporter's log lines, captured at info; the logger is put back as it was after."""
    saved = (LOGGER.handlers[:], LOGGER.level, LOGGER.propagate)
    stream = io.StringIO()
    configure("info", stream)
    yield stream
    LOGGER.handlers[:], LOGGER.propagate = saved[0], saved[2]
    LOGGER.setLevel(saved[1])


@pytest.mark.parametrize(
    ("status", "fix"),
    [
        (401, "--bearer-token-file"),
        (403, "grant them write permission"),
        (404, "check the path in the URL"),
        (405, "does not take POST"),
        (407, "HTTPS_PROXY"),
        (302, "put the final URL"),
    ],
)
def test_endpoint_answers_block_shipping_until_the_remote_accepts_again(
    spool: Path, receiver: Receiver, logs: io.StringIO, status: int, fix: str
) -> None:
    """401/403/404/405/407/3xx: blocked (gauges, a log saying what to fix), the segment kept,
    the next try only after blocked_backoff, and shipping resumes when the remote accepts."""
    want = expected(emit_history(spool, "web", 1_700_000_000_000, 2))
    files = prom_files(spool)
    receiver.answer = lambda n, _s: (status, {"Location": "/elsewhere"}, "no") if n == 0 else 204
    s = shipper(spool, receiver.url, blocked_backoff=0.5)
    passed: list[bool] = []
    thread = threading.Thread(target=lambda: passed.append(s.ship_pass()))
    thread.start()
    try:
        wait_for(lambda: s.metrics.blocked.read() == 1, "the blocked state", timeout=30)
        assert s.metrics.blocked_status.read() == status
        assert prom_files(spool) == files, "segments stay in the spool while blocked"
        assert "remote write blocked" in logs.getvalue() and fix in logs.getvalue()
    finally:
        thread.join(30)
        s.close()
    assert passed == [True]
    first, second = receiver.requests[0], receiver.requests[1]
    assert second.arrived - first.arrived >= 0.45, "blocked_backoff, not max_backoff (0.05)"
    later = receiver.requests[1:]
    assert [r.status for r in later] == [204] * len(later), "one try while blocked"
    assert len(later) == len({r.body for r in later}), "no request sent twice once unblocked"
    assert any(r.body == first.body for r in later)
    assert receiver.accepted() == want
    assert prom_files(spool) == [] and not (spool / "quarantine").exists()
    assert s.metrics.blocked.read() == 0 and s.metrics.blocked_status.read() == 0
    assert "remote write unblocked" in logs.getvalue()


def test_a_blocked_remote_is_not_retried_in_a_tight_loop(spool: Path, receiver: Receiver) -> None:
    """Always 401 for a second: one try per blocked_backoff, where max_backoff would give ~20."""
    emit_history(spool, "web", 1_700_000_000_000, 1)
    receiver.answer = lambda _n, _s: 401
    stop = threading.Event()
    s = shipper(spool, receiver.url, blocked_backoff=0.4)
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    try:
        assert not s.ship_pass(stop)
    finally:
        timer.join()
        s.close()
    assert 2 <= len(receiver.requests) <= 4
    assert len(prom_files(spool)) == 1


def test_a_deadline_cuts_a_pass_short_and_keeps_the_segments(
    spool: Path, receiver: Receiver
) -> None:
    """A remote that never answers 2xx cannot hold a pass beyond its deadline."""
    emit_history(spool, "web", 1_700_000_000_000, 1)
    receiver.answer = lambda _n, _s: 503
    s = shipper(spool, receiver.url)
    started = time.monotonic()
    try:
        assert not s.ship_pass(deadline=started + 0.5)
    finally:
        s.close()
    assert 0.4 <= time.monotonic() - started < 5
    assert len(prom_files(spool)) == 1
    assert s.last_failure is not None and s.last_failure.startswith("HTTP 503")


def test_open_refuses_a_missing_spool_and_a_state_that_is_a_directory(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Nothing is created for a mistyped spool; a directory in the state's place is named."""
    remote = RemoteWriteOptions(receiver.url)
    with pytest.raises(SpoolError, match="no such directory") as missing:
        Shipper(ShipOptions(str(tmp_path / "typo"), remote)).open()
    assert missing.value.filename == str(tmp_path / "typo")
    assert not (tmp_path / "typo").exists()
    (tmp_path / "state.json").mkdir()
    with pytest.raises(StateError, match="is a directory") as state:
        Shipper(ShipOptions(str(tmp_path), remote, state=str(tmp_path / "state.json"))).open()
    assert state.value.filename == str(tmp_path / "state.json")


def test_blocked_backoff_is_validated() -> None:
    """A zero wait would be the tight loop the blocked state exists to prevent."""
    with pytest.raises(InvalidValueError, match="blocked_backoff"):
        ShipOptions("spool", RemoteWriteOptions("http://127.0.0.1:1/"), blocked_backoff=0)


RUST_FIRST = """\
# TYPE http_requests counter
http_requests 5 1700000000000
# TYPE h histogram
# TYPE h_sum gauge
# TYPE h_count counter
h_bucket{le="1.0000"} 1 1700000000000
h_sum 1 1700000000000
h_count 1 1700000000000
# TYPE h_exceeds_max gauge
h_exceeds_max 2 1700000000000
# TYPE m_count counter
# TYPE m_mean gauge
m_count 3 1700000000000
m_mean 2 1700000000000
# TYPE ours_total counter
ours_total 7 1700000000000
"""
RUST_ROTATED = "http_requests 6 1700000001000\nh_exceeds_max 3 1700000001000\n"
"""The Rust crate starts a rotated segment before its TYPE lines."""


def test_counters_ship_as_x_total_with_their_source_by_default(
    spool: Path, receiver: Receiver
) -> None:
    """A Rust counter ships as ``x_total`` (also from a segment without TYPE lines), as serve
    shows it; histogram and moments parts keep their names; ``source`` is on by default."""
    (spool / "rust.1700000000000.prom").write_text(RUST_FIRST)
    (spool / "rust.1700000001000.prom").write_text(RUST_ROTATED)
    options = ShipOptions(str(spool), RemoteWriteOptions(receiver.url, timeout=5))
    assert options.source_label == "source"
    with Shipper(options) as s:
        assert s.ship_pass()
    t0, t1 = 1_700_000_000_000, 1_700_000_001_000
    got = {dict(k)["__name__"]: v for k, v in receiver.accepted().items()}
    assert got == {
        "http_requests_total": [(t0, 5.0), (t1, 6.0)],
        "h_bucket": [(t0, 1.0)], "h_sum": [(t0, 1.0)], "h_count": [(t0, 1.0)],
        "h_exceeds_max_total": [(t0, 2.0), (t1, 3.0)],
        "m_count": [(t0, 3.0)], "m_mean": [(t0, 2.0)], "ours_total": [(t0, 7.0)],
    }  # fmt: skip
    assert all(dict(k)["source"] == "rust" for k in receiver.accepted())


def test_no_source_label_is_an_explicit_choice(spool: Path, receiver: Receiver) -> None:
    """``source_label=None`` sends the series as written, with no source label."""
    (spool / "w.1700000000000.prom").write_text("# TYPE a counter\na 1\n")
    options = ShipOptions(str(spool), RemoteWriteOptions(receiver.url, timeout=5),
                          source_label=None)  # fmt: skip
    with Shipper(options) as s:
        assert s.ship_pass()
    assert receiver.accepted() == {(("__name__", "a_total"),): [(1_700_000_000_000, 1.0)]}
