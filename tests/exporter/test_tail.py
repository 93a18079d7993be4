"""serve reads the whole emissions of segments their writers still hold ("tailing")."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from biometrics import Collector, Counter, Histogram
from biometrics.exporter import Exporter, ExporterOptions
from biometrics.prometheus import Options, Reader, SegmentEmitter, _locks

from ..helpers import page_value, read_samples, series_value

SAMPLES = "biometrics_exporter_ingested_samples_total"
ERRORS = "biometrics_exporter_parse_errors_total"
CONSUMED = "biometrics_exporter_segments_consumed_total"

FIRST = (
    b"# TYPE c_total counter\n"
    b"c_total 3 1000\n"
    b"# TYPE h histogram\n"
    b'h_bucket{le="1.0"} 1 1000\n'
    b'h_bucket{le="+Inf"} 2 1000\n'
    b"h_sum 2.5 1000\n"
    b"h_count 2 1000\n"
    b"# EMITTED 1000\n"
)
SECOND_PART = b'c_total 5 2000\nh_bucket{le="1.0"} 2 2000\nh_bucket{le="+Inf"} 3 2000\n'
SECOND_REST = b"h_sum 3.5 2000\nh_count 3 2000\n# EMITTED 2000\n"
LAST = b"c_total 7 3000\n"


class Writer:
    """A segment as its writer holds it: created exclusively, write-locked until closed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        assert _locks.lock(self.fd, exclusive=True, wait=False)
        self.data = b""

    def write(self, data: bytes) -> Writer:
        assert os.write(self.fd, data) == len(data)
        self.data += data
        return self

    def rewrite(self, data: bytes) -> Writer:
        """Cut the file to nothing and write ``data`` from its start (a hostile writer)."""
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.data = b""
        return self.write(data)

    def finish(self) -> None:
        os.close(self.fd)


def opened(options: ExporterOptions) -> Exporter:
    exporter = Exporter(options)
    exporter.open()
    return exporter


def journal_record(name: str, data: bytes) -> bytes:
    return b"#@biometrics-journal " + f"{len(data)} {name}\n".encode() + data


def test_whole_emissions_of_an_open_segment_are_on_the_page_and_no_more(
    options: ExporterOptions,
) -> None:
    """Emissions up to the last marker are shown while the segment is open; a histogram group
    and counters after it wait for their marker; the finished segment is journaled whole, its
    rest alone parsed, and it leaves the spool."""
    spool = Path(options.spool)
    path = spool / "w.1000.prom"
    writer = Writer(path).write(FIRST + SECOND_PART)
    exporter = opened(options)
    assert exporter.ingest_pass(now_ms=1500) is False
    page = exporter.page()
    assert page_value(page, "c_total") == 3
    assert page_value(page, "h_count") == 2
    assert page_value(page, 'h_bucket{le="1.0"}') == 1
    assert page_value(page, SAMPLES) == 5
    assert page_value(page, CONSUMED) == 0
    assert path.exists() and exporter.durable.journal_bytes == 0  # tailed: never journaled

    writer.write(SECOND_REST)
    exporter.ingest_pass(now_ms=2500)
    page = exporter.page()
    assert page_value(page, "c_total") == 5
    assert page_value(page, "h_count") == 3 and page_value(page, 'h_bucket{le="1.0"}') == 2
    assert page_value(page, SAMPLES) == 5 + 5

    writer.write(LAST)  # no marker: taken when the segment is finished
    exporter.ingest_pass(now_ms=3000)
    assert page_value(exporter.page(), "c_total") == 5
    writer.finish()
    exporter.ingest_pass(now_ms=3500)
    page = exporter.page()
    assert page_value(page, "c_total") == 7
    assert page_value(page, SAMPLES) == 5 + 5 + 1  # each sample line parsed once
    assert page_value(page, CONSUMED) == 1
    assert page_value(page, ERRORS) == 0
    assert not path.exists()
    assert len(exporter.tailer) == 0
    journal = Path(exporter.durable.journal_path).read_bytes()
    assert journal == journal_record(path.name, writer.data)  # the whole file
    shown = exporter.store.page()
    exporter.durable.close()  # a crash: the journal alone brings it back
    again = opened(options)
    assert again.store.page() == shown
    again.close()


@pytest.mark.parametrize("checkpoint", [True, False])
def test_a_restart_while_a_segment_is_open_reads_it_again_to_the_same_page(
    options: ExporterOptions, checkpoint: bool
) -> None:
    """Tailed readings are not journaled: after a restart (with a snapshot holding them, or a
    crash without one) the open segment is read again, and the page is the same, then and once
    the segment is finished."""
    spool = Path(options.spool)
    writer = Writer(spool / "w.1000.prom").write(FIRST + SECOND_PART)
    first = opened(options)
    first.ingest_pass(now_ms=1500)
    shown = first.store.page()
    if checkpoint:
        first.close()
    else:
        first.durable.close()
    second = opened(options)
    assert ("c_total 3" in second.store.page()) is checkpoint
    second.ingest_pass(now_ms=1600)
    assert second.store.page() == shown
    writer.write(SECOND_REST + LAST)
    writer.finish()
    second.ingest_pass(now_ms=3500)
    assert not list(spool.glob("*.prom"))
    page = second.store.page()
    assert page_value(page, "c_total") == 7 and page_value(page, "h_count") == 3
    second.durable.close()
    third = opened(options)
    assert third.store.page() == page
    third.close()


