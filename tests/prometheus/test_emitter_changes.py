"""Change-only emissions inside a segment, and the ``# EMITTED <stamp>`` marker (issue 16)."""

import errno
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from biometrics import Collector, Counter, Gauge, Histogram, Moments
from biometrics.files import merged_page
from biometrics.prometheus import (
    Metadata,
    Options,
    Reader,
    Sample,
    SegmentEmitter,
    SegmentError,
    parse,
)
from biometrics.prometheus.exposition import ExpositionFamily
from biometrics.sensors import Sensor

from ..helpers import read_samples


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.prom"), key=lambda p: int(p.name.split(".")[-2]))


def emissions(path: Path) -> list[tuple[int, list[str]]]:
    """``(stamp, lines)`` per emission of a segment, split at its markers (metadata kept)."""
    out: list[tuple[int, list[str]]] = []
    lines: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("# EMITTED "):
            out.append((int(line.split()[2]), lines))
            lines = []
        elif line != "# END":
            lines.append(line)
    assert lines == [], "every line belongs to an emission closed by its marker"
    return out


def samples_only(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.startswith("#")]


def test_an_unchanged_emission_writes_only_its_marker(tmp_path: Path) -> None:
    """A second emission with nothing changed adds exactly ``# EMITTED <stamp>``."""
    c, g, h = Counter("c"), Gauge("g"), Histogram("h")
    c.count(3)
    g.set(1.5)
    h.observe(0.2)
    after_first = ""
    with SegmentEmitter(Options(prefix=tmp_path / "a.")) as e:
        for now in (1000, 2000):
            e.emit_counter(c, now)
            e.emit_gauge(g, now)
            e.emit_histogram(h, now)
            e.flush()
            path = Path(e.path or "")
            after_first = after_first or path.read_text()
        first = emissions(path)[0][1]
    assert len(samples_only(first)) == 1 + 1 + 20  # 16 buckets, _sum, _count, two counters
    assert path.read_text() == after_first + "# EMITTED 2000\n"
    assert after_first.endswith("h_is_negative_total 0 1000\n# EMITTED 1000\n")


def test_one_changed_counter_writes_one_line_and_the_marker(tmp_path: Path) -> None:
    """Of many series, the one that changed is written, nothing else (no metadata either)."""
    counters = [Counter(f"c{i}", help="Help.") for i in range(20)]
    with SegmentEmitter(Options(prefix=tmp_path / "a.")) as e:
        for c in counters:
            e.emit_counter(c, 1000)
        e.flush()
        counters[7].count(4)
        for c in counters:
            e.emit_counter(c, 2000)
        e.flush()
        path = Path(e.path or "")
        assert emissions(path)[1] == (2000, ["c7_total 4 2000"])


def test_a_changed_histogram_writes_its_whole_group(tmp_path: Path) -> None:
    """One observation: every bucket, _sum, _count and the side counters, stamped alike."""
    h = Histogram("lat", labels={"route": "/x"})
    with SegmentEmitter(Options(prefix=tmp_path / "a.")) as e:
        e.emit_histogram(h, 1000)
        e.flush()
        h.observe(0.3)
        e.emit_histogram(h, 2000)
        e.flush()
        e.emit_histogram(h, 3000)
        e.flush()
        (_, first), (_, second), (_, third) = emissions(Path(e.path or ""))

    def series(lines: list[str]) -> list[str]:
        return [line.split(" ")[0] for line in samples_only(lines)]

    assert series(second) == series(first)  # the same series, in the same order
    assert {line.rsplit(" ", 1)[1] for line in samples_only(second)} == {"2000"}
    assert [line for line in second if line.startswith("#")] == []  # metadata once a segment
    assert 'lat_bucket{route="/x",le="0.5"} 1 2000' in second
    assert third == []


