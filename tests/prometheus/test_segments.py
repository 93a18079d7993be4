"""Segment text back into whole readings, from our SegmentEmitter and the Rust crate's files."""

import io
import math
from pathlib import Path

import pytest

from biometrics import DEFAULT_BUCKETS, Collector, Counter, Gauge, Histogram, Moments
from biometrics.prometheus import (
    Metadata,
    Options,
    Reading,
    SegmentEmitter,
    parse,
    readings,
    source_of,
)
from biometrics.prometheus.segments import whole_end

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
    with SegmentEmitter(Options(prefix=str(tmp_path / "p."))) as e:
        c.emit(e, 1000)
        path = e.path
    assert path is not None
    with open(path, "rb") as f:
        got = only_readings(list(readings(parse(f), 0)))
    assert got["jobs_total", "counter"].value == 41.0
    assert got["jobs_total", "counter"].ts == 1000
    assert got["queue_depth", "gauge"].value == -2.5
    value = got["latency_seconds", "histogram"].value
    want = h.read()
    assert value.bounds == DEFAULT_BUCKETS  # every bucket of the layout, empty ones too
    assert value.cumulative == tuple(float(n) for _, n in want.cumulative())[:-1]
    assert (value.sum, value.n) == (pytest.approx(want.sum), 4.0)
    assert got["size_bytes", "moments"].value == m.read()
    assert ("size_bytes_count", "counter") not in got


def test_a_histogram_reading_keeps_its_empty_buckets() -> None:
    """Every listed le is part of the reading, zero or not: it is the writer's layout."""
    text = (b"# TYPE h histogram\n"
            b'h_bucket{le="0.1"} 0 5\nh_bucket{le="0.25"} 0 5\nh_bucket{le="1.0"} 2 5\n'
            b'h_bucket{le="+Inf"} 3 5\nh_sum 4.5 5\nh_count 3 5\n')  # fmt: skip
    got = only_readings(list(readings(parse(io.BytesIO(text)), 0)))
    assert got["h", "histogram"].value == ((0.1, 0.25, 1.0), (0.0, 0.0, 2.0), 4.5, 3.0)


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
    """``x_count`` without ``x_mean`` is an ordinary counter (``x_count_total``); falling buckets
    are a problem."""
    text = (b"# TYPE hits_count counter\nhits_count 4 7\n# TYPE h histogram\n"
            b'h_bucket{le="1.0"} 5 7\nh_bucket{le="2.0"} 3 7\nh_bucket{le="+Inf"} 5 7\n'
            b"h_sum 2 7\nh_count 5 7\n")  # fmt: skip
    parsed = parse(io.BytesIO(text), path="seg.prom")
    got = only_readings(list(readings(parsed, 0)))
    assert got["hits_count_total", "counter"].value == 4.0
    assert ("h", "histogram") not in got
    assert [str(p) for p in parsed.problems] == [
        "seg.prom:5: bucket le=2.0 count 3.0 is below a lower bucket's; histogram reading dropped"
    ]


def test_samples_without_timestamps_take_the_segment_time() -> None:
    """Untimestamped lines get the time in the file name."""
    got = only_readings(list(readings(parse(io.BytesIO(b"up 1\n")), 99)))
    assert got["up", "gauge"] == Reading("gauge", "up", (), 1.0, 99, 1)


def seg(text: bytes) -> tuple[dict[tuple[str, str], Reading], list[str], list[str]]:
    """Readings of ``text``, all problems, and the problems that are bad data."""
    parsed = parse(io.BytesIO(text), path="seg.prom")
    got = only_readings(list(readings(parsed, 0)))
    return got, [str(p) for p in parsed.problems], [str(p) for p in parsed.malformed]


MOMENTS_TYPES = b"# TYPE m_count counter\n" + b"".join(
    b"# TYPE m_%s gauge\n" % part
    for part in (b"mean", b"variance", b"skewness", b"kurtosis", b"m2", b"m3", b"m4")
)
HIST = b'# TYPE h histogram\nh_bucket{le="1.0"} 1 5\nh_bucket{le="+Inf"} 2 5\nh_sum 3 5\n'


def test_a_histogram_cut_short_at_the_end_is_dropped_not_taken() -> None:
    """Buckets but no _count at the segment's end: a stopped writer; dropped, not malformed."""
    got, problems, malformed = seg(HIST[:-10] + b'h_bucket{le="2.0"} 1 5\n')
    assert ("h", "histogram") not in got
    assert problems == ["seg.prom:4: histogram h reading has no _count: cut short at the end "
                        "of the segment (writer stopped?); dropped"]  # fmt: skip
    assert malformed == []


