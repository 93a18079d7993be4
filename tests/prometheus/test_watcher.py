"""The Watcher: claim-and-offer over a spool, and what it refuses to open."""

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from biometrics import Counter
from biometrics.prometheus import Options, Reader, Sample, SegmentEmitter, Watcher, parse
from biometrics.prometheus.watcher import Held


def write(path: Path, text: str, mtime: float) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def test_oldest_first_and_only_finished_regular_prom_files(tmp_path: Path) -> None:
    """mtime then name order; hidden, non-.prom, directories and symlinks are ignored."""
    write(tmp_path / "b.2.prom", "b 1 2\n", 100)
    write(tmp_path / "a.3.prom", "a 1 3\n", 100)
    write(tmp_path / "c.1.prom", "c 1 1\n", 50)
    write(tmp_path / ".x.1.prom.tmp", "", 1)
    write(tmp_path / ".hidden.prom", "", 1)
    write(tmp_path / "notes.txt", "", 1)
    (tmp_path / "dir.prom").mkdir()
    (tmp_path / "link.prom").symlink_to(tmp_path / "c.1.prom")
    w = Watcher(tmp_path)
    assert [Path(p).name for p in w.candidates()] == ["c.1.prom", "a.3.prom", "b.2.prom"]
    seen: list[str] = []

    def consume(r: Reader) -> None:
        seen.append(Path(r.path).name)
        r.unlink()

    for _ in range(10):  # bounded: three segments to take
        if not w.ingest_one(consume):
            break
    assert seen == ["c.1.prom", "a.3.prom", "b.2.prom"]
    assert w.ingest_one(consume) is False


def test_locked_files_are_skipped_and_unconsumed_files_offered_again(tmp_path: Path) -> None:
    """A writer's segment is skipped without waiting; a file left in place comes back."""
    write(tmp_path / "done.1.prom", "d 1 1\n", 10)
    w = Watcher(tmp_path)
    with SegmentEmitter(Options(prefix=tmp_path / "live.")) as e:
        e.emit_counter(Counter("c"), 5)
        e.flush()
        offered: list[str] = []
        start = time.monotonic()
        assert w.ingest_one(lambda r: offered.append(Path(r.path).name))
        assert w.ingest_one(lambda r: offered.append(Path(r.path).name))
        assert time.monotonic() - start < 5
        assert offered == ["done.1.prom", "done.1.prom"]
        assert [Path(r.path).name for r in w.segments()] == ["done.1.prom"]
    assert sorted(Path(r.path).name for r in w.segments()) == ["done.1.prom", "live.5.prom"]


def test_watch_reacts_to_new_segments_and_stops(tmp_path: Path) -> None:
    """A segment finished while watching is consumed promptly; stop ends the loop."""
    stop = threading.Event()
    got: list[str] = []

    def consume(r: Reader) -> None:
        got.append(r.read().decode())
        r.unlink()
        stop.set()

    t = threading.Thread(target=lambda: Watcher(tmp_path).watch(consume, stop=stop, timeout=30))
    t.start()
    with SegmentEmitter(Options(prefix=tmp_path / "w.")) as e:
        e.emit_counter(Counter("c"), 1)
    t.join(timeout=30)
    assert not t.is_alive()
    assert got == ["# TYPE c_total counter\nc_total 0 1\n# EMITTED 1\n"]


CONSUMER = """
import sys, time
from pathlib import Path
from biometrics.prometheus import Watcher
out = open(sys.argv[2], "w")
def consume(reader):
    out.write(Path(reader.path).name + "\\n")
    time.sleep(0.001)
    reader.unlink()
Watcher(sys.argv[1]).watch(consume, timeout=float(sys.argv[3]), poll_interval=0.01)
out.close()
"""