def test_changed_moments_write_every_family(tmp_path: Path) -> None:
    """A moments reading is one group: all eight families together, or none."""
    m = Moments("m")
    with SegmentEmitter(Options(prefix=tmp_path / "a.")) as e:
        for now, x in ((1000, 1.0), (2000, 3.0), (3000, None)):
            if x is not None:
                m.add(x)
            e.emit_moments(m, now)
            e.flush()
        got = emissions(Path(e.path or ""))
    assert [len(samples_only(lines)) for _, lines in got] == [8, 8, 0]
    assert "m_count 2 2000" in got[1][1] and "m_mean 2.0 2000" in got[1][1]


def test_bridged_families_skip_unchanged_series_and_keep_histogram_groups(tmp_path: Path) -> None:
    """Rendered families (a bridge's) are compared per sample; a histogram per label set."""

    def families(a: int, b: int, bucket_a: int) -> list[ExpositionFamily]:
        hist = []
        for route, n in (("a", bucket_a), ("b", 1)):
            hist += [("h_bucket", f'{{route="{route}",le="1.0"}}', str(n)),
                     ("h_bucket", f'{{route="{route}",le="+Inf"}}', "1"),
                     ("h_sum", f'{{route="{route}"}}', "0.5"),
                     ("h_count", f'{{route="{route}"}}', "1")]  # fmt: skip
        return [
            ExpositionFamily("req_total", "counter", "Requests.",
                             [("req_total", '{code="200"}', str(a)),
                              ("req_total", '{code="500"}', str(b))]),
            ExpositionFamily("h", "histogram", None, hist),
        ]  # fmt: skip

    with SegmentEmitter(Options(prefix=tmp_path / "a.")) as e:
        e.emit_families(families(1, 1, 0), 1000)
        e.flush()
        e.emit_families(families(2, 1, 1), 2000)
        e.flush()
        e.emit_families(families(2, 1, 1), 3000)
        e.flush()
        got = emissions(Path(e.path or ""))
    assert len(samples_only(got[0][1])) == 2 + 8
    assert got[1][1] == [
        'req_total{code="200"} 2 2000',
        'h_bucket{route="a",le="1.0"} 1 2000',
        'h_bucket{route="a",le="+Inf"} 1 2000',
        'h_sum{route="a"} 0.5 2000',
        'h_count{route="a"} 1 2000',
    ]
    assert got[2] == (3000, [])


def test_every_segments_first_emission_carries_everything(tmp_path: Path) -> None:
    """Rotation by age, close() and end() all start the next segment with every series and its
    metadata, however long the series have stood still."""
    c, g = Counter("c", help="C."), Gauge("g")
    c.count(5)
    e = SegmentEmitter(Options(prefix=tmp_path / "a.", flush_interval=1))
    for now in (0, 400, 800, 1000, 1400):  # rotates at 1000
        e.emit_counter(c, now)
        e.emit_gauge(g, now)
        e.flush()
    e.close()
    e.emit_counter(c, 2000)
    e.emit_gauge(g, 2000)
    e.end(2000)
    e.emit_counter(c, 3000)
    e.emit_gauge(g, 3000)
    e.close()
    full = ["# HELP c_total C.", "# TYPE c_total counter", "c_total 5 {t}", "# TYPE g gauge",
            "g 0.0 {t}"]  # fmt: skip
    for path, stamps in zip(segments(tmp_path), ([0, 400, 800], [1000, 1400], [2000], [3000]),
                            strict=True):  # fmt: skip
        got = emissions(path)
        assert [t for t, _ in got] == stamps
        assert got[0][1] == [line.format(t=stamps[0]) for line in full]
        assert all(lines == [] for _, lines in got[1:])
    assert (tmp_path / "a.2000.prom").read_text().endswith("# EMITTED 2000\n# END\n")


