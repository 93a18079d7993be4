"""The real ``biometrics serve`` over a spool a hostile writer has been planting things in.

Anyone who can write the spool can plant links, FIFOs and directories under segment names, a
link where the quarantine directory goes, links where the quarantine's files go.  serve runs
as root: it must change nothing outside the spool, keep serving the good writers' data exactly,
and say what it refused.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from biometrics import Collector, Counter
from biometrics.prometheus import Options, SegmentEmitter

from ..helpers import scrape, series_value, wait_for

SECRET = b"root:$6$hunter2:19000:0:99999:7:::\n"
BAD = b"# TYPE bad_total counter\nbad_total 1 1000\nthis is not a sample\n"
T0 = 1_700_000_000_000
DEADLINE = 10.0


def state_of(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every entry's bytes (regular files), mtime and mode: what "unchanged" means."""
    out = {}
    for p in directory.iterdir():
        st = p.lstat()
        data = p.read_bytes() if p.is_file() and not p.is_symlink() else b""
        out[p.name] = (data, st.st_mtime_ns, st.st_mode)
    return out


def test_serve_over_a_hostile_spool_changes_nothing_outside_it(tmp_path: Path) -> None:
    """Links, a FIFO, a directory segment, a linked quarantine, linked sidecar names.

    Phase one: the quarantine is a link, so the malformed segment must stay in the spool.
    Phase two: the quarantine is a real directory with links planted at the names serve will
    want; a second malformed segment is quarantined beside them.  Throughout, a real SegmentEmitter
    writes good segments whose counter must come out exact.
    """
    started = time.monotonic()
    spool, state, victims = tmp_path / "spool", tmp_path / "state", tmp_path / "victims"
    for d in (spool, state, victims):
        d.mkdir()
    secret = victims / "secret"
    secret.write_bytes(SECRET)
    before = state_of(victims)
    (spool / "a.1000.prom").symlink_to(secret)
    (spool / "z.1000.prom").symlink_to("/dev/zero")
    (spool / "d.1000.prom").symlink_to(victims, target_is_directory=True)
    os.mkfifo(spool / "f.1000.prom")
    (spool / "x.1000.prom").mkdir()
    (spool / "quarantine").symlink_to(victims, target_is_directory=True)
    (spool / "bad.1000.prom").write_bytes(BAD)
    log = tmp_path / "serve.log"
    argv = [sys.executable, "-m", "biometrics", "serve", str(spool), "--listen",
            "127.0.0.1:0", "--state", str(state / "s.json"), "--poll-interval", "20ms",
            "--log-level", "warning"]  # fmt: skip
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], DEADLINE)
        assert ready, "serve printed no address"
        match = re.search(r"http://127.0.0.1:(\d+)/metrics", proc.stdout.readline())
        assert match is not None
        port = int(match[1])
        deadline = started + DEADLINE

        collector = Collector()
        jobs = collector.register(Counter("good.jobs_total"))
        with SegmentEmitter(Options(prefix=spool / "good.", flush_interval=0.05)) as emitter:
            for step in range(10):  # 100 ms apart in stamps: a new segment each time
                jobs.count(2)
                collector.emit(emitter, T0 + step * 100)
                if step == 4:
                    wait_for(lambda: "bad.1000.prom" in log.read_text(),
                             "the refused quarantine to be logged",
                             timeout=deadline - time.monotonic())  # fmt: skip
                    (spool / "quarantine").unlink()
                    quarantine = spool / "quarantine"
                    quarantine.mkdir()
                    (quarantine / "bad2.1000.prom.error").symlink_to(secret)
                    (spool / "bad2.1000.prom").write_bytes(BAD)

        wait_for(lambda: series_value(scrape(port), "good_jobs_total") == 20, "the good counter",
                 timeout=deadline - time.monotonic())  # fmt: skip
        wait_for((quarantine / "bad2.1000.prom.error.1").exists,
                 "the second malformed segment to be quarantined",
                 timeout=deadline - time.monotonic())  # fmt: skip
        text = scrape(port)
    finally:
        proc.terminate()
        code = proc.wait(DEADLINE)
    assert code == 0
    assert time.monotonic() - started < 15

    assert state_of(victims) == before
    assert secret.read_bytes() == SECRET
    assert series_value(text, "good_jobs_total") == 20
    assert series_value(text, "bad_total") == 2  # the good lines of both malformed segments, once
    # Refused, not followed: the first bad segment is still in the spool; the second is
    # quarantined beside the planted link, with its sidecar under a fresh name.
    assert (spool / "bad.1000.prom").read_bytes() == BAD
    assert (quarantine / "bad2.1000.prom").read_bytes() == BAD
    assert os.readlink(quarantine / "bad2.1000.prom.error") == str(secret)
    assert "not a sample line" in (quarantine / "bad2.1000.prom.error.1").read_text()
    for name in ("a.1000.prom", "z.1000.prom", "d.1000.prom", "f.1000.prom", "x.1000.prom"):
        assert os.path.lexists(spool / name), name

    lines = log.read_text().splitlines()
    refusals = [ln for ln in lines if "bad.1000.prom" in ln and "level=error" in ln]
    assert len(refusals) == 1, lines
    assert f"refusing {spool / 'quarantine'}: it is a symbolic link" in refusals[0]
    for name in ("a.1000.prom", "z.1000.prom", "d.1000.prom", "f.1000.prom", "x.1000.prom"):
        strays = [ln for ln in lines if f"path={spool / name} " in ln]
        assert len(strays) == 1, (name, lines)
        assert "not a regular file" in strays[0]
    assert any("bad2.1000.prom.error was taken" in ln for ln in lines), lines
    assert "Traceback" not in log.read_text()