def test_two_watchers_in_two_processes_never_share_a_file(tmp_path: Path) -> None:
    """Exclusive claim plus inode check: every segment consumed exactly once."""
    spool = tmp_path / "spool"
    spool.mkdir()
    names = [f"s.{i}.prom" for i in range(300)]
    for name in names:
        (spool / name).write_text("x 1 1\n")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONSUMER, str(spool), str(tmp_path / f"out{i}"), "3"]
        )
        for i in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=60) == 0
    a = (tmp_path / "out0").read_text().split()
    b = (tmp_path / "out1").read_text().split()
    assert not set(a) & set(b)
    assert sorted(a + b) == sorted(names)
    assert len(a) + len(b) == len(names)


KILLED_WRITER = """
import os, sys
from biometrics import Collector, Counter
from biometrics.prometheus import SegmentEmitter, Options
collector = Collector()
for i in range(100):
    collector.register(Counter(f"c.{i}"))
emitter = SegmentEmitter(Options(prefix=sys.argv[1]))
collector.emit(emitter, 1000)
fd = os.open(emitter.path, os.O_WRONLY | os.O_APPEND)
os.write(fd, b"c_torn 12")   # a write cut short mid-line
print(emitter.path, flush=True)
sys.stdin.readline()
"""


def test_sigkilled_writer_releases_its_lock_and_complete_lines_survive(tmp_path: Path) -> None:
    """The kernel drops the lock; the watcher gets the file; only the torn line is lost."""
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "k.")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    path = proc.stdout.readline().strip()
    w = Watcher(tmp_path)
    assert w.ingest_one(lambda r: None) is False  # still locked by the live writer
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    results = []

    def consume(r: Reader) -> None:
        p = parse(r)
        results.append(([s for s in p if isinstance(s, Sample)], p.problems, p.truncated))

    assert w.ingest_one(consume)
    got, problems, truncated = results[0]
    assert truncated and len(problems) == 1
    assert len(got) == 100 + 9
    assert all(s.timestamp_ms == 1000 for s in got)
    assert Path(path).exists()


# -- what a hostile spool writer can plant -----------------------------------------------------

NOT_REGULAR = """
import json, os, sys
from biometrics.errors import SegmentError
from biometrics.prometheus import Reader, Watcher

spool = sys.argv[1]
out = {}
for name in ("fifo.1.prom", "zero.1.prom", "dir.1.prom"):
    path = os.path.join(spool, name)
    out[name + " claim"] = repr(Watcher(spool).claim(path))
    try:
        out[name + " try_open"] = repr(Reader.try_open(path))
    except SegmentError as e:
        out[name + " try_open"] = ["SegmentError", e.filename, str(e)]
print(json.dumps(out))
"""