def test_after_a_write_failure_the_next_segment_has_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed write abandons the segment and what it had written: the next one is whole."""
    c = Counter("c")
    e = SegmentEmitter(Options(prefix=tmp_path / "a."))
    e.emit_counter(c, 1000)
    e.flush()
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    c.click()
    e.emit_counter(c, 2000)
    with pytest.raises(SegmentError):
        e.flush()
    monkeypatch.setattr(os, "write", real_write)
    e.emit_counter(c, 3000)  # unchanged since 2000, but the 2000 line never reached a file
    e.close()
    first, second = segments(tmp_path)
    assert [t for t, _ in emissions(first)] == [1000]  # the lost emission left no marker
    assert emissions(second) == [(3000, ["# TYPE c_total counter", "c_total 1 3000"])]


FORK = """
import os, sys
from biometrics import Counter
from biometrics.prometheus import Options, SegmentEmitter
c = Counter("c")
c.count(5)
e = SegmentEmitter(Options(prefix=sys.argv[1] + "/app."))
e.emit_counter(c, 1000)
e.flush()
pid = os.fork()
if pid == 0:
    e.emit_counter(c, 2000)  # unchanged, but the child's segment has never written it
    e.flush()
    e.emit_counter(c, 3000)
    e.close()
    os._exit(0)
os.waitpid(pid, 0)
e.emit_counter(c, 2000)
e.close()
print(pid)
"""


def test_a_forked_childs_first_emission_has_everything(tmp_path: Path) -> None:
    """The child has a segment of its own, so its first emission writes every series."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(FORK), str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    child = done.stdout.strip()
    assert emissions(tmp_path / f"app.{child}.2000.prom") == [
        (2000, ["# TYPE c_total counter", "c_total 5 2000"]),
        (3000, []),
    ]
    assert emissions(tmp_path / "app.1000.prom") == [
        (1000, ["# TYPE c_total counter", "c_total 5 1000"]),
        (2000, []),
    ]


def test_each_marker_carries_its_emissions_stamp(tmp_path: Path) -> None:
    """Also when the clock steps back or two emissions fall in one ms: stamps rise strictly."""
    c = Counter("c")
    with SegmentEmitter(Options(prefix=tmp_path / "a.")) as e:
        for now in (5000, 4000, 4000, 6000):
            c.click()
            e.emit_counter(c, now)
            e.flush()
        e.emit_counter(c, 7000)  # ended by a later stamp, not a flush
        c.click()
        e.emit_counter(c, 8000)
    got = emissions(segments(tmp_path)[0])
    assert [t for t, _ in got] == [5000, 5001, 5002, 6000, 7000, 8000]
    for stamp, lines in got:
        assert {line.rsplit(" ", 1)[1] for line in samples_only(lines)} <= {str(stamp)}


def test_the_emission_is_in_the_file_at_flush_and_end_comes_last(tmp_path: Path) -> None:
    """A tailing reader of the locked segment finds the emission and its marker at once."""
    c = Counter("c")
    e = SegmentEmitter(Options(prefix=tmp_path / "a."))
    e.emit_counter(c, 1000)
    assert (tmp_path / "a.1000.prom").read_bytes() == b""  # buffered until the emission ends
    e.flush()
    path = tmp_path / "a.1000.prom"
    assert Reader.try_open(path) is None  # still locked: being written
    assert path.read_bytes() == b"# TYPE c_total counter\nc_total 0 1000\n# EMITTED 1000\n"
    e.flush()  # no emission under way: no marker
    c.click()
    e.emit_counter(c, 2000)
    e.end()
    assert path.read_text().endswith("\nc_total 1 2000\n# EMITTED 2000\n# END\n")
    e.end(3000)  # nothing open: a segment holding only # END, no emission, no marker
    assert (tmp_path / "a.3000.prom").read_bytes() == b"# END\n"


