"""The ingest side of serve: consume, journal, remove, quarantine, recover; no HTTP here."""

import os
from pathlib import Path

import pytest

from biometrics import Collector, Counter, Histogram
from biometrics.exporter import DurableState, Exporter, ExporterOptions, StateError
from biometrics.prometheus import Emitter, Options


def write_segment(spool: Path, source: str, now_ms: int, requests: int) -> str:
    """One finished segment, as a process named ``source`` would leave it."""
    c = Collector()
    c.register(Counter("requests_total", help="Requests.")).count(requests)
    h = c.register(Histogram("latency_seconds"))
    for _ in range(requests):
        h.observe(0.25)
    with Emitter(Options(prefix=str(spool / f"{source}."))) as e:
        c.emit(e, now_ms)
        assert e.path is not None
        return e.path


def value(page: str, series: str) -> float:
    for line in page.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    raise AssertionError(f"{series} not in page:\n{page}")


@pytest.fixture
def options(tmp_path: Path) -> ExporterOptions:
    spool = tmp_path / "spool"
    spool.mkdir()
    return ExporterOptions(spool=str(spool), state=str(tmp_path / "state" / "s.json"))


def test_segments_are_merged_journaled_and_removed(options: ExporterOptions) -> None:
    """Two sources' counters and histograms sum; consumed files leave the spool."""
    spool = Path(options.spool)
    paths = [write_segment(spool, "w1", 1000, 3), write_segment(spool, "w2", 1000, 4)]
    exporter = Exporter(options)
    exporter.open()
    exporter.ingest_pass(now_ms=2000)
    page = exporter.page()
    assert value(page, "requests_total") == 7
    assert value(page, 'latency_seconds_bucket{le="0.25"}') == 7
    assert value(page, "biometrics_exporter_segments_consumed_total") == 2
    assert not any(os.path.exists(p) for p in paths)
    assert exporter.durable.journal_bytes > 0
    exporter.close()
    assert exporter.durable.journal_bytes == 0


def test_state_survives_restart_and_a_crash_before_the_snapshot(options: ExporterOptions) -> None:
    """Counts come back from the snapshot, or from the journal when the daemon died first."""
    spool = Path(options.spool)
    write_segment(spool, "w1", 1000, 3)
    first = Exporter(options)
    first.open()
    first.ingest_pass(now_ms=2000)
    first.close()
    write_segment(spool, "w1", 3000, 5)
    second = Exporter(options)
    second.open()
    second.ingest_pass(now_ms=4000)
    second.durable.close()  # "crash": no snapshot of the second segment
    third = Exporter(options)
    third.open()
    assert value(third.page(), "requests_total") == 5
    third.close()


def test_a_segment_left_behind_by_a_crash_is_not_double_counted(options: ExporterOptions) -> None:
    """Died after the journal sync, before unlinking: the segment is read twice, counted once."""
    spool = Path(options.spool)
    path = write_segment(spool, "w1", 1000, 3)
    data = Path(path).read_bytes()
    exporter = Exporter(options)
    exporter.open()
    exporter.ingest_pass(now_ms=2000)
    exporter.durable.close()
    Path(path).write_bytes(data)  # as if the unlink never happened
    again = Exporter(options)
    again.open()
    again.ingest_pass(now_ms=3000)
    assert value(again.page(), "requests_total") == 3
    assert not os.path.exists(path)
    again.close()


def test_bad_segments_are_quarantined_with_a_reason(options: ExporterOptions) -> None:
    """Malformed lines: good lines ingested, file quarantined with a sidecar naming file:line."""
    spool = Path(options.spool)
    bad = spool / "w9.1000.prom"
    bad.write_bytes(b"# TYPE ok_total counter\nok_total 2 1000\nthis is not a sample\n")
    nameless = spool / "notes.prom"
    nameless.write_bytes(b"ok_total 1\n")
    exporter = Exporter(options)
    exporter.open()
    exporter.ingest_pass(now_ms=2000)
    exporter.ingest_pass(now_ms=2100)
    quarantine = Path(options.quarantine_path)
    assert sorted(p.name for p in quarantine.iterdir()) == [
        "notes.prom", "notes.prom.error", "w9.1000.prom", "w9.1000.prom.error"]  # fmt: skip
    sidecar = (quarantine / "w9.1000.prom.error").read_text()
    assert f"{bad}:3: not a sample line" in sidecar
    assert "no <epoch_ms>" in (quarantine / "notes.prom.error").read_text()
    page = exporter.page()
    assert value(page, "ok_total") == 2
    assert value(page, "biometrics_exporter_quarantined_segments_total") == 2
    assert value(page, "biometrics_exporter_parse_errors_total") == 1
    exporter.close()


def test_archive_keeps_consumed_segments(options: ExporterOptions, tmp_path: Path) -> None:
    """With --archive, consumed segments are moved, not deleted."""
    options.archive = str(tmp_path / "archive")
    path = write_segment(Path(options.spool), "w1", 1000, 1)
    exporter = Exporter(options)
    exporter.open()
    exporter.ingest_pass(now_ms=2000)
    exporter.close()
    assert (tmp_path / "archive" / os.path.basename(path)).exists()


def test_locked_segments_wait_and_forgotten_sources_go(options: ExporterOptions) -> None:
    """A segment still being written is left alone; forget-after drops silent sources."""
    options.forget_after_ms = 10_000
    spool = Path(options.spool)
    write_segment(spool, "old", 1000, 2)
    c = Collector()
    c.register(Counter("requests_total")).count(5)
    exporter = Exporter(options)
    exporter.open()
    with Emitter(Options(prefix=str(spool / "live."))) as e:
        c.emit(e, 20_000)
        exporter.ingest_pass(now_ms=20_000)
        assert e.path is not None and os.path.exists(e.path)
    page = exporter.page()
    assert value(page, "biometrics_exporter_sources") == 0  # "old" forgotten, "live" unread
    exporter.ingest_pass(now_ms=20_100)
    assert value(exporter.page(), "requests_total") == 5
    exporter.close()


def test_one_daemon_per_state(options: ExporterOptions) -> None:
    """A second daemon on the same state is refused with a clear error."""
    first = Exporter(options)
    first.open()
    with pytest.raises(StateError, match="in use by another biometrics process"):
        Exporter(options).open()
    first.close()


def test_corrupt_snapshot_is_refused_not_overwritten(tmp_path: Path) -> None:
    """An unreadable snapshot stops the daemon with the file's name, and is left as it was."""
    state = tmp_path / "s.json"
    state.write_text("{not json")
    durable = DurableState(state)
    with durable, pytest.raises(StateError, match=str(state)):
        from biometrics.exporter import Store

        durable.load(Store())
    assert state.read_text() == "{not json"


def test_torn_journal_tail_is_cut(tmp_path: Path) -> None:
    """A record cut short by a crash is dropped; whole records before it replay."""
    durable = DurableState(tmp_path / "s.json")
    seg = tmp_path / "x.1.prom"
    seg.write_bytes(b"a_total 1 1\n")
    with durable:
        with open(seg, "rb") as f:
            durable.append("x.1.prom", f, seg.stat().st_size)
        durable.sync()
    with open(durable.journal_path, "ab") as j:
        j.write(b"#@biometrics-journal 100 x.2.prom\npartial")
    with durable:
        assert list(durable.replay()) == [("x.1.prom", b"a_total 1 1\n")]
        assert durable.journal_bytes == len(b"#@biometrics-journal 12 x.1.prom\n") + 12