def test_a_histogram_without_count_mid_segment_is_malformed() -> None:
    """The same gap before the segment goes on is bad data: reported as malformed."""
    text = b'# TYPE h histogram\nh_bucket{le="1.0"} 1 5\nh_bucket{le="1.0"} 1 6\nh_count 1 6\n'
    got, _, malformed = seg(text)
    assert got["h", "histogram"].ts == 6
    assert malformed == ["seg.prom:2: histogram h reading has no _count; dropped"]


def test_moments_cut_short_are_dropped_and_whole_ones_taken() -> None:
    """Ours end in _m4, the Rust crate's in _kurtosis: anything shorter is not a reading."""
    whole = MOMENTS_TYPES + (b"m_count 2 5\nm_mean 1 5\nm_variance 0 5\nm_skewness 0 5\n"
                             b"m_kurtosis 0 5\nm_m2 0 5\nm_m3 0 5\nm_m4 0 5\n")  # fmt: skip
    got, problems, _ = seg(whole)
    assert got["m", "moments"].value.n == 2 and problems == []
    got, problems, malformed = seg(whole + b"m_count 3 6\nm_mean 1 6\nm_variance 0 6\n")
    assert got["m", "moments"].ts == 5
    assert len(problems) == 1 and "moments m reading is incomplete" in problems[0]
    assert malformed == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"c NaN 5\n", "counter c value nan is not a finite number >= 0"),
        (b"c +Inf 5\n", "counter c value inf is not a finite number >= 0"),
        (b"c -1 5\n", "counter c value -1.0 is not a finite number >= 0"),
        (b"c 1 " + b"9" * 5000 + b"\n", "is beyond int64 milliseconds"),
        (b"c 1 9223372036854775808\n", "is beyond int64 milliseconds"),
        (b'h_bucket{le="NaN"} 1 5\n', "le='NaN' is not a number"),
    ],
)
def test_poison_values_are_dropped_with_their_line(line: bytes, message: str) -> None:
    """NaN/Inf/negative counters, timestamps beyond int64, le=NaN: dropped at their line."""
    got, _, malformed = seg(b"# TYPE c counter\n# TYPE h histogram\nok 1 5\n" + line)
    assert len(malformed) == 1 and malformed[0].startswith("seg.prom:4: ")
    assert message in malformed[0]
    assert ("ok", "gauge") in got and ("c", "counter") not in got


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            b"m_count NaN 5\nm_mean 1 5\nm_variance 0 5\nm_skewness 0 5\nm_kurtosis 0 5\n",
            "moments count nan is not a whole number",
        ),
        (
            b"m_count 2.5 5\nm_mean 1 5\nm_variance 0 5\nm_skewness 0 5\nm_kurtosis 0 5\n",
            "moments count 2.5 is not a whole number",
        ),
        (
            b"m_count 2 5\nm_mean inf 5\nm_variance 0 5\nm_skewness 0 5\nm_kurtosis 0 5\n",
            "moments mean inf is not finite",
        ),
        (b'# TYPE h histogram\nh_bucket{le="1.0"} 0.5 5\nh_count 1 5\n', "is not a whole number"),
        (b'# TYPE h histogram\nh_bucket{le="1.0"} 3 5\nh_count 2 5\n', "count 2.0 is not"),
        (
            b'# TYPE h histogram\nh_bucket{le="+Inf"} 3 5\nh_sum 1 5\nh_count 2 5\n',
            'has le="+Inf" 3.0 but _count 2.0',
        ),
        (
            b'# TYPE h histogram\nh_bucket{le="1.0"} 1 5\nh_sum inf 5\nh_count 1 5\n',
            "_sum inf is not finite",
        ),
    ],
)
def test_readings_that_cannot_be_merged_are_dropped(text: bytes, message: str) -> None:
    """Counts that are not whole, below a bucket, or disagreeing; non-finite sums and means."""
    got, _, malformed = seg(MOMENTS_TYPES + text)
    assert not [k for k in got if k[1] in ("moments", "histogram")]
    assert len(malformed) == 1 and message in malformed[0], malformed


def test_a_histogram_with_plus_inf_and_sum_but_no_count_is_whole() -> None:
    """A writer that writes +Inf and _sum but no _count still gives the whole reading."""
    got, problems, _ = seg(HIST)
    assert got["h", "histogram"].value == ((1.0,), (1.0,), 3.0, 2.0) and problems == []


def test_names_still_invalid_after_dots_are_sanitised() -> None:
    """The Rust crate's ``weird-name/x`` and ``9lives`` read as ``weird_name_x``, ``_9lives``."""
    got, problems, _ = seg(b"# TYPE weird-name/x counter\nweird-name/x 7 5\n9lives 9 5\n")
    assert got["weird_name_x_total", "counter"].value == 7 and got["_9lives", "gauge"].value == 9
    assert problems == []


