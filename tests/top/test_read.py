"""Reading a spool without touching it, as serve would merge it; fetch errors in one line."""

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from biometrics import BiometricsError, Collector, Counter
from biometrics.prometheus import Options, SegmentEmitter
from biometrics.top import SeriesKey, SpoolReader, fetch_snapshot

from ..integration._prometheus import free_port

T0 = 1_700_000_000_000
JOBS = SeriesKey("jobs_total")


def _state(spool: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in spool.rglob("*")
            if p.is_file()}  # fmt: skip


def test_an_open_segment_is_read_up_to_its_last_marker(tmp_path: Path) -> None:
    """An emission still being written is not taken; once its marker is there, it is; # END
    after the last marker says the source stopped.  Nothing in the spool changes."""
    seg = tmp_path / f"w.{T0}.prom"
    seg.write_bytes(b"# TYPE jobs_total counter\njobs_total 5 %d\n# EMITTED %d\njobs_total 9 %d\n"
                    % (T0, T0, T0 + 1000))  # fmt: skip
    reader = SpoolReader(tmp_path)
    before = _state(tmp_path)
    snap = reader.read(T0 + 1500)
    assert snap.counters == {JOBS: 5}
    assert [(s.name, s.last_ms, s.files, s.ended) for s in snap.sources] == [("w", T0, 1, False)]
    assert _state(tmp_path) == before and sorted(os.listdir(tmp_path)) == [seg.name]
    with seg.open("ab") as f:
        f.write(b"# EMITTED %d\n# END\n" % (T0 + 1000))
    snap = reader.read(T0 + 2000)
    assert snap.counters == {JOBS: 9}
    assert [(s.last_ms, s.ended) for s in snap.sources] == [(T0 + 1000, True)]
    assert snap.problems == ()


def test_counts_stay_when_serve_consumes_segments(tmp_path: Path) -> None:
    """A finished segment that leaves the spool (serve took it) keeps its counts in the totals,
    so a rate never goes negative; the source's next segment adds on."""
    first = tmp_path / f"w.{T0}.prom"
    first.write_bytes(b"# TYPE jobs_total counter\njobs_total 10 %d\n# EMITTED %d\n" % (T0, T0))
    reader = SpoolReader(tmp_path)
    assert reader.read(T0).counters == {JOBS: 10}
    first.unlink()
    snap = reader.read(T0 + 500)
    assert snap.counters == {JOBS: 10}
    assert [(s.name, s.files) for s in snap.sources] == [("w", 0)]
    (tmp_path / f"w.{T0 + 1000}.prom").write_bytes(
        b"# TYPE jobs_total counter\njobs_total 25 %d\n# EMITTED %d\n" % (T0 + 1000, T0 + 1000)
    )
    assert reader.read(T0 + 1500).counters == {JOBS: 25}


def test_a_live_writer_is_summed_and_left_alone(tmp_path: Path) -> None:
    """Two emitters, one still holding its segment: the sum of both, and the writer goes on
    writing the same file afterwards (no lock taken from it, nothing moved)."""
    for name, n in (("a", 1), ("b", 2)):
        c = Collector()
        jobs = c.register(Counter("jobs"))
        with SegmentEmitter(Options(prefix=tmp_path / f"{name}.")) as e:
            jobs.count(n)
            c.emit(e, T0)
    c = Collector()
    jobs = c.register(Counter("jobs"))
    with SegmentEmitter(Options(prefix=tmp_path / "c.")) as e:
        jobs.count(4)
        c.emit(e, T0)
        reader = SpoolReader(tmp_path)
        assert reader.read(T0 + 100).counters[JOBS] == 7
        jobs.count(10)
        c.emit(e, T0 + 1000)
        assert reader.read(T0 + 1100).counters[JOBS] == 17
        assert sorted(os.listdir(tmp_path)) == [f"{n}.{T0}.prom" for n in "abc"]
    after = reader.read(T0 + 1200)
    assert after.counters[JOBS] == 17
    assert [(s.name, s.last_ms, s.files) for s in after.sources] == [
        ("a", T0, 1),
        ("b", T0, 1),
        ("c", T0 + 1000, 1),
    ]


