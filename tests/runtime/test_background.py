import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from biometrics import Collector, Counter, Histogram, InvalidValueError
from biometrics.prometheus import Options, Parse, Reader, Sample, child_prefix, parse
from biometrics.runtime import Emission, emit_every

from ..helpers import spool_samples, wait_for


def samples(directory: Path, name: str) -> dict[str, list[tuple[float, int | None]]]:
    """Per segment file name: the (value, ts) of every sample called ``name``."""
    return {
        path.name: [(s.value, s.timestamp_ms) for s in found]
        for path, found in spool_samples(directory, name).items()
    }


def run_script(source: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_child_prefix_swaps_the_pid_component_or_appends_one() -> None:
    """A forked child's prefix replaces the parent's pid component, or gains one when the prefix
    has none (a number that is not the parent's pid is kept).
    """
    assert child_prefix("spool/web.host.100.", 100, 205) == "spool/web.host.205."
    assert child_prefix("biometrics.", 100, 205) == "biometrics.205."
    assert child_prefix("app.1000.", 100, 205) == "app.1000.205."


def test_interval_must_be_positive() -> None:
    """An interval of 0 is refused at construction with InvalidValueError."""
    with pytest.raises(InvalidValueError, match="positive"):
        Emission(0, collector=Collector())


def test_emits_every_interval_then_once_more_on_stop(tmp_path: Path) -> None:
    """Periodic emissions, then a final one at stop, each in a finished (readable) segment."""
    collector = Collector()
    hits = collector.register(Counter("hits"))
    emission = emit_every(0.02, collector=collector, options=Options(prefix=tmp_path / "app."))
    hits.count(7)
    wait_for(lambda: any(v == 7 for vs in samples(tmp_path, "hits_total").values() for v, _ in vs),
             "a periodic emission")  # fmt: skip
    hits.click()
    emission.stop()
    assert emission.path is None
    values = [v for vs in samples(tmp_path, "hits_total").values() for v, _ in vs]
    assert values[-1] == 8  # the final emission
    for path in tmp_path.glob("*.prom"):
        with Reader.try_open(path) as reader:  # type: ignore[union-attr]  # finished: unlocked
            assert reader is not None
    emission.stop()  # idempotent


def test_finish_each_finishes_every_emissions_segment(tmp_path: Path) -> None:
    """With ``finish_each=True`` the segment an emission wrote is unlocked right after it.

    One segment per emission, each holding exactly that emission's reading, named in rising
    order; nothing stays open between emissions (so nothing is left for a fork to inherit).
    """
    collector = Collector()
    hits = collector.register(Counter("hits"))
    now = [1_000_000]
    emission = Emission(10, collector=collector, options=Options(prefix=tmp_path / "app."),
                        system=False, clock=lambda: now[0], finish_each=True)  # fmt: skip
    assert emission.finish_each is True
    for n in (1, 2, 3):
        hits.click()
        assert emission.emit() is True
        assert emission.path is None, "no segment left open after an emission"
        files = sorted(tmp_path.glob("app.*.prom"), key=lambda f: int(f.name.split(".")[1]))
        assert len(files) == n
        reader = Reader.try_open(files[-1])
        assert reader is not None, "the emission's segment is finished (unlocked)"
        with reader:
            got = [
                s.value for s in parse(reader) if isinstance(s, Sample) and s.name == "hits_total"
            ]
        assert got == [n]
        now[0] += 10_000
    emission.stop()
    assert len(list(tmp_path.glob("app.*.prom"))) == 4  # the final emission's own segment


def test_a_segment_lives_across_emissions_for_up_to_flush_interval(tmp_path: Path) -> None:
    """The default: emissions share one locked segment, finished after the last emission the
    next would find past ``flush_interval``; each emission is in the file when it returns.
    """
    collector = Collector()
    hits = collector.register(Counter("hits"))
    now = [1_000_000]
    emission = Emission(
        4,
        collector=collector,
        options=Options(prefix=tmp_path / "app.", flush_interval=10),
        system=False,
        clock=lambda: now[0],
    )
    assert emission.finish_each is False
    path = ""
    for n in (1, 2):  # 0 s, 4 s: the next emission (4 s on) is still within flush_interval
        hits.click()
        assert emission.emit() is True
        now[0] += 4_000
        path = emission.path or ""
        assert path and len(list(tmp_path.glob("*.prom"))) == 1
        assert Reader.try_open(path) is None, "still locked: being written"
        with open(path, "rb") as f:  # a tailing reader: the emission is whole, marker last
            text = f.read().decode()
        stamp = now[0] - 4_000
        assert text.endswith(f"\n# EMITTED {stamp}\n")
        assert f"\nhits_total {n} {stamp}\n" in text.rpartition("# EMITTED")[0]
    hits.click()
    assert emission.emit() is True  # 8 s: the next (12 s) would be past 10 s: finished now
    assert emission.path is None
    with Reader.try_open(path) as reader:  # type: ignore[union-attr]
        assert reader is not None
    assert emission.emit() is True  # 12 s: a new segment, with every series again
    assert emission.path is not None and emission.path != path
    assert "hits_total 3 " in Path(emission.path).read_text()
    emission.stop()
    assert emission.path is None


def test_system_sensors_are_registered_and_refreshed(tmp_path: Path) -> None:
    """By default an emission registers the system and runtime sensors and polls them before
    writing: resident memory and user CPU time are non-zero in the segment.
    """
    collector = Collector()
    with emit_every(3600, collector=collector, options=Options(prefix=tmp_path / "a.")):
        pass
    got = samples(tmp_path, "process_resident_memory_bytes")
    assert next(v for vs in got.values() for v, _ in vs) > 0
    utime = [v for vs in samples(tmp_path, "biometrics_sys_utime_total").values() for v, _ in vs]
    assert utime and utime[0] > 0


def test_failures_are_counted_logged_once_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A spool that cannot be made (its parent is a file) fails the emission: False, ENOTDIR
    logged once (rate limited) and every failure counted by kind; once the parent is out of
    the way the next emission makes the spool and carries the failure count.
    """
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the spool's parent should be\n")
    spool = blocker / "spool"
    collector = Collector()
    hits = collector.register(Counter("hits"))
    emission = Emission(
        3600, collector=collector, options=Options(prefix=spool / "app."), system=False
    )
    with caplog.at_level(logging.WARNING, logger="biometrics"):
        assert emission.emit() is False
        assert emission.emit() is False
    reports = [r for r in caplog.records if "emission failed (ENOTDIR)" in r.getMessage()]
    assert len(reports) == 1, "one report per kind, rate limited"
    assert str(spool) in reports[0].getMessage()
    failure = next(s for s in collector.sensors() if s.label == "biometrics.emit.failure")
    assert isinstance(failure, Counter)
    assert dict(failure.labels) == {"kind": "ENOTDIR"}
    assert failure.read() == 2
    blocker.unlink()
    hits.click()
    assert emission.emit() is True  # retried: the spool is made, the emission simply works
    emission.stop()
    text = "".join(p.read_text() for p in spool.glob("*.prom"))
    assert "hits_total 1 " in text
    assert 'biometrics_emit_failure_total{kind="ENOTDIR"} 2 ' in text


def test_a_sensor_that_raises_never_reaches_the_host(tmp_path: Path) -> None:
    """A sensor whose read() raises makes emit() return False and counts a RuntimeError failure;
    nothing propagates to the caller.
    """

    class Broken(Histogram):
        def read(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    collector = Collector()
    collector.register(Broken("h"))
    emission = Emission(3600, collector=collector, options=Options(prefix=tmp_path / "a."))
    assert emission.emit() is False
    emission.stop()
    kinds = {
        dict(s.labels).get("kind")
        for s in collector.sensors()
        if s.label == "biometrics.emit.failure"
    }
    assert kinds == {"RuntimeError"}


FORK = """
import os, sys, time
import biometrics as b
from biometrics.prometheus import Options
from biometrics.runtime import emit_every
spool = sys.argv[1]
c = b.Collector()
hits = c.register(b.Counter("hits"))
h = c.register(b.Histogram("latency"))
hits.count(5)
h.observe(1.0)
em = emit_every(0.02, collector=c, options=Options.per_process(spool, "web", host="h"),
                finish_each=False)  # a segment stays open: the child must not write it
deadline = time.monotonic() + 10
while em.path is None and time.monotonic() < deadline:
    time.sleep(0.005)
pid = os.fork()
if pid == 0:
    hits.count(1000)
    h.observe(2.0)
    sys.exit(0)  # atexit: the child's last emission
_, status = os.waitpid(pid, 0)
hits.click()
em.stop()
print(os.getpid(), pid, status)
"""


def test_fork_child_writes_its_own_source_and_never_the_parents_segment(tmp_path: Path) -> None:
    """After os.fork the child emits under its own pid's prefix with counts from the fork on, and
    never writes, flushes or duplicates lines into the parent's open segment.
    """
    done = run_script(FORK, str(tmp_path))
    assert done.returncode == 0, done.stderr
    parent, child, status = (int(x) for x in done.stdout.split())
    assert status == 0
    got = samples(tmp_path, "hits_total")
    mine = {n: v for n, v in got.items() if n.startswith(f"web.h.{parent}.")}
    theirs = {n: v for n, v in got.items() if n.startswith(f"web.h.{child}.")}
    assert mine and theirs and len(mine) + len(theirs) == len(got)
    parent_values = [v for vs in mine.values() for v, _ in vs]
    child_values = [v for vs in theirs.values() for v, _ in vs]
    assert parent_values[-1] == 6 and max(parent_values) == 6  # no child count leaked in
    assert child_values[-1] == 1000  # counted from the fork, not from the parent's 5
    for name in mine:  # the child did not flush the parent's buffered lines at its exit
        lines = [ln for ln in (tmp_path / name).read_text().splitlines() if not ln.startswith("#")]
        assert len(lines) == len(set(lines))
    counts = samples(tmp_path, "latency_count")
    assert [v for n, vs in counts.items() if n.startswith(f"web.h.{child}.") for v, _ in vs][
        -1
    ] == 1


MULTIPROCESSING = """
import multiprocessing, sys, time
import biometrics as b
from biometrics.prometheus import Options
from biometrics.runtime import emit_every
c = b.Collector()
jobs = c.register(b.Counter("jobs"))
em = emit_every(3600, collector=c, options=Options(prefix=sys.argv[1] + "/batch."), system=False)

def work(n):
    jobs.count(n)

if __name__ == "__main__":
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=work, args=(n,)) for n in (10, 20, 30)]
    for p in procs: p.start()
    for p in procs: p.join(30)
    print(",".join(str(p.pid) for p in procs), [p.exitcode for p in procs])
    em.stop()