def test_the_real_emitter_is_visible_emission_by_emission(
    options: ExporterOptions, tmp_path: Path
) -> None:
    """SegmentEmitter, one segment over several emissions (changes only): each count is on the
    page after the next pass while the segment stays locked; every sample is ingested once."""
    options.archive = str(tmp_path / "archive")
    spool = Path(options.spool)
    c = Collector()
    requests = c.register(Counter("requests_total"))
    latency = c.register(Histogram("latency_seconds"))
    idle = c.register(Counter("idle_total"))
    idle.click()
    exporter = opened(options)
    with SegmentEmitter(Options(prefix=str(spool / "app."), flush_interval=3600)) as e:
        for i in range(1, 5):
            requests.click()
            latency.observe(0.25)
            c.emit(e, 1000 * i)
            exporter.ingest_pass(now_ms=1000 * i)
            page = exporter.page()
            assert page_value(page, "requests_total") == i
            assert page_value(page, "latency_seconds_count") == i
            assert page_value(page, "idle_total") == 1
            assert e.path is not None and os.path.exists(e.path)
            assert Reader.try_open(e.path) is None  # still its writer's
            path = e.path
    exporter.ingest_pass(now_ms=6000)
    archived = Path(options.archive) / os.path.basename(path)
    assert archived.exists() and not os.path.exists(path)
    page = exporter.page()
    assert page_value(page, SAMPLES) == len(read_samples(archived))
    assert page_value(page, "requests_total") == 4
    exporter.close()


def test_problems_found_while_tailing_are_counted_once_and_quarantine_the_segment(
    options: ExporterOptions, events: list[logging.LogRecord]
) -> None:
    """A malformed line in a tailed part is counted and logged once, named at its line of the
    file; the finished segment is quarantined with it in the sidecar, though its rest is clean."""
    spool = Path(options.spool)
    path = spool / "w.1000.prom"
    writer = Writer(path).write(
        b"# TYPE c_total counter\nc_total 3 1000\nthis is not a sample\n# EMITTED 1000\n"
    )
    exporter = opened(options)
    exporter.ingest_pass(now_ms=1500)
    writer.write(b"c_total 4 2000\nnor is this one\n# EMITTED 2000\n")
    exporter.ingest_pass(now_ms=2500)
    exporter.ingest_pass(now_ms=2600)
    page = exporter.page()
    assert page_value(page, "c_total") == 4
    assert page_value(page, ERRORS) == 2
    said = [r for r in events if "problems" in r.getMessage()]
    assert len(said) == 1
    assert f"{path}:3: not a sample line" in str(said[0].__dict__["fields"]["first_problem"])
    writer.write(b"c_total 5 3000\n")
    writer.finish()
    exporter.ingest_pass(now_ms=3500)
    page = exporter.page()
    assert page_value(page, "c_total") == 5
    assert page_value(page, ERRORS) == 2
    assert page_value(page, "biometrics_exporter_quarantined_segments_total") == 1
    sidecar = (Path(options.quarantine_path) / "w.1000.prom.error").read_text()
    assert "2 malformed line(s)" in sidecar
    assert f"{path}:3: not a sample line" in sidecar
    assert f"{path}:6: not a sample line" in sidecar
    exporter.close()