def test_untyped_samples_take_the_kind_already_held() -> None:
    """A segment that starts before its TYPE lines (Rust, after a rotation) reads as before.

    The store knows the counter by its canonical name; the Rust line still names it ``c``.
    """
    text = b'c 4 5\nh_bucket{le="1.0"} 1 5\nh_sum 1 5\nh_count 1 5\nh_exceeds_max 2 5\n'
    parsed = parse(io.BytesIO(text), path="seg.prom")
    got = only_readings(list(readings(parsed, 0, {"c_total": "counter", "h": "histogram"})))
    assert got["c_total", "counter"].value == 4
    assert got["h", "histogram"].value == ((1.0,), (1.0,), 1.0, 1.0)
    assert got["h_exceeds_max_total", "counter"].value == 2
    assert parsed.problems == []


def test_rust_moments_with_a_huge_variance_are_refused_not_raised() -> None:
    """A variance of 1e300 makes the skewness term overflow: the reading is dropped, no crash."""
    text = MOMENTS_TYPES + (b"m_count 5 5\nm_mean 1 5\nm_variance 1e300 5\nm_skewness 1 5\n"
                            b"m_kurtosis 1 5\n")  # fmt: skip
    got, _, malformed = seg(text)
    assert ("m", "moments") not in got
    assert len(malformed) == 1 and "are not finite" in malformed[0]


def test_counters_read_under_their_canonical_total_name() -> None:
    """Rust's ``x`` and ours ``x_total`` are one family; an OpenMetrics-style TYPE (``x``
    counter, sample ``x_total``) too; side counters with or without ``_total``."""
    got, problems, _ = seg(
        b"# TYPE rust counter\nrust 1 5\n# TYPE ours_total counter\nours_total 2 5\n"
        b"# TYPE om counter\nom_total 3 5\n"
        b'# TYPE h histogram\nh_bucket{le="+Inf"} 1 5\nh_sum 1 5\nh_count 1 5\n'
        b"# TYPE h_exceeds_max_total counter\nh_exceeds_max_total 4 5\n"
        b"# TYPE h_is_negative gauge\nh_is_negative 5 5\n"
    )
    assert problems == []
    counters = {family: r.value for (family, kind), r in got.items() if kind == "counter"}
    assert counters == {"rust_total": 1, "ours_total": 2, "om_total": 3,
                        "h_exceeds_max_total": 4, "h_is_negative_total": 5}  # fmt: skip
    assert ("h", "histogram") in got


@pytest.mark.parametrize(
    "text",
    [b"# TYPE c counter\nc 1 1000\nc 5 1000\n", b"# TYPE c counter\nc 5 2000\nc 7 1000\n"],
)
def test_a_reading_not_newer_than_its_series_previous_one_is_reported(text: bytes) -> None:
    """Two readings in one ms, or a clock stepping back inside a segment: the later one is
    not taken (every reader keeps the earlier), and that is said at its line."""
    parsed = parse(io.BytesIO(text), path="seg.prom")
    got = [r for r in readings(parsed, 0) if isinstance(r, Reading)]
    assert len(got) == 1
    assert [p.line for p in parsed.problems] == [3]
    assert "is not newer than its previous one" in str(parsed.problems[0])
    assert parsed.malformed == []


@pytest.mark.parametrize(
    ("data", "at_line_start", "end"),
    [
        (b"", True, 0),
        (b"# EMITTED 1\n", True, 12),
        (b"# EMITTED 1\n", False, 0),
        (b"a 1 1\n# EMITTED 1\nb 2 2\n# EMITTED 2\n", False, 36),
        (b"a 1 1\n# EMITTED 1\nb 2 2\n# EMITTED 2", True, 18),  # the last one not complete
        (b"a 1 1\n# EMITTED 1\nb 2 2\n# EMITTED x\n", True, 18),  # not a stamp
        (b"a 1 1\n# EMITTED 1\nx# EMITTED 2\n", True, 18),  # not at a line's start
        (b"# EMITTED " + b"9" * 20 + b"\n", True, 0),  # beyond int64 ms
        (b"a 1 1\n# EMITTED \n", True, 0),
    ],
)
def test_the_whole_part_ends_at_the_last_complete_marker(
    data: bytes, at_line_start: bool, end: int
) -> None:
    """Only a full ``# EMITTED <ms>`` line that starts a line and has its newline counts."""
    assert whole_end(data, at_line_start=at_line_start) == end