"""


def test_multiprocessing_children_emit_on_their_way_out(tmp_path: Path) -> None:
    """multiprocessing children leave by os._exit: no atexit, so a finalizer emits."""
    done = run_script(MULTIPROCESSING, str(tmp_path))
    assert done.returncode == 0, done.stderr
    pids = done.stdout.split()[0].split(",")
    got = samples(tmp_path, "jobs_total")
    finals = {pid: [v for n, vs in got.items() if n.startswith(f"batch.{pid}.") for v, _ in vs]
              for pid in pids}  # fmt: skip
    assert sorted(vs[-1] for vs in finals.values()) == [10, 20, 30]


AT_EXIT = """
import sys
import biometrics as b
from biometrics.prometheus import Options
from biometrics.runtime import emit_every
c = b.Collector()
c.register(b.Counter("done")).count(42)
emit_every(3600, collector=c, options=Options(prefix=sys.argv[1] + "/job."), system=False)
"""


def test_interpreter_exit_emits_once_more(tmp_path: Path) -> None:
    """A process that never stops its emission still writes a final finished segment at
    interpreter exit, and leaves no temporary file behind.
    """
    done = run_script(AT_EXIT, str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert [v for vs in samples(tmp_path, "done_total").values() for v, _ in vs] == [42]
    assert os.listdir(tmp_path) == [p.name for p in tmp_path.glob("job.*.prom")]


FULL_DISK = """
import resource, signal, sys
import biometrics as b
from biometrics.prometheus import Options
from biometrics.runtime import Emission
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
c = b.Collector()
for i in range(200):
    c.register(b.Counter("filler", labels={"i": str(i)}))
