"""Segment text back into whole readings, from our Emitter and from the Rust crate's files."""

import io
import math
from pathlib import Path

import pytest

from biometrics import Collector, Counter, Gauge, Histogram, Moments
from biometrics.exporter import Reading, readings, source_of
from biometrics.prometheus import Emitter, Metadata, Options, parse

FIXTURE = Path(__file__).parent.parent / "fixtures" / "rust-0.3.1726547192000.prom"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("web.host.123.1726547192000.prom", ("web.host.123", 1726547192000)),
        ("rust-0.3.1726547192000.prom", ("rust-0.3", 1726547192000)),
        ("worker71726547192000.prom", ("worker7", 1726547192000)),
        ("1726547192000.prom", ("-", 1726547192000)),
        ("12.prom", ("-", 12)),
        ("notes.prom", None),
        ("x.1726547192000.prom.tmp", None),
    ],
)
def test_source_of(name: str, expected: tuple[str, int] | None) -> None:
    """The source is the prefix before the epoch ms; the time the last 13 digits at most."""
    assert source_of(name) == expected


def only_readings(items: list[Reading | Metadata]) -> dict[tuple[str, str], Reading]:
    return {(r.family, r.kind): r for r in items if isinstance(r, Reading)}


def test_every_sensor_round_trips_through_a_segment(tmp_path: Path) -> None:
    """What a sensor held is what the reading carries: counts, buckets, moments."""
    c = Collector()
    c.register(Counter("jobs.total")).count(41)
    c.register(Gauge("queue.depth")).set(-2.5)
    h = c.register(Histogram("latency.seconds"))
    for x in (0.001, 0.02, 0.02, 3.0):
        h.observe(x)
    m = c.register(Moments("size.bytes"))
    for x in (1.0, 2.0, 10.0):
        m.add(x)
    with Emitter(Options(prefix=str(tmp_path / "p."))) as e:
        c.emit(e, 1000)
        path = e.path
    assert path is not None
    with open(path, "rb") as f:
        got = only_readings(list(readings(parse(f), 0)))
    assert got["jobs_total", "counter"].value == 41.0
    assert got["jobs_total", "counter"].ts == 1000
    assert got["queue_depth", "gauge"].value == -2.5
    buckets, total, count = got["latency_seconds", "histogram"].value
    want = h.read()
    assert buckets == {le: float(n) for le, n in want.buckets}
    assert (total, count) == (pytest.approx(want.sum), 4.0)
    assert got["size_bytes", "moments"].value == m.read()
    assert ("size_bytes_count", "counter") not in got


def test_rust_moments_without_raw_sums_are_rebuilt() -> None:
    """The Rust crate writes variance/skewness/kurtosis; m2..m4 are derived from them."""
    text = (b"# TYPE d_count counter\nd_count 3 5\n# TYPE d_mean gauge\nd_mean 2 5\n"
            b"# TYPE d_variance gauge\nd_variance 1 5\n# TYPE d_skewness gauge\nd_skewness 0 5\n"
            b"# TYPE d_kurtosis gauge\nd_kurtosis 1.5 5\n")  # fmt: skip
    got = only_readings(list(readings(parse(io.BytesIO(text)), 0)))
    r = got["d", "moments"].value
    want = __import__("biometrics").MomentsReading.of([1.0, 2.0, 3.0])
    assert (r.n, r.m1, r.m2, r.m3) == (3, 2.0, 2.0, 0.0)
    assert math.isclose(r.m4, want.m4)


def test_the_rust_fixture_parses_into_readings() -> None:
    """Files written by the Rust crate give readings with no problems."""
    with open(FIXTURE, "rb") as f:
        parsed = parse(f)
        items = [r for r in readings(parsed, 0) if isinstance(r, Reading)]
    assert parsed.problems == []
    assert {r.kind for r in items} >= {"counter", "histogram"}
    assert all(r.ts == 1726547192000 or r.ts > 0 for r in items)


def test_lone_count_counter_stays_a_counter_and_bad_buckets_are_reported() -> None:
    """``x_count`` without ``x_mean`` is an ordinary counter; falling buckets are a problem."""
    text = (b"# TYPE hits_count counter\nhits_count 4 7\n# TYPE h histogram\n"
            b'h_bucket{le="1.0"} 5 7\nh_bucket{le="2.0"} 3 7\nh_bucket{le="+Inf"} 5 7\n'
            b"h_sum 2 7\nh_count 5 7\n")  # fmt: skip
    parsed = parse(io.BytesIO(text), path="seg.prom")
    got = only_readings(list(readings(parsed, 0)))
    assert got["hits_count", "counter"].value == 4.0
    assert ("h", "histogram") not in got
    assert [str(p) for p in parsed.problems] == [
        "seg.prom:5: bucket le=2.0 count 3.0 is below a lower bucket's; histogram reading dropped"
    ]


def test_samples_without_timestamps_take_the_segment_time() -> None:
    """Untimestamped lines get the time in the file name."""
    got = only_readings(list(readings(parse(io.BytesIO(b"up 1\n")), 99)))
    assert got["up", "gauge"] == Reading("gauge", "up", (), 1.0, 99, 1)
