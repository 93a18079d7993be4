import contextlib
import os
import stat
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from biometrics import DEFAULT_BUCKETS, Collector, Counter, Gauge, Histogram, InvalidValueError
from biometrics.exporter import Store
from biometrics.prometheus import (
    Options,
    Parse,
    Reader,
    Sample,
    SegmentEmitter,
    SegmentError,
    Watcher,
    _locks,
    parse,
)
from biometrics.prometheus import _segment_file as segment_file_module

from ..helpers import read_samples, spool_samples


def segments(directory: Path) -> list[Path]:
    """The segment files of ``directory`` (hidden ones included), in name order."""
    return sorted(p for p in directory.iterdir() if p.name.endswith(".prom"))


def test_segment_name_content_and_metadata_once_per_family(tmp_path: Path) -> None:
    """<prefix><epoch_ms>.prom, timestamped lines, HELP/TYPE once per family per segment."""
    c = Counter("app.requests", help="Requests.")
    c.count(2)
    with SegmentEmitter(Options(prefix=tmp_path / "app.")) as e:
        e.emit_counter(c, 1000)
        c.click()
        e.emit_counter(c, 1001)
        assert e.path == str(tmp_path / "app.1000.prom")
    assert [p.name for p in segments(tmp_path)] == ["app.1000.prom"]
    assert (tmp_path / "app.1000.prom").read_text() == (
        "# HELP app_requests_total Requests.\n"
        "# TYPE app_requests_total counter\n"
        "app_requests_total 2 1000\n"
        "# EMITTED 1000\n"  # ended by the later stamp: each emission is closed by its marker
        "app_requests_total 3 1001\n"
        "# EMITTED 1001\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["app.1000.prom"]  # no temporary left


def test_name_clash_takes_the_next_millisecond_and_never_overwrites(tmp_path: Path) -> None:
    """An existing file is left untouched; the new segment is named one ms later."""
    (tmp_path / "app.1000.prom").write_text("not ours\n")
    (tmp_path / "app.1001.prom").write_text("not ours either\n")
    with SegmentEmitter(Options(prefix=tmp_path / "app.")) as e:
        e.emit_gauge(Gauge("g"), 1000)
    assert (tmp_path / "app.1000.prom").read_text() == "not ours\n"
    assert (tmp_path / "app.1001.prom").read_text() == "not ours either\n"
    assert "g 0.0 1000" in (tmp_path / "app.1002.prom").read_text()


LOCK_PROBE = """
import sys
from biometrics.prometheus import Reader
reader = Reader.try_open(sys.argv[1])
print("locked" if reader is None else "free")
"""


def probe_other_process(path: str) -> str:
    out = subprocess.run([sys.executable, "-c", LOCK_PROBE, path], capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    return out.stdout.strip()


def probe_other_thread(path: str) -> str:
    result: list[str] = []

    def probe() -> None:
        reader = Reader.try_open(path)
        result.append("locked" if reader is None else "free")
        if reader is not None:
            reader.close()

    t = threading.Thread(target=probe)
    t.start()
    t.join(timeout=30)
    return result[0]


def test_segment_is_locked_while_written_for_other_processes_and_threads(tmp_path: Path) -> None:
    """Readers elsewhere see the lock until the segment is finished."""
    e = SegmentEmitter(Options(prefix=tmp_path / "app."))
    e.emit_counter(Counter("c"), 5)
    e.flush()
    path = str(tmp_path / "app.5.prom")
    assert probe_other_process(path) == "locked"
    assert probe_other_thread(path) == "locked"
    assert Reader.try_open(path) is None
    e.close()
    assert probe_other_process(path) == "free"
    assert probe_other_thread(path) == "free"
    with Reader.open(path) as r:
        assert r.read() == b"# TYPE c_total counter\nc_total 0 5\n# EMITTED 5\n"


RUST_STYLE_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
if sys.argv[2] == "hold":
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # POSIX F_SETLK F_WRLCK, as the Rust crate
    print("held", flush=True)
    sys.stdin.readline()
else:
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        print("free")
    except OSError:
        print("locked")
"""


def test_locks_interoperate_with_posix_record_locks(tmp_path: Path) -> None:
    """A POSIX-locking (Rust) writer blocks our readers; our writer blocks POSIX readers."""
    rust_file = tmp_path / "rust.1.prom"
    rust_file.write_text("x 1 1\n")
    holder = subprocess.Popen([sys.executable, "-c", RUST_STYLE_LOCK, str(rust_file), "hold"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert Reader.try_open(rust_file) is None
        assert Watcher(tmp_path).ingest_one(lambda r: None) is False
    finally:
        holder.communicate("done\n", timeout=30)
    assert Reader.try_open(rust_file) is not None

    with SegmentEmitter(Options(prefix=tmp_path / "py.")) as e:
        e.emit_counter(Counter("c"), 9)
        e.flush()
        probe = subprocess.run([sys.executable, "-c", RUST_STYLE_LOCK, e.path or "", "probe"],
                               capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        assert probe.stdout.strip() == "locked"


def test_final_name_is_locked_from_the_moment_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The create-then-lock window is closed: the name appears only on a locked file."""
    seen: list[str] = []
    real_link = os.link

    def link_and_probe(src: str, dst: str) -> None:
        assert Path(src).name.startswith(".") and not src.endswith(".prom")
        real_link(src, dst)
        seen.append(probe_other_thread(dst))

    monkeypatch.setattr(os, "link", link_and_probe)
    with SegmentEmitter(Options(prefix=tmp_path / "app.", flush_interval=0.001)) as e:
        for now in range(1, 6):
            e.emit_counter(Counter("c"), now)
    assert seen == ["locked"] * 5
    assert Watcher(tmp_path).candidates() == [str(p) for p in segments(tmp_path)]


def test_rotation_by_size_and_age_never_splits_a_batch(tmp_path: Path) -> None:
    """A batch (one emission) stays in one segment; the next emission rotates."""
    collector = Collector()
    for i in range(50):
        collector.register(Counter(f"c{i}"))
    with SegmentEmitter(Options(prefix=tmp_path / "s.", segment_size=100)) as e:
        collector.emit(e, 1000)
        assert e.path == str(tmp_path / "s.1000.prom")
        collector.emit(e, 1000)  # the same ms, but a new emission: stamped 1001
        collector.emit(e, 1005)
    names = [p.name for p in segments(tmp_path)]
    assert names == ["s.1000.prom", "s.1001.prom", "s.1005.prom"]
    for name in names:  # 50 counters and the collector's 9 own, all in one segment, one stamp
        samples = read_samples(tmp_path / name)
        assert len(samples) == 59
        assert {s.timestamp_ms for s in samples} == {int(name.split(".")[1])}

    with SegmentEmitter(Options(prefix=tmp_path / "t.", flush_interval=timedelta(seconds=1))) as e:
        for now in (0, 500, 999, 1000, 1500, 2100):
            e.emit_gauge(Gauge("g"), now)
    assert [p.name for p in segments(tmp_path) if p.name.startswith("t.")] == [
        "t.0.prom", "t.1000.prom", "t.2100.prom",
    ]  # fmt: skip


def test_finished_segments_are_never_written_again(tmp_path: Path) -> None:
    """After rotation the old file's bytes do not change."""
    with SegmentEmitter(Options(prefix=tmp_path / "s.", flush_interval=0.001)) as e:
        e.emit_counter(Counter("c"), 1)
        e.emit_counter(Counter("c"), 2)
        before = (tmp_path / "s.1.prom").read_bytes()
        for now in range(3, 10):
            e.emit_counter(Counter("c"), now)
    assert (tmp_path / "s.1.prom").read_bytes() == before
    assert len(segments(tmp_path)) == 9


def test_segments_get_0644_by_default_and_the_directory_is_untouched(tmp_path: Path) -> None:
    """Mode is applied exactly, whatever the umask; configurable; directory mode kept."""
    os.chmod(tmp_path, 0o750)
    old = os.umask(0o077)
    try:
        with SegmentEmitter(Options(prefix=tmp_path / "a.")) as e:
            e.emit_counter(Counter("c"), 1)
        with SegmentEmitter(Options(prefix=tmp_path / "b.", mode=0o600)) as e:
            e.emit_counter(Counter("c"), 1)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.1.prom").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.1.prom").stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o750


def test_options_validate_and_accept_timedelta() -> None:
    """Bad options fail at construction with a clear error."""
    assert Options(flush_interval=timedelta(minutes=1)).flush_interval == 60.0
    assert Options().flush_interval_ms == 60_000  # every series written at least once a minute
    assert Options().changes_only is True
    for bad in ({"flush_interval": 0}, {"segment_size": 0}, {"prefix": "spool/"}):
        with pytest.raises(InvalidValueError):
            Options(**bad)


def test_per_process_prefix_is_unique_and_safe(tmp_path: Path) -> None:
    """job.host.pid. inside the spool directory."""
    o = Options.per_process(tmp_path, "web api", host="h1.example.com", pid=42)
    assert o.prefix == os.path.join(tmp_path, "web_api.h1_example_com.42.")
    assert (
        Options.per_process(tmp_path, "w").prefix
        != Options.per_process(tmp_path, "w", pid=1).prefix
    )


DISK_FULL = """
import resource, signal, sys
from biometrics import Collector, Counter
from biometrics.prometheus import SegmentEmitter, Options, SegmentError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
collector = Collector()
for i in range(300):
    collector.register(Counter(f"counter.number.{i}"))
emitter = SegmentEmitter(Options(prefix=sys.argv[1]))
collector.register(emitter.failures)
try:
    collector.emit(emitter, 1000)
    print("no error")
except SegmentError as e:
    print("error", e.errno, e.filename)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
collector.emit(emitter, 2000)
emitter.close()
print("failures", emitter.failures.read())
"""


def test_write_errors_are_counted_raised_and_the_next_emission_retries(tmp_path: Path) -> None:
    """A real write error (file size limit): SegmentError naming the file, then recovery."""
    out = subprocess.run([sys.executable, "-c", DISK_FULL, str(tmp_path / "full.")],
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    lines = out.stdout.splitlines()
    assert lines[0].startswith("error 27 ") and lines[0].endswith("full.1000.prom"), out
    assert lines[-1] == "failures 1"
    assert len(read_samples(tmp_path / "full.2000.prom")) > 300
    assert all(s.timestamp_ms == 1000 for s in read_samples(tmp_path / "full.1000.prom"))


def test_create_errors_are_segment_errors(tmp_path: Path) -> None:
    """A missing spool directory gives a SegmentError naming the path."""
    e = SegmentEmitter(Options(prefix=tmp_path / "missing" / "x."))
    with pytest.raises(SegmentError, match="missing"):
        e.emit_counter(Counter("c"), 1)
    assert e.failures.read() == 1


def test_histograms_round_trip_through_a_segment(tmp_path: Path) -> None:
    """What the emitter writes, the parser reads back exactly: every bucket, empty ones too."""
    h = Histogram("lat", labels={"route": "/x"})
    for x in (0.0042, 0.0042, 0.3, 7.0, 90.0):
        h.observe(x)
    with SegmentEmitter(Options(prefix=tmp_path / "h.")) as e:
        e.emit_histogram(h, 77)
    got = {(s.name, s.labels): s.value for s in read_samples(tmp_path / "h.77.prom")}
    buckets = {dict(labels)["le"]: v for (name, labels), v in got.items() if name == "lat_bucket"}
    assert list(buckets) == [*map(repr, DEFAULT_BUCKETS), "+Inf"]
    assert (buckets["0.0025"], buckets["0.005"], buckets["0.25"], buckets["0.5"]) == (0, 2, 2, 3)
    assert (buckets["60.0"], buckets["+Inf"]) == (4, 5)
    assert got[("lat_sum", (("route", "/x"),))] == 0.0042 * 2 + 0.3 + 7.0 + 90.0
    assert got[("lat_count", (("route", "/x"),))] == 5


FORKED_EMITTER = """
import os, sys
from biometrics import Counter
from biometrics.prometheus import SegmentEmitter, Options
c = Counter("c")
e = SegmentEmitter(Options(prefix=sys.argv[1] + "/app."))
c.count(5)
e.emit_counter(c, 1000)  # buffered, not yet written
pid = os.fork()
if pid == 0:
    c.count(100)
    e.emit_counter(c, 2000)
    sys.exit(0)  # the exit-time finalizer finishes (and ends) the *child's* segment only
os.waitpid(pid, 0)
c.count(1)
e.emit_counter(c, 3000)
e.close()
print(os.getpid(), pid)
"""


def test_a_forked_child_never_writes_the_parents_segment(tmp_path: Path) -> None:
    """A child forked with lines still buffered writes its own segment under a pid-swapped prefix
    (ended at its exit), and the parent's segment holds only the parent's lines.
    """
    done = subprocess.run([sys.executable, "-c", FORKED_EMITTER, str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    _, child = done.stdout.split()
    assert (tmp_path / "app.1000.prom").read_text().splitlines()[-4:] == [
        "c_total 5 1000", "# EMITTED 1000", "c_total 6 3000", "# EMITTED 3000"
    ]  # fmt: skip
    assert (tmp_path / f"app.{child}.2000.prom").read_text().splitlines()[-3:] == [
        "c_total 105 2000", "# EMITTED 2000", "# END"  # the child exited cleanly
    ]  # fmt: skip
    assert len(segments(tmp_path)) == 2


# -- time: per source, stamps never go backwards and are never reused ----------------------------


def stamps_of(directory: Path, name: str) -> list[tuple[str, int, float]]:
    """(segment file, timestamp, value) of every ``name`` sample, segments in name order."""
    return [
        (p.name, s.timestamp_ms or 0, s.value)
        for p, found in spool_samples(directory, name).items()
        for s in found
    ]


def test_two_emissions_in_one_millisecond_get_two_increasing_stamps(tmp_path: Path) -> None:
    """A stop() right after a tick: the second emission is stamped 1 ms later, and both count."""
    collector = Collector()
    events = collector.register(Counter("events"))
    with SegmentEmitter(Options(prefix=tmp_path / "app.")) as e:
        events.count(5)
        collector.emit(e, 1000)
        events.count(7)
        collector.emit(e, 1000)
    assert stamps_of(tmp_path, "events_total") == [
        ("app.1000.prom", 1000, 5),
        ("app.1000.prom", 1001, 12),
    ]

    store = Store()
    with open(tmp_path / "app.1000.prom", "rb") as f:
        store.ingest_segment("app", Parse(f), 1000)
    # a reader keeps only readings newer than the last
    assert "\nevents_total 12\n" in store.render()


def test_a_clock_stepping_back_never_moves_stamps_or_segment_names_back(tmp_path: Path) -> None:
    """Wall clock 5000, 4000, 4000, 6000, 5999: stamps and names (rotating each time) rise."""
    collector = Collector()
    c = collector.register(Counter("c"))
    with SegmentEmitter(Options(prefix=tmp_path / "app.", flush_interval=0.001)) as e:
        for now in (5000, 4000, 4000, 6000, 5999):
            c.click()
            collector.emit(e, now)
    got = stamps_of(tmp_path, "c_total")
    assert got == [
        ("app.5000.prom", 5000, 1), ("app.5001.prom", 5001, 2), ("app.5002.prom", 5002, 3),
        ("app.6000.prom", 6000, 4), ("app.6001.prom", 6001, 5),
    ]  # fmt: skip
    for p in segments(tmp_path):  # a segment is named by the stamp of its first reading
        assert {s.timestamp_ms for s in read_samples(p)} == {int(p.name.split(".")[1])}


def test_a_consumed_segments_name_is_never_reused(tmp_path: Path) -> None:
    """A consumed segment's name is never taken again: the exporter's outbox keeps names."""
    with SegmentEmitter(Options(prefix=tmp_path / "app.")) as e:
        (tmp_path / "app.1000.prom").write_text("not ours\n")
        e.emit_counter(Counter("c"), 1000)
        e.flush()
        assert e.path == str(tmp_path / "app.1001.prom")  # the clash took the next ms
        e.close()
        (tmp_path / "app.1001.prom").unlink()  # consumed by a Watcher
        e.emit_counter(Counter("c"), 1001)
        assert e.path == str(tmp_path / "app.1002.prom")
    assert [s.timestamp_ms for s in read_samples(tmp_path / "app.1002.prom")] == [1001]


def test_one_emissions_lines_share_one_stamp(tmp_path: Path) -> None:
    """Every sensor of one Collector.emit (bridged families included) carries the same stamp."""
    collector = Collector()
    collector.register(Counter("c")).click()
    collector.register(Gauge("g")).set(2.0)
    collector.register(Histogram("h")).observe(0.5)
    with SegmentEmitter(Options(prefix=tmp_path / "app.", changes_only=False)) as e:
        collector.emit(e, 1000)
        e.emit_counter(Counter("bridged"), 1000)  # a bridge writes first, with the same now_ms
        collector.emit(e, 1000)
        e.emit_counter(Counter("late"), 900)  # an emission's later part may bring an older clock
        collector.emit(e, 900)
    by_stamp: dict[int, set[str]] = {}
    for s in read_samples(tmp_path / "app.1000.prom"):
        by_stamp.setdefault(s.timestamp_ms or 0, set()).add(s.name)
    assert sorted(by_stamp) == [1000, 1001, 1002]
    assert by_stamp[1001] == by_stamp[1000] | {"bridged_total"}
    assert by_stamp[1002] == by_stamp[1000] | {"late_total"}


def test_direct_emits_without_flush_never_go_backwards(tmp_path: Path) -> None:
    """emit_* calls with no flush share a stamp until a later now_ms; an earlier one never wins."""
    c = Counter("c")
    with SegmentEmitter(Options(prefix=tmp_path / "app.", changes_only=False)) as e:
        for now in (1000, 1000, 1001, 999, 1001, 1003):
            e.emit_counter(c, now)
        e.flush()
        e.emit_counter(c, 1003)
    assert [t for _, t, _ in stamps_of(tmp_path, "c_total")] == [
        1000, 1000, 1001, 1001, 1001, 1003, 1004
    ]  # fmt: skip


# -- creation: someone else takes or locks our temporary file ------------------------------------


def hidden_temps(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def steal(path: Path, *, keep: list[int] | None = None) -> None:
    """What the Rust Watcher does to any entry: F_SETLK F_RDLCK, read, unlink (or still hold)."""
    fd = os.open(path, os.O_RDONLY)
    assert _locks.lock(fd, exclusive=False, wait=False)
    if keep is not None:
        keep.append(fd)  # still reading: our write lock must be refused
        return
    os.read(fd, 1024)
    os.unlink(path)
    os.close(fd)


@pytest.mark.parametrize("how", ["unlinked", "locked", "link-enoent"])
def test_a_stolen_or_locked_temporary_is_retried_under_a_fresh_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The first temporary is consumed or locked by a Watcher; the emission still succeeds."""
    held: list[int] = []
    real_lock, real_link = _locks.lock, os.link
    attempts: list[str] = []

    def lock_after_theft(fd: int, *, exclusive: bool, wait: bool) -> bool:
        temps = hidden_temps(tmp_path)
        attempts.extend(p.name for p in temps)
        if len(attempts) == 1:
            steal(temps[0], keep=held if how == "locked" else None)
        return real_lock(fd, exclusive=exclusive, wait=wait)

    def link_after_theft(src: str, dst: str) -> None:
        attempts.append(src)
        if len(attempts) == 1:
            os.unlink(src)
        real_link(src, dst)

    if how == "link-enoent":
        monkeypatch.setattr(os, "link", link_after_theft)
    else:
        monkeypatch.setattr(segment_file_module, "_locks", SimpleNamespace(lock=lock_after_theft))
    try:
        with SegmentEmitter(Options(prefix=tmp_path / "app.")) as e:
            e.emit_counter(Counter("c"), 1000)
            e.flush()
            assert e.path == str(tmp_path / "app.1000.prom")
            assert probe_other_thread(e.path) == "locked"
        assert len(attempts) == 2 and attempts[0] != attempts[1]  # a fresh temporary name
        assert (e.failures.read(), e.segments.read()) == (0, 1)
    finally:
        for fd in held:
            os.close(fd)
    assert [(s.name, s.timestamp_ms) for s in read_samples(tmp_path / "app.1000.prom")] == [
        ("c_total", 1000)
    ]
    assert hidden_temps(tmp_path) == []


def test_a_temporary_taken_every_time_gives_up_with_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retries are bounded: a Watcher taking every temporary ends in one counted SegmentError."""
    real_lock = _locks.lock
    calls: list[int] = []

    def always_stolen(fd: int, *, exclusive: bool, wait: bool) -> bool:
        calls.append(fd)
        for p in hidden_temps(tmp_path):
            steal(p)
        return real_lock(fd, exclusive=exclusive, wait=wait)

    monkeypatch.setattr(segment_file_module, "_locks", SimpleNamespace(lock=always_stolen))
    e = SegmentEmitter(Options(prefix=tmp_path / "app."))
    with pytest.raises(SegmentError, match=r"app\.1000\.prom.*hidden"):
        e.emit_counter(Counter("c"), 1000)
    assert 1 < len(calls) <= 1000
    assert e.failures.read() == 1
    assert list(tmp_path.iterdir()) == []


def test_emits_survive_a_watcher_that_takes_hidden_temporaries(tmp_path: Path) -> None:
    """Stress: a Rust-like Watcher consumes every entry it can lock, .tmp included, meanwhile."""
    stop = threading.Event()
    taken: dict[str, bytes] = {}
    deadline = time.monotonic() + 60

    def rust_watcher() -> None:  # offers every entry, hidden ones included: lock, read, unlink
        for _ in range(10_000_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            for name in os.listdir(tmp_path):
                try:
                    fd = os.open(tmp_path / name, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    if _locks.lock(fd, exclusive=False, wait=False):  # F_SETLK F_RDLCK
                        with os.fdopen(os.dup(fd), "rb") as f:
                            data = f.read()
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(tmp_path / name)
                            taken[name] = data
                finally:
                    os.close(fd)

    collector = Collector()
    c = collector.register(Counter("c"))
    thread = threading.Thread(target=rust_watcher)
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the two threads as finely as the GIL allows
    thread.start()
    try:
        with SegmentEmitter(Options(prefix=tmp_path / "app.", flush_interval=0.001)) as e:
            for now in range(1000, 1300):
                c.click()
                collector.emit(e, now)
    finally:
        stop.set()
        thread.join(timeout=60)
        sys.setswitchinterval(old_interval)
    assert not thread.is_alive()
    assert (e.failures.read(), e.segments.read()) == (0, 300)
    for p in segments(tmp_path):
        taken[p.name] = p.read_bytes()
    readings = sorted(
        (s.timestamp_ms, s.value)
        for name, data in taken.items()
        if name.endswith(".prom")
        for s in parse([data])
        if isinstance(s, Sample) and s.name == "c_total"
    )
    assert readings == [(now, now - 999) for now in range(1000, 1300)]
    assert hidden_temps(tmp_path) == []


def test_the_default_prefix_is_this_processs_own() -> None:
    """Two processes on the default options never share a source: the prefix carries the
    host and the pid (a shared one turned each drop between them into a counted restart)."""
    prefix = str(Options().prefix)
    assert prefix.startswith("biometrics.") and prefix.endswith(f".{os.getpid()}.")