em = Emission(3600, collector=c, options=Options(prefix=sys.argv[1] + "/app."), system=False)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
print(em.emit(), em.emit())
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print(em.emit())
em.stop()
"""


def test_a_full_disk_is_counted_and_the_next_emission_recovers(tmp_path: Path) -> None:
    """Writes failing mid-segment (EFBIG, as ENOSPC would) abandon it; later ones start anew."""
    done = run_script(FULL_DISK, str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "True"]
    assert done.stderr.count("emission failed (EFBIG)") == 1, done.stderr
    texts = [p.read_text() for p in sorted(tmp_path.glob("app.*.prom"))]
    assert len(texts) >= 2, "the failed segment was abandoned and a new one started"
    last = texts[-1]
    assert 'biometrics_emit_failure_total{kind="EFBIG"} 2 ' in last
    for path in tmp_path.glob("app.*.prom"):
        with open(path, "rb") as f:
            parsed = Parse(f)
            list(parsed)
        assert parsed.malformed == [], "an abandoned segment keeps only whole lines (+ a torn tail)"


def test_stop_never_waits_longer_than_its_timeout_for_a_stuck_emission(tmp_path: Path) -> None:
    """An emission stuck in a write (a stalled disk) must not hang the host's exit: the final
    emission gives up after ``timeout``, counted as a failure; the complete lines stay."""
    collector = Collector()
    collector.register(Counter("jobs")).click()
    emission = Emission(60.0, collector=collector, options=Options(prefix=tmp_path / "app."))
    emission.start()
    assert emission.emit() is True
    emission._busy.acquire()  # what a write stuck in the kernel looks like to stop()
    try:
        started = time.monotonic()
        emission.stop(timeout=0.2)
        took = time.monotonic() - started
    finally:
        emission._busy.release()
    assert took < 5.0, took
    failures = emission.failures.counter("TimeoutError")
    assert failures is not None and failures.read() == 1
    written = spool_samples(tmp_path, "jobs_total")
    assert [sample.value for samples in written.values() for sample in samples] == [1.0]
