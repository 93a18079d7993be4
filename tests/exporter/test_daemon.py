"""The ingest side of serve: consume, journal, remove, quarantine, recover; no HTTP here."""

import errno
import io
import json
import math
import os
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from biometrics import Collector, Counter, Histogram, StateError
from biometrics._daemon.logfmt import configure
from biometrics.exporter import DurableState, Exporter, ExporterOptions, MergeRules
from biometrics.prometheus import Options, SegmentEmitter

from ..helpers import page_value, wait_for


def write_segment(spool: Path, source: str, now_ms: int, requests: int) -> str:
    """One finished segment, as a process named ``source`` would leave it."""
    c = Collector()
    c.register(Counter("requests_total", help="Requests.")).count(requests)
    h = c.register(Histogram("latency_seconds"))
    for _ in range(requests):
        h.observe(0.25)
    with SegmentEmitter(Options(prefix=str(spool / f"{source}."))) as e:
        c.emit(e, now_ms)
        assert e.path is not None
        return e.path


def test_segments_are_merged_journaled_and_removed(options: ExporterOptions) -> None:
    """Two sources' counters and histograms sum; consumed files leave the spool."""
    spool = Path(options.spool)
    paths = [write_segment(spool, "w1", 1000, 3), write_segment(spool, "w2", 1000, 4)]
    exporter = Exporter(options)
    exporter.open()
    exporter.ingest_pass(now_ms=2000)
    page = exporter.page()
    assert page_value(page, "requests_total") == 7
    assert page_value(page, 'latency_seconds_bucket{le="0.25"}') == 7
    assert page_value(page, "biometrics_exporter_segments_consumed_total") == 2
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
    assert page_value(third.page(), "requests_total") == 5
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
    assert page_value(again.page(), "requests_total") == 3
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
    assert page_value(page, "ok_total") == 2
    assert page_value(page, "biometrics_exporter_quarantined_segments_total") == 2
    assert page_value(page, "biometrics_exporter_parse_errors_total") == 1
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


def test_open_segments_are_tailed_and_forgotten_sources_go(options: ExporterOptions) -> None:
    """A segment still being written is read up to its last emission, not consumed; forget-after
    drops silent sources."""
    options.forget_after_ms = 10_000
    spool = Path(options.spool)
    write_segment(spool, "old", 1000, 2)
    c = Collector()
    c.register(Counter("requests_total")).count(5)
    exporter = Exporter(options)
    exporter.open()
    with SegmentEmitter(Options(prefix=str(spool / "live."))) as e:
        c.emit(e, 20_000)
        exporter.ingest_pass(now_ms=20_000)
        live = e.path
        assert live is not None and os.path.exists(live)
        page = exporter.page()
        assert page_value(page, "biometrics_exporter_sources") == 1  # "old" forgotten
        assert page_value(page, "requests_total") == 2 + 5  # "live" read while open
        assert page_value(page, "biometrics_exporter_segments_consumed_total") == 1
    exporter.ingest_pass(now_ms=20_100)
    page = exporter.page()
    assert page_value(page, "requests_total") == 2 + 5
    assert page_value(page, "biometrics_exporter_segments_consumed_total") == 2
    assert not os.path.exists(live)
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


# -- a failing state volume ---------------------------------------------------------------------


def journal_record(path: str) -> bytes:
    """The journal record a consumed segment becomes."""
    data = Path(path).read_bytes()
    return b"#@biometrics-journal " + f"{len(data)} {os.path.basename(path)}\n".encode() + data