def test_problems_bad_lines_unnamed_files_and_quarantine(tmp_path: Path) -> None:
    """file:line for a bad line; a *.prom without a time; serve's quarantine, counted."""
    (tmp_path / f"bad.{T0}.prom").write_bytes(b'ok 1\nbad{x="1" 2\n')
    (tmp_path / "notime.prom").write_bytes(b"x 1\n")
    (tmp_path / "quarantine").mkdir()
    (tmp_path / "quarantine" / f"q.{T0}.prom").write_bytes(b"")
    problems = SpoolReader(tmp_path).read(T0).problems
    assert problems[0].startswith(f"{tmp_path / f'bad.{T0}.prom'}:2: ")
    assert problems[1:] == (
        f"1 segment(s) in {tmp_path / 'quarantine'} (see their .error files)",
        "1 file(s) named *.prom without a time: serve quarantines them",
    )


def test_a_missing_spool_fails_at_once_a_vanished_one_is_a_problem(tmp_path: Path) -> None:
    """A typo fails the first reading; a spool removed later shows as a problem."""
    with pytest.raises(BiometricsError, match="gone: No such file"):
        SpoolReader(tmp_path / "gone").read(T0)
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / f"w.{T0}.prom").write_bytes(b"# TYPE jobs_total counter\njobs_total 1\n")
    reader = SpoolReader(spool)
    assert reader.read(T0).counters == {JOBS: 1}
    (spool / f"w.{T0}.prom").unlink()
    spool.rmdir()
    snap = reader.read(T0 + 1000)
    assert snap.counters == {JOBS: 1}
    assert snap.problems == (f"cannot list {spool}: No such file or directory",)


def test_fetch_errors_say_why(tmp_path: Path) -> None:
    """Nothing listening: one line naming the URL and why."""
    url = f"http://127.0.0.1:{free_port()}/metrics"
    with pytest.raises(BiometricsError, match=f"GET {url}: .*refused"):
        fetch_snapshot(url, T0, timeout=5)


def test_a_url_that_drips_its_page_fails_within_the_timeout() -> None:
    """Each byte comes well within the socket timeout; the whole page never does."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not stop.wait(0.05):  # paced by the server under test's clock, not a sync
                try:
                    conn.sendall(b"#")
                except OSError:
                    return

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(BiometricsError, match="no whole page within 1 s"):
            fetch_snapshot(f"http://127.0.0.1:{listener.getsockname()[1]}/metrics", 0, timeout=1)
    finally:
        stop.set()
        listener.close()
        thread.join(10)
    assert time.monotonic() - started < 8  # before the fix: 100000 x 50 ms


def test_a_huge_segment_is_read_over_several_refreshes_never_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most ``MAX_READ`` bytes of a segment per refresh; one with no whole emission in that
    much is reported once and left until it changes, never read in a loop."""
    from biometrics.top import read

    monkeypatch.setattr(read, "MAX_READ", 80)
    seg = tmp_path / f"w.{T0}.prom"
    emissions = [b"jobs_total %d %d\n# EMITTED %d\n" % (n, T0 + n, T0 + n) for n in (1, 2, 3)]
    seg.write_bytes(b"# TYPE jobs_total counter\n" + b"".join(emissions))
    assert seg.stat().st_size > 80
    reader = SpoolReader(tmp_path)
    seen = [reader.read(T0 + 10).counters.get(JOBS) for _ in range(3)]
    assert seen[0] in (1, 2) and seen[-1] == 3  # more than one refresh, then all of it
    huge = tmp_path / f"x.{T0}.prom"
    big = b"".join(b"jobs_total %d %d\n" % (n, T0 + 5) for n in range(20))  # one emission
    huge.write_bytes(
        b"jobs_total 0 %d\n# EMITTED %d\n" % (T0, T0) + big + b"# EMITTED %d\n" % (T0 + 5)
    )
    problems = [reader.read(T0 + 20 + k).problems for k in range(3)]
    assert any("no whole emission in 80 bytes" in p for p in problems[-1])
    assert problems[-1] == problems[-2]  # said once, and the file is not read again