def test_the_marker_is_a_plain_comment_to_the_parser(tmp_path: Path) -> None:
    """No sample, no metadata, no problem: readers that do not know it skip it."""
    with SegmentEmitter(Options(prefix=tmp_path / "a.")) as e:
        e.emit_gauge(Gauge("g"), 1000)
        e.flush()
        e.emit_gauge(Gauge("g", help="G."), 2000)
    with open(tmp_path / "a.1000.prom", "rb") as f:
        items = list(parse(f))
    assert [type(i).__name__ for i in items] == ["Metadata", "Sample", "Sample"]
    assert all(not (isinstance(i, Metadata) and "EMITTED" in i.kind) for i in items)
    assert [s.timestamp_ms for s in read_samples(tmp_path / "a.1000.prom")] == [1000, 2000]


def change(sensor: Sensor, rng: random.Random) -> None:
    if isinstance(sensor, Counter):
        sensor.count(rng.randrange(1, 5))
    elif isinstance(sensor, Gauge):
        sensor.set(rng.choice([0.0, 1.5, -2.0, float("nan")]))
    elif isinstance(sensor, Histogram):
        sensor.observe(rng.random())
    elif isinstance(sensor, Moments):
        sensor.add(rng.random())


def run_random_emissions(directory: Path, *, changes_only: bool) -> None:
    """30 emissions, 5 s segments; each series changes at random (1 in 5) between emissions."""
    rng = random.Random(16)
    collector = Collector()
    sensors = [
        *(collector.register(Counter("req", labels={"i": str(i)})) for i in range(10)),
        *(collector.register(Gauge("temp", labels={"i": str(i)})) for i in range(5)),
        *(collector.register(Histogram("lat", labels={"i": str(i)})) for i in range(3)),
        *(collector.register(Moments("size", labels={"i": str(i)})) for i in range(2)),
    ]
    options = Options(prefix=directory / "w.", flush_interval=5, changes_only=changes_only)
    with SegmentEmitter(options) as e:
        for step in range(30):
            for sensor in sensors:
                if rng.random() < 0.2:
                    change(sensor, rng)
            collector.emit(e, 1000 + step * 1000)


def test_change_only_segments_merge_exactly_as_full_emissions(tmp_path: Path) -> None:
    """The reader's newest values are the same with far fewer lines, at every segment cut."""
    full, changes = tmp_path / "full", tmp_path / "changes"
    full.mkdir()
    changes.mkdir()
    run_random_emissions(full, changes_only=False)
    run_random_emissions(changes, changes_only=True)
    assert len(segments(full)) == len(segments(changes)) == 6
    lines_full = sum(len(p.read_text().splitlines()) for p in segments(full))
    lines_changes = sum(len(p.read_text().splitlines()) for p in segments(changes))
    assert lines_changes < lines_full / 2
    for cut in range(1, 7):  # a reader that has taken the first ``cut`` segments
        page_full, problems_full = merged_page(segments(full)[:cut])
        page_changes, problems_changes = merged_page(segments(changes)[:cut])
        assert problems_full == problems_changes == []
        assert page_changes == page_full
    last = {(s.name, s.labels): s.value for s in read_samples(segments(changes)[-1])}
    assert len(last) == len({(s.name, s.labels) for s in read_samples(segments(full)[-1])})


def test_changes_only_off_writes_every_series_in_every_emission(tmp_path: Path) -> None:
    """The opt-out: each emission is a full snapshot (metadata still once per segment)."""
    c, h = Counter("c"), Histogram("h")
    with SegmentEmitter(Options(prefix=tmp_path / "a.", changes_only=False)) as e:
        for now in (1000, 2000, 3000):
            e.emit_counter(c, now)
            e.emit_histogram(h, now)
            e.emit_families([ExpositionFamily("x", "gauge", None, [("x", "", "1")])], now)
            e.flush()
        got = emissions(Path(e.path or ""))
    assert [len(samples_only(lines)) for _, lines in got] == [22, 22, 22]
    assert [sum(line.startswith("#") for line in lines) for _, lines in got] == [7, 0, 0]
    assert all(isinstance(s, Sample) for s in read_samples(tmp_path / "a.1000.prom"))