def test_a_fifo_or_a_link_in_a_segments_place_is_never_opened_or_waited_on(
    tmp_path: Path,
) -> None:
    """claim() says None, Reader refuses: a FIFO opened read-only would wait for a writer.

    The name may have been a regular file when listed and swapped since, so claim() and
    Reader check the open file, not the listing.  In a child with a deadline: a regression
    blocks instead of failing.
    """
    spool = tmp_path / "spool"
    spool.mkdir()
    os.mkfifo(spool / "fifo.1.prom")
    (spool / "zero.1.prom").symlink_to("/dev/zero")
    (spool / "dir.1.prom").mkdir()
    done = subprocess.run([sys.executable, "-c", NOT_REGULAR, str(spool)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for name in ("fifo.1.prom", "zero.1.prom", "dir.1.prom"):
        assert out[name + " claim"] == "None", name
        kind, filename, _ = out[name + " try_open"]
        assert (kind, filename) == ("SegmentError", str(spool / name)), name
    assert "symbolic link" in out["zero.1.prom try_open"][2]
    assert "not a regular file" in out["fifo.1.prom try_open"][2]


def test_strays_are_reported_once_until_they_change(tmp_path: Path) -> None:
    """Links, FIFOs and directories named like segments: listed once each, again if replaced."""
    (tmp_path / "ok.1.prom").write_text("x 1 1\n")
    (tmp_path / "link.1.prom").symlink_to(tmp_path / "ok.1.prom")
    os.mkfifo(tmp_path / "fifo.1.prom")
    (tmp_path / "dir.1.prom").mkdir()
    (tmp_path / ".hidden.prom").symlink_to("/dev/zero")
    (tmp_path / "other.txt").symlink_to("/dev/zero")
    w = Watcher(tmp_path)
    assert [Path(p).name for p in w.candidates()] == ["ok.1.prom"]
    assert w.strays() == [
        (str(tmp_path / "dir.1.prom"), "directory"),
        (str(tmp_path / "fifo.1.prom"), "FIFO"),
        (str(tmp_path / "link.1.prom"), "symlink"),
    ]
    w.candidates()
    w.backlog()
    assert w.strays() == []
    (tmp_path / "link.1.prom").unlink()
    (tmp_path / "link.1.prom").symlink_to("/etc/passwd")
    (tmp_path / "dir.1.prom").rmdir()
    w.candidates()
    assert w.strays() == [(str(tmp_path / "link.1.prom"), "symlink")]
    (tmp_path / "dir.1.prom").mkdir()  # gone, then back: reported again
    w.candidates()
    assert w.strays() == [(str(tmp_path / "dir.1.prom"), "directory")]


UNREADABLE = """
import json, os
from biometrics.errors import SegmentError
from biometrics.prometheus import Watcher

if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
try:
    print(json.dumps(["claimed", repr(Watcher("spool").claim("spool/locked.1.prom"))]))
except SegmentError as e:
    print(json.dumps(["SegmentError", e.errno, e.filename, str(e)]))
"""


def test_a_segment_it_may_not_read_is_an_error_not_silence(tmp_path: Path) -> None:
    """Mode 000 for a non-root watcher: SegmentError naming the file and the fix, not None.

    None meant "held by a writer, try later": the file was passed over forever without a word.
    As root the child drops to nobody; its working directory lets it reach the spool.
    """
    area = tmp_path / "area"
    spool = area / "spool"
    spool.mkdir(parents=True)
    os.chmod(area, 0o755)
    locked = spool / "locked.1.prom"
    locked.write_text("x 1 1\n")
    os.chmod(locked, 0)
    done = subprocess.run([sys.executable, "-c", UNREADABLE], cwd=area, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    kind, code, filename, message = json.loads(done.stdout)
    assert (kind, code, filename) == ("SegmentError", errno.EACCES, "spool/locked.1.prom")
    assert "read permission" in message


def test_a_held_segment_is_handed_over_open_never_locked(tmp_path: Path) -> None:
    """claim_or_hold: a writer's segment comes back Held (its fd and fstat, readable, the lock
    still the writer's); a finished one is claimed; a link or a vanished name is None."""
    w = Watcher(tmp_path)
    with SegmentEmitter(Options(prefix=tmp_path / "live.")) as e:
        e.emit_counter(Counter("c"), 5)
        e.flush()
        assert e.path is not None
        held = w.claim_or_hold(e.path)
        assert isinstance(held, Held)
        with held:
            size = os.path.getsize(e.path)
            assert held.stat.st_size == size
            assert held.stat.st_ino == os.stat(e.path).st_ino
            assert held.pread(size + 100, 0) == Path(e.path).read_bytes()
            assert held.pread(4, 2) == Path(e.path).read_bytes()[2:6]
            assert Reader.try_open(e.path) is None  # still the writer's
        assert held.fd == -1
        assert w.claim(e.path) is None  # claim alone never hands out a Held
        (tmp_path / "link.9.prom").symlink_to(e.path)
        assert w.claim_or_hold(str(tmp_path / "link.9.prom")) is None
        assert w.claim_or_hold(str(tmp_path / "gone.9.prom")) is None
        path = e.path
    claimed = w.claim_or_hold(path)
    assert isinstance(claimed, Reader)
    claimed.close()