def _child_full_volume(tmp: Path) -> None:
    """Ingest with the journal capped by RLIMIT_FSIZE (EFBIG), then lift the cap."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    log_lines = io.StringIO()
    configure("info", log_lines)
    spool = tmp / "spool"
    spool.mkdir()
    options = ExporterOptions(spool=str(spool), state=str(tmp / "state" / "s.json"),
                              checkpoint_interval=3600)  # fmt: skip
    records = [journal_record(write_segment(spool, "w1", 1000, 3))]
    exporter = Exporter(options)
    exporter.open()
    exporter.ingest_pass(now_ms=1500)
    journal = Path(exporter.durable.journal_path)
    b, c = write_segment(spool, "w2", 2000, 4), write_segment(spool, "w3", 2000, 5)
    records += [journal_record(b), journal_record(c)]
    c_header = len(records[2]) - os.path.getsize(c)
    out: dict[str, object] = {}
    # Room for b's record, then the cap falls mid-header of c, then mid-data of c.
    for n, room in enumerate((10, c_header + 10)):
        limit = len(records[0]) + len(records[1]) + room
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        exporter.ingest_pass(now_ms=2500 + n)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        page = exporter.page()
        out[f"pass {n}"] = {
            "journal is a+b": journal.read_bytes() == records[0] + records[1],
            "journal_bytes": exporter.durable.journal_bytes,
            "spool": sorted(p.name for p in spool.glob("*.prom")),
            "requests": page_value(page, "requests_total"),
            "failures": page_value(page, "biometrics_exporter_ingest_failures_total"),
        }
    exporter.ingest_pass(now_ms=3000)
    out["after"] = {
        "journal is a+b+c": journal.read_bytes() == b"".join(records),
        "spool": sorted(p.name for p in spool.glob("*.prom")),
        "requests": page_value(exporter.page(), "requests_total"),
    }
    exporter.durable.close()  # a crash: no snapshot, the journal alone must hold a, b and c
    again = Exporter(options)
    again.open()
    out["replayed requests"] = page_value(again.page(), "requests_total")
    again.close()
    out["c"] = os.path.basename(c)
    out["journal"] = str(journal)
    out["log"] = log_lines.getvalue().splitlines()
    print(json.dumps(out))


def test_a_full_state_volume_keeps_segments_and_ingest_resumes_by_itself(tmp_path: Path) -> None:
    """EFBIG on the journal: whole records only, the segment stays, and it is taken later.

    Before the fix the segment was skip-listed for good, and a header left in a buffer (or a
    hole) made a later replay stop early and lose every record after it.
    """
    root = Path(__file__).parents[2]  # run as a module of the tests package: relative imports
    done = subprocess.run([sys.executable, "-m", __name__, "full-volume", str(tmp_path)], cwd=root,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for n in range(2):
        step = out[f"pass {n}"]
        assert step["journal is a+b"], (n, step)
        assert step["spool"] == [out["c"]], (n, step)
        assert step["requests"] == 3 + 4, (n, step)
        assert step["failures"] == n + 1, (n, step)
    assert out["after"] == {"journal is a+b+c": True, "spool": [], "requests": 3 + 4 + 5}
    assert out["replayed requests"] == 3 + 4 + 5
    errors = [line for line in out["log"] if "level=error" in line]
    assert len(errors) == 1, out["log"]  # once per failure streak
    assert f"journal={out['journal']}" in errors[0]
    assert "errno=EFBIG" in errors[0]
    assert any("level=info" in line and "journal" in line and "again" in line
               for line in out["log"]), out["log"]  # fmt: skip


def test_a_failed_journal_sync_leaves_the_batch_in_the_spool(
    options: ExporterOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync failing: the batch stays in the spool and is not counted twice when retaken."""
    spool = Path(options.spool)
    paths = [write_segment(spool, "w1", 1000, 3), write_segment(spool, "w2", 1000, 4)]
    exporter = Exporter(options)
    exporter.open()
    journal = Path(exporter.durable.journal_path)
    real_fsync, fails = os.fsync, [1]

    def fsync(fd: int) -> None:
        if fails[0] and os.path.samestat(os.fstat(fd), os.stat(journal)):
            fails[0] -= 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr("biometrics.exporter.durable.os.fsync", fsync)
    exporter.ingest_pass(now_ms=2000)
    assert all(os.path.exists(p) for p in paths)
    assert journal.read_bytes() == b""
    assert exporter.durable.journal_bytes == 0
    assert page_value(exporter.page(), "biometrics_exporter_ingest_failures_total") == 1
    exporter.ingest_pass(now_ms=2100)
    assert not any(os.path.exists(p) for p in paths)
    assert page_value(exporter.page(), "requests_total") == 7
    exporter.durable.close()
    again = Exporter(options)
    again.open()
    assert page_value(again.page(), "requests_total") == 7
    again.close()