@pytest.mark.parametrize("how", ["truncated", "rewritten", "replaced"])
def test_a_file_cut_short_or_replaced_is_read_again_from_its_start(
    options: ExporterOptions, events: list[logging.LogRecord], how: str
) -> None:
    """Shorter than what was taken, rewritten in place (longer, or as long), or another file
    (maybe on the freed inode number): read from 0 (old readings a no-op), said once however
    often it happens."""
    spool = Path(options.spool)
    path = spool / "w.1000.prom"
    writer = Writer(path).write(FIRST)
    exporter = opened(options)
    exporter.ingest_pass(now_ms=1500)
    for n, stamp in enumerate((2000, 2100, 2200)):
        text = b"c_total %d %d\n# EMITTED %d\n" % (10 + n, stamp, stamp)
        if how == "truncated":  # shorter, then longer than what was taken
            writer.rewrite(text + b"# HELP c_total Counts.\n" * 2 * n)
        elif how == "rewritten":  # shorter, then just as long: only the bytes and mtime change
            writer.rewrite(text)
            os.utime(path, ns=(n * 10**9, n * 10**9))
        else:
            path.unlink()
            writer.finish()  # the old file goes: its inode number may come back
            writer = Writer(path).write(b"# HELP c_total Counts.\n" * (20 + n) + text)
        exporter.ingest_pass(now_ms=stamp + 50)
        assert page_value(exporter.page(), "c_total") == 10 + n
    said = [r for r in events if "replaced, rewritten or cut short" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    writer.finish()
    exporter.ingest_pass(now_ms=3000)
    assert page_value(exporter.page(), "c_total") == 12
    assert not path.exists()
    exporter.close()


def test_an_emission_larger_than_a_batch_waits_for_the_finished_segment(
    options: ExporterOptions, events: list[logging.LogRecord]
) -> None:
    """--batch-bytes bounds what one open segment's part may be: a bigger one is read whole
    once finished, and said once."""
    options.batch_bytes = 64
    spool = Path(options.spool)
    big = b"".join(b'g{i="%d"} %d 1000\n' % (i, i) for i in range(20)) + b"# EMITTED 1000\n"
    writer = Writer(spool / "w.1000.prom").write(big)
    exporter = opened(options)
    for now in range(1500, 1505):
        exporter.ingest_pass(now_ms=now)
    assert series_value(exporter.page(), 'g{i="3"}') is None
    assert len([r for r in events if "larger than --batch-bytes" in r.getMessage()]) == 1
    writer.finish()
    exporter.ingest_pass(now_ms=2000)
    assert page_value(exporter.page(), 'g{i="19"}') == 19
    exporter.close()


@pytest.mark.parametrize(("files", "size"), [(1, 1 << 20), (256, 80)])
def test_a_pass_tails_at_most_a_batch(options: ExporterOptions, files: int, size: int) -> None:
    """Open segments share the pass's --batch-files and --batch-bytes: the pass says more is
    waiting, and the next one goes on."""
    options.batch_files, options.batch_bytes = files, size
    spool = Path(options.spool)
    writers = [Writer(spool / f"{s}.1000.prom") for s in "abc"]
    for i, writer in enumerate(writers):
        writer.write(b"# TYPE c_total counter\nc_total 1 1000\n# EMITTED 1000\n")  # 53 bytes
        os.utime(writer.path, ns=(i * 10**9, i * 10**9))
    exporter = opened(options)
    shown = []
    for now in range(1500, 1510):
        busy = exporter.ingest_pass(now_ms=now)
        shown.append(page_value(exporter.page(), "c_total"))
        if not busy:
            break
    assert shown == [1, 2, 3]
    for writer in writers:
        writer.finish()
    exporter.close()


def test_a_segment_without_markers_is_left_until_finished(options: ExporterOptions) -> None:
    """A foreign or older writer writes no markers: nothing is taken while it holds the file."""
    spool = Path(options.spool)
    writer = Writer(spool / "rust.1000.prom").write(b"c_total 2 1000\n" * 3)
    exporter = opened(options)
    exporter.ingest_pass(now_ms=1500)
    exporter.ingest_pass(now_ms=1600)
    assert series_value(exporter.page(), "c_total") is None
    assert writer.path.exists()
    writer.finish()
    exporter.ingest_pass(now_ms=1700)
    assert page_value(exporter.page(), "c_total") == 2
    assert not writer.path.exists()
    exporter.close()


def test_an_open_segment_that_did_not_grow_is_not_read_again(
    options: ExporterOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No busy loop: once taken, an open segment costs no read until it grows; then only the
    new bytes are read."""
    spool = Path(options.spool)
    writer = Writer(spool / "w.1000.prom").write(FIRST)
    exporter = opened(options)
    reads: list[tuple[int, int]] = []
    real: Callable[[int, int, int], bytes] = os.pread

    def pread(fd: int, n: int, offset: int) -> bytes:
        reads.append((n, offset))
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", pread)
    exporter.ingest_pass(now_ms=1500)
    assert reads and reads[0] == (len(FIRST), 0)
    reads.clear()
    for now in range(1600, 1610):
        exporter.ingest_pass(now_ms=now)
    assert reads == []
    writer.write(SECOND_PART)
    exporter.ingest_pass(now_ms=1700)
    marker = len(b"# EMITTED 1000\n") + 15  # what it checks is still there, and the new bytes
    assert reads == [(marker, len(FIRST) - marker), (len(SECOND_PART), len(FIRST))]
    writer.finish()
    exporter.close()


def test_links_are_never_tailed_and_vanished_segments_are_forgotten(
    options: ExporterOptions, tmp_path: Path
) -> None:
    """A link named like a segment to a held file is not read; the record of an open segment
    its writer unlinked goes with it."""
    spool = Path(options.spool)
    elsewhere = Writer(tmp_path / "secret.1000.prom").write(FIRST)
    (spool / "evil.1000.prom").symlink_to(elsewhere.path)
    writer = Writer(spool / "w.1000.prom").write(b"x_total 1 1000\n# EMITTED 1000\n")
    exporter = opened(options)
    exporter.ingest_pass(now_ms=1500)
    page = exporter.page()
    assert series_value(page, "c_total") is None
    assert page_value(page, "x_total") == 1
    assert len(exporter.tailer) == 1
    writer.path.unlink()
    exporter.ingest_pass(now_ms=1600)
    assert len(exporter.tailer) == 0
    assert elsewhere.path.read_bytes() == FIRST
    elsewhere.finish()
    writer.finish()
    exporter.close()
