import os
import stat
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from biometrics import Collector, Counter, Gauge, Histogram, InvalidValueError
from biometrics.prometheus import Emitter, Options, Reader, Sample, SegmentError, Watcher, parse


def read_samples(path: Path) -> list[Sample]:
    with open(path, "rb") as f:
        return [s for s in parse(f) if isinstance(s, Sample)]


def segments(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".prom"))


def test_segment_name_content_and_metadata_once_per_family(tmp_path: Path) -> None:
    """<prefix><epoch_ms>.prom, timestamped lines, HELP/TYPE once per family per segment."""
    c = Counter("app.requests", help="Requests.")
    c.count(2)
    with Emitter(Options(prefix=tmp_path / "app.")) as e:
        e.emit_counter(c, 1000)
        c.click()
        e.emit_counter(c, 1001)
        assert e.path == str(tmp_path / "app.1000.prom")
    assert [p.name for p in segments(tmp_path)] == ["app.1000.prom"]
    assert (tmp_path / "app.1000.prom").read_text() == (
        "# HELP app_requests Requests.\n"
        "# TYPE app_requests counter\n"
        "app_requests 2 1000\n"
        "app_requests 3 1001\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["app.1000.prom"]  # no temporary left


def test_name_clash_takes_the_next_millisecond_and_never_overwrites(tmp_path: Path) -> None:
    """An existing file is left untouched; the new segment is named one ms later."""
    (tmp_path / "app.1000.prom").write_text("not ours\n")
    (tmp_path / "app.1001.prom").write_text("not ours either\n")
    with Emitter(Options(prefix=tmp_path / "app.")) as e:
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
    e = Emitter(Options(prefix=tmp_path / "app."))
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
        assert r.read() == b"# TYPE c counter\nc 0 5\n"


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

    with Emitter(Options(prefix=tmp_path / "py.")) as e:
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
    with Emitter(Options(prefix=tmp_path / "app.", flush_interval=0.001)) as e:
        for now in range(1, 6):
            e.emit_counter(Counter("c"), now)
    assert seen == ["locked"] * 5
    assert Watcher(tmp_path).candidates() == [str(p) for p in segments(tmp_path)]


def test_rotation_by_size_and_age_never_splits_a_batch(tmp_path: Path) -> None:
    """A batch (one now_ms) stays in one segment; the next later reading rotates."""
    collector = Collector()
    for i in range(50):
        collector.register(Counter(f"c{i}"))
    with Emitter(Options(prefix=tmp_path / "s.", segment_size=100)) as e:
        collector.emit(e, 1000)
        assert e.path == str(tmp_path / "s.1000.prom")
        collector.emit(e, 1000)
        collector.emit(e, 1001)
    names = [p.name for p in segments(tmp_path)]
    assert names == ["s.1000.prom", "s.1001.prom"]
    assert {s.timestamp_ms for s in read_samples(tmp_path / "s.1000.prom")} == {1000}

    with Emitter(Options(prefix=tmp_path / "t.", flush_interval=timedelta(seconds=1))) as e:
        for now in (0, 500, 999, 1000, 1500, 2100):
            e.emit_gauge(Gauge("g"), now)
    assert [p.name for p in segments(tmp_path) if p.name.startswith("t.")] == [
        "t.0.prom", "t.1000.prom", "t.2100.prom",
    ]  # fmt: skip


def test_finished_segments_are_never_written_again(tmp_path: Path) -> None:
    """After rotation the old file's bytes do not change."""
    with Emitter(Options(prefix=tmp_path / "s.", flush_interval=0.001)) as e:
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
        with Emitter(Options(prefix=tmp_path / "a.")) as e:
            e.emit_counter(Counter("c"), 1)
        with Emitter(Options(prefix=tmp_path / "b.", mode=0o600)) as e:
            e.emit_counter(Counter("c"), 1)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.1.prom").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.1.prom").stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o750


def test_options_validate_and_accept_timedelta() -> None:
    """Bad options fail at construction with a clear error."""
    assert Options(flush_interval=timedelta(minutes=1)).flush_interval == 60.0
    assert Options().flush_interval_ms == 30_000
    for bad in ({"flush_interval": 0}, {"segment_size": 0}, {"prefix": "spool/"}):
        with pytest.raises(InvalidValueError):
            Options(**bad)  # type: ignore[arg-type]


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
from biometrics.prometheus import Emitter, Options, SegmentError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
collector = Collector()
for i in range(300):
    collector.register(Counter(f"counter.number.{i}"))
emitter = Emitter(Options(prefix=sys.argv[1]))
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
    e = Emitter(Options(prefix=tmp_path / "missing" / "x."))
    with pytest.raises(SegmentError, match="missing"):
        e.emit_counter(Counter("c"), 1)
    assert e.failures.read() == 1


def test_histograms_round_trip_through_a_segment(tmp_path: Path) -> None:
    """What the emitter writes, the parser reads back exactly."""
    h = Histogram("lat", labels={"route": "/x"})
    for x in (0.0042, 0.0042, 0.3, 7.0):
        h.observe(x)
    with Emitter(Options(prefix=tmp_path / "h.")) as e:
        e.emit_histogram(h, 77)
    got = {(s.name, s.labels): s.value for s in read_samples(tmp_path / "h.77.prom")}
    assert got[("lat_bucket", (("le", "0.0042"), ("route", "/x")))] == 2
    assert got[("lat_bucket", (("le", "+Inf"), ("route", "/x")))] == 4
    assert got[("lat_sum", (("route", "/x"),))] == 0.0042 * 2 + 0.3 + 7.0


FORKED_EMITTER = """
import os, sys
from biometrics import Counter
from biometrics.prometheus import Emitter, Options
c = Counter("c")
e = Emitter(Options(prefix=sys.argv[1] + "/app."))
c.count(5)
e.emit_counter(c, 1000)  # buffered, not yet written
pid = os.fork()
if pid == 0:
    c.count(100)
    e.emit_counter(c, 2000)
    sys.exit(0)  # the exit-time finalizer finishes the *child's* segment only
os.waitpid(pid, 0)
e.emit_counter(c, 3000)
e.close()
print(os.getpid(), pid)
"""


def test_a_forked_child_never_writes_the_parents_segment(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", FORKED_EMITTER, str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    _, child = done.stdout.split()
    assert (tmp_path / "app.1000.prom").read_text().splitlines()[-2:] == ["c 5 1000", "c 5 3000"]
    assert (tmp_path / f"app.{child}.2000.prom").read_text().splitlines()[-1] == "c 105 2000"
    assert len(segments(tmp_path)) == 2