@contextmanager
def running(exporter: Exporter) -> Iterator[tuple[threading.Thread, list[str]]]:
    """``exporter.run`` on a thread; what killed it, if anything, lands in the list.

    On leaving: the thread is stopped and must have ended without dying; the exporter is closed.
    """
    stop = threading.Event()
    died: list[str] = []

    def target() -> None:
        try:
            exporter.run(stop)
        except BaseException as e:
            died.append(repr(e))
            raise

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield thread, died
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert died == []
    exporter.close()


def test_the_ingest_thread_rides_out_a_full_journal(
    options: ExporterOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC on the journal for three passes: run() backs off, keeps going, then consumes."""
    options.poll_interval = 0.005
    path = write_segment(Path(options.spool), "w1", 1000, 3)
    exporter = Exporter(options)
    exporter.open()
    journal = Path(exporter.durable.journal_path)
    real_sendfile, fails = os.sendfile, [3]

    def sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        if fails[0] and os.path.samestat(os.fstat(out_fd), os.stat(journal)):
            fails[0] -= 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr("biometrics.exporter.durable.os.sendfile", sendfile)
    with running(exporter) as (_, died):
        wait_for(lambda: died or not os.path.exists(path), "the segment consumed", timeout=20)
        assert died == []
        assert page_value(exporter.page(), "requests_total") == 3
        assert page_value(exporter.page(), "biometrics_exporter_ingest_failures_total") == 3


def test_the_ingest_thread_survives_a_vanished_spool(options: ExporterOptions) -> None:
    """An OSError out of a pass (spool directory gone) is logged and retried, not fatal."""
    options.poll_interval = 0.005
    spool = Path(options.spool)
    exporter = Exporter(options)
    exporter.open()
    spool.rmdir()
    with running(exporter) as (thread, died):
        failures = "biometrics_exporter_ingest_failures_total"
        wait_for(lambda: died or page_value(exporter.page(), failures) >= 2, "two failed passes",
                 timeout=20)  # fmt: skip
        assert thread.is_alive(), died
        spool.mkdir()
        path = write_segment(spool, "w1", 1000, 3)
        wait_for(lambda: died or not os.path.exists(path), "the segment consumed", timeout=20)
        assert died == []
        assert page_value(exporter.page(), "requests_total") == 3


if __name__ == "__main__":
    if sys.argv[1] == "full-volume":
        _child_full_volume(Path(sys.argv[2]))


@pytest.mark.parametrize("trial", range(4))
def test_a_backlog_after_an_outage_keeps_dead_counts_and_forgets_no_live_source(
    options: ExporterOptions, trial: int
) -> None:
    """serve was down longer than --forget-after: draining the backlog forgets no live source
    (no double count when its newer segments arrive) and keeps a dead source's count."""
    options.forget_after_ms = 60_000
    options.batch_files = 2 + trial
    spool = Path(options.spool)
    t0 = 1_700_000_000_000
    exporter = Exporter(options)
    exporter.open()
    for i, (source, ts, total) in enumerate([("dead", t0, 10), ("live", t0, 1)]):
        path = write_segment(spool, source, ts + i, total)
        os.utime(path, ns=(ts * 1_000_000, ts * 1_000_000))
    exporter.ingest_pass(now_ms=t0 + 1_000)
    exporter.close()
    for step in range(1, 31):  # the outage: 'live' goes on writing, 'dead' is gone
        ts = t0 + step * 10_000
        path = write_segment(spool, "live", ts, step + 1)
        os.utime(path, ns=(ts * 1_000_000, ts * 1_000_000))
    exporter = Exporter(options)
    exporter.open()
    now = t0 + 305_000
    forgotten_live = []
    for _ in range(40):
        before = set(exporter.store.to_json()["tombstones"])
        busy = exporter.ingest_pass(now_ms=now)
        forgotten_live += [s for s in exporter.store.to_json()["tombstones"]
                           if s == "live" and s not in before]  # fmt: skip
        if not busy and not list(spool.glob("*.prom")):
            break
    assert not list(spool.glob("*.prom"))
    page = exporter.page()
    exporter.close()
    assert set(exporter.store.to_json()["tombstones"]) == {"dead"}
    assert page_value(page, "requests_total") == 10 + 31
    assert page_value(page, "latency_seconds_count") == 10 + 31
    assert forgotten_live == []


POISON = {
    "good.1000.prom": '# TYPE h histogram\nh_bucket{le="1.0"} 1 1000\nh_sum 1 1000\n'
    "h_count 1 1000\n",
    "ts.1000.prom": "# TYPE c_total counter\nc_total 1 1000\nc_total 2 " + "9" * 5000 + "\n",
    "big.1000.prom": "# TYPE c_total counter\nc_total 1 9223372036854775808\n",
    "nan.1000.prom": "# TYPE c_total counter\nc_total NaN 1000\n",
    "inf.1000.prom": "# TYPE c_total counter\nc_total +Inf 1000\n",
    "m.1000.prom": "# TYPE m_count counter\nm_count NaN 1000\n"
    + "".join(
        f"# TYPE m_{p} gauge\nm_{p} 1 1000\n" for p in ("mean", "variance", "skewness", "kurtosis")
    ),
    "ovf1.1000.prom": "# TYPE c_total counter\nc_total 1e308 1000\n# TYPE g gauge\ng +Inf 1000\n",
    "ovf2.1000.prom": "# TYPE c_total counter\nc_total 1e308 1000\n# TYPE g gauge\ng -Inf 1000\n",
    "h.1000.prom": '# TYPE h histogram\nh_bucket{le="1.0"} 3 1000\nh_count 2 1000\n',
    "hc.1000.prom": "# TYPE h_count counter\nh_count 5 1000\n",
}
"""Read in this order (mtimes set so), a good histogram first."""


def test_poison_pills_never_crash_serve_nor_its_restart(options: ExporterOptions) -> None:
    """Huge timestamps, NaN counts, overflowing sums, +Inf and -Inf summed: dropped or +Inf,
    never a crash, and the snapshot written after them loads back."""
    options.rules = MergeRules(gauges=(("g", "sum"),))
    spool = Path(options.spool)
    for i, (name, text) in enumerate(POISON.items()):
        (spool / name).write_text(text)
        os.utime(spool / name, ns=(i * 1_000_000_000, i * 1_000_000_000))
    for _ in range(2):  # ingest, then a restart from the snapshot
        exporter = Exporter(options)
        exporter.open()
        exporter.ingest_pass(now_ms=2_000)
        page = exporter.page()
        exporter.close()
        assert page_value(page, "c_total") == math.inf  # 1 + 1e308 + 1e308, not NaN
        assert page_value(page, "h_count") == 1 and math.isnan(page_value(page, "g"))
        assert "m_count" not in page and "h_count 5" not in page
    assert sorted(p.name for p in spool.glob("*.prom")) == []
    quarantined = sorted(p.name for p in (spool / "quarantine").glob("*.prom"))
    assert quarantined == ["big.1000.prom", "h.1000.prom", "inf.1000.prom", "m.1000.prom",
                           "nan.1000.prom", "ts.1000.prom"]  # fmt: skip


def test_a_writer_clock_stepping_back_loses_and_doubles_nothing(options: ExporterOptions) -> None:
    """40 emissions, the wall clock stepping back an hour halfway: serve and cat both say 40."""
    spool = Path(options.spool)
    c = Collector()
    events = c.register(Counter("events_total"))
    t0 = 1_700_000_000_000
    with SegmentEmitter(Options(prefix=str(spool / "w."), flush_interval=5)) as e:
        for i in range(40):
            events.click()
            c.emit(e, t0 + i * 1_000 - (3_600_000 if i >= 20 else 0))
    from biometrics.files import merged_page

    cat_page, problems = merged_page([spool])
    assert page_value(cat_page, "events_total") == 40 and problems == []
    exporter = Exporter(options)
    exporter.open()
    exporter.ingest_pass(now_ms=t0)
    page = exporter.page()
    exporter.close()
    assert page_value(page, "events_total") == 40
