"""A spool whose writers are hostile: nothing a daemon writes may go through a planted link.

Anyone who can write the spool can plant names in it.  The daemons run as root, so a file they
open through such a name (a quarantine sidecar, a journal) could be any file on the host.  Each
test plants something, runs the real daemon code over real files, and checks that a victim file
outside the spool is untouched and that the refusal was reported.
"""

from __future__ import annotations

import json
import logging
import os
import select
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from biometrics import BiometricsError, Collector, Counter, StateError
from biometrics._daemon.spool import SkipList
from biometrics.exporter import Exporter, ExporterOptions
from biometrics.prometheus import Options, SegmentEmitter

from ..helpers import page_value

SECRET = b"root:$6$hunter2:19000:0:99999:7:::\n"
NOBODY = 65534


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the spool that a root daemon must never write (think /etc/shadow)."""
    directory = tmp_path / "victim"
    directory.mkdir()
    secret = directory / "secret"
    secret.write_bytes(SECRET)
    return secret


def entries(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every entry with its bytes, mtime and mode: what "unchanged" means for a directory."""
    out = {}
    for p in directory.iterdir():
        st = p.lstat()
        data = p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        out[p.name] = (data, st.st_mtime_ns, st.st_mode)
    return out


def malformed(spool: Path, name: str = "w9.1000.prom") -> Path:
    """A segment with a bad line: the daemon must quarantine it."""
    path = spool / name
    path.write_bytes(b"# TYPE ok_total counter\nok_total 2 1000\nthis is not a sample\n")
    return path


def good(spool: Path, source: str = "w1", now_ms: int = 1000, count: int = 3) -> Path:
    c = Collector()
    c.register(Counter("jobs_total")).count(count)
    with SegmentEmitter(Options(prefix=str(spool / f"{source}."))) as e:
        c.emit(e, now_ms)
        assert e.path is not None
        return Path(e.path)


def fields(record: logging.LogRecord) -> dict[str, object]:
    found: dict[str, object] = record.__dict__.get("fields", {})
    return found


def run_passes(options: ExporterOptions, passes: int = 1) -> str:
    """Open an exporter, run ``passes`` ingest passes, close it; its page."""
    exporter = Exporter(options)
    exporter.open()
    try:
        for i in range(passes):
            exporter.ingest_pass(now_ms=2000 + i)
        return exporter.page()
    finally:
        exporter.close()


# -- the quarantine -----------------------------------------------------------------------------


def test_a_planted_sidecar_link_is_never_written_through(
    options: ExporterOptions, victim: Path
) -> None:
    """``<name>.error`` planted as a link to a victim: the sidecar goes under a fresh name."""
    quarantine = Path(options.quarantine_path)
    quarantine.mkdir()
    (quarantine / "w9.1000.prom.error").symlink_to(victim)
    (quarantine / "w9.1000.prom.error.1").symlink_to(victim)
    before = entries(victim.parent)
    bad = malformed(Path(options.spool))
    page = run_passes(options)
    assert entries(victim.parent) == before
    assert (quarantine / "w9.1000.prom.error").is_symlink()
    written = [p for p in quarantine.iterdir() if not p.is_symlink()]
    assert sorted(p.name for p in written) == ["w9.1000.prom", "w9.1000.prom.error.2"]
    assert f"{bad}:3: not a sample line" in (quarantine / "w9.1000.prom.error.2").read_text()
    assert page_value(page, "biometrics_exporter_quarantined_segments_total") == 1


def test_a_planted_segment_name_in_the_quarantine_is_not_replaced(
    options: ExporterOptions, victim: Path
) -> None:
    """The quarantined segment takes the next free name; the planted link stays as it was."""
    quarantine = Path(options.quarantine_path)
    quarantine.mkdir()
    (quarantine / "w9.1000.prom").symlink_to(victim)
    before = entries(victim.parent)
    malformed(Path(options.spool))
    run_passes(options)
    assert entries(victim.parent) == before
    assert os.readlink(quarantine / "w9.1000.prom") == str(victim)
    assert (quarantine / "w9.1000.prom.1").read_bytes().endswith(b"this is not a sample\n")
    assert (quarantine / "w9.1000.prom.1.error").is_file()


def test_a_quarantine_link_is_refused_and_the_segment_left_in_the_spool(
    options: ExporterOptions, victim: Path, events: list[logging.LogRecord]
) -> None:
    """SPOOL/quarantine -> elsewhere: nothing moves there; logged once, counted, skip-listed."""
    spool = Path(options.spool)
    (spool / "quarantine").symlink_to(victim.parent, target_is_directory=True)
    before = entries(victim.parent)
    bad = malformed(spool)
    page = run_passes(options, passes=3)
    assert entries(victim.parent) == before
    assert bad.read_bytes().endswith(b"this is not a sample\n")
    assert page_value(page, "biometrics_exporter_quarantined_segments_total") == 0
    assert page_value(page, "biometrics_exporter_ingest_failures_total") == 1
    refused = [r for r in events if r.levelno >= logging.ERROR and fields(r)["path"] == str(bad)]
    assert len(refused) == 1, [r.getMessage() for r in events]
    error = str(fields(refused[0])["error"])
    assert "symbolic link" in error and str(spool / "quarantine") in error
    assert "--quarantine" in error


@pytest.mark.parametrize("place", ["archive", "outbox"])
def test_an_archive_or_outbox_link_is_refused(
    options: ExporterOptions, victim: Path, place: str
) -> None:
    """The consumed segment stays in the spool rather than being moved through a link."""
    spool = Path(options.spool)
    link = spool / place
    link.symlink_to(victim.parent, target_is_directory=True)
    setattr(options, place, str(link))
    before = entries(victim.parent)
    segment = good(spool)
    page = run_passes(options, passes=2)
    assert entries(victim.parent) == before
    assert segment.exists()
    assert page_value(page, "jobs_total") == 3  # journaled: counted once, kept in the spool
    assert page_value(page, "biometrics_exporter_ingest_failures_total") == 1


def test_a_plain_file_where_the_quarantine_dir_should_be_is_refused(
    options: ExporterOptions,
) -> None:
    """Not a directory: refused like a link, never written into or replaced."""
    spool = Path(options.spool)
    (spool / "quarantine").write_bytes(b"planted\n")
    bad = malformed(spool)
    page = run_passes(options)
    assert (spool / "quarantine").read_bytes() == b"planted\n"
    assert bad.exists()
    assert page_value(page, "biometrics_exporter_ingest_failures_total") == 1


# -- the state directory ------------------------------------------------------------------------


def test_a_default_state_dir_planted_as_a_link_is_refused(tmp_path: Path, victim: Path) -> None:
    """SPOOL/.biometrics -> elsewhere: serve stops with the path and what to do."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / ".biometrics").symlink_to(victim.parent, target_is_directory=True)
    before = entries(victim.parent)
    exporter = Exporter(ExporterOptions(spool=str(spool)))
    with pytest.raises(StateError) as raised:
        exporter.open()
    assert entries(victim.parent) == before
    message = str(raised.value)
    assert str(spool / ".biometrics") in message and "symbolic link" in message
    assert "--state" in message


@pytest.mark.parametrize("name", ["s.json.lock", "s.json.journal"])
def test_a_planted_lock_or_journal_link_is_refused(
    options: ExporterOptions, victim: Path, name: str
) -> None:
    """The journal is truncated and appended to, the lock created: never through a link."""
    state_dir = Path(options.state_path).parent
    state_dir.mkdir()
    (state_dir / name).symlink_to(victim)
    before = entries(victim.parent)
    with pytest.raises(StateError, match="symbolic link") as raised:
        Exporter(options).open()
    assert str(state_dir / name) in str(raised.value)
    assert entries(victim.parent) == before


def test_a_journal_with_another_hard_link_is_refused(options: ExporterOptions) -> None:
    """A hard link planted as the journal would let a cut-back truncate the linked file."""
    state_dir = Path(options.state_path).parent
    state_dir.mkdir()
    other = state_dir / "elsewhere"
    other.write_bytes(b"#@biometrics-journal garbage that a cut would truncate\n")
    os.link(other, state_dir / "s.json.journal")
    with pytest.raises(StateError, match="hard link"):
        Exporter(options).open()
    assert other.read_bytes().startswith(b"#@biometrics-journal garbage")


def test_a_planted_snapshot_temp_link_is_not_written_through(
    options: ExporterOptions, victim: Path
) -> None:
    """The checkpoint's temporary file is created afresh; a link in its place is replaced."""
    state_dir = Path(options.state_path).parent
    state_dir.mkdir()
    (state_dir / f"s.json.tmp.{os.getpid()}").symlink_to(victim)
    before = entries(victim.parent)
    good(Path(options.spool))
    run_passes(options)
    assert entries(victim.parent) == before
    snapshot = json.loads(Path(options.state_path).read_text())
    assert snapshot["format"]
    assert sorted(p.name for p in state_dir.iterdir()) == [
        "s.json", "s.json.journal", "s.json.lock"]  # fmt: skip


# -- the shipper --------------------------------------------------------------------------------


def test_the_shipper_never_quarantines_through_a_link(tmp_path: Path, victim: Path) -> None:
    """A nameless segment is quarantined at claim: through a link it is refused and kept."""
    from biometrics.ship import RemoteWriteOptions, ShipOptions, Shipper

    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "quarantine").symlink_to(victim.parent, target_is_directory=True)
    nameless = spool / "notes.prom"
    nameless.write_bytes(b"ok_total 1\n")
    before = entries(victim.parent)
    remote = RemoteWriteOptions("http://127.0.0.1:9/api/v1/write", timeout=1)
    with Shipper(ShipOptions(str(spool), remote, state=str(tmp_path / "ship.json"))) as s:
        for _ in range(2):
            s.ship_pass()
        assert s.metrics.failures.read() == 1
        assert s.metrics.quarantined.read() == 0
    assert entries(victim.parent) == before
    assert nameless.exists()
    (spool / "quarantine").unlink()
    q = spool / "quarantine"
    q.mkdir()
    (q / "notes.prom.error").symlink_to(victim)
    nameless.write_bytes(b"ok_total 2\n")  # changed: tried again
    with Shipper(ShipOptions(str(spool), remote, state=str(tmp_path / "ship.json"))) as s:
        s.ship_pass()
        assert s.metrics.quarantined.read() == 1
    assert entries(victim.parent) == before
    assert (q / "notes.prom").read_bytes() == b"ok_total 2\n"
    assert "no <epoch_ms>" in (q / "notes.prom.error.1").read_text()


# -- skip until changed -------------------------------------------------------------------------


def test_a_skipped_file_is_tried_again_when_its_permissions_change(tmp_path: Path) -> None:
    """chmod (how an unreadable segment is fixed) changes neither mtime nor size, only ctime."""
    path = tmp_path / "x.1.prom"
    path.write_bytes(b"x 1 1\n")
    os.chmod(path, 0)
    skipped = SkipList()
    skipped.add(str(path))
    assert skipped.skipped(str(path))
    os.chmod(path, 0o644)
    assert not skipped.skipped(str(path))


def test_a_skipped_link_is_judged_by_the_link_itself(tmp_path: Path, victim: Path) -> None:
    """The skip list never stats through a link: the target's changes are not the entry's."""
    link = tmp_path / "x.1.prom"
    link.symlink_to(victim)
    skipped = SkipList()
    skipped.add(str(link))
    victim.write_bytes(SECRET + b"more\n")
    assert skipped.skipped(str(link))


# -- a segment serve may not read ---------------------------------------------------------------

UNREADABLE = """
import json, os, sys
from biometrics.exporter import Exporter, ExporterOptions
from biometrics._daemon.logfmt import configure

configure("info", sys.stderr)
if os.geteuid() == 0:  # drop to nobody: the spool may be listed, the segment not read
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
exporter = Exporter(ExporterOptions(spool="spool", state="state/s.json"))
exporter.open()

def report():
    m = exporter.metrics
    print(json.dumps([m.failures.read(), m.segments.read()]), flush=True)

for i in range(3):
    exporter.ingest_pass(now_ms=2000 + i)
report()
sys.stdin.readline()  # the segment is made readable meanwhile
exporter.ingest_pass(now_ms=3000)
report()
exporter.close()
"""


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of the child's stdout, or fail after ``timeout`` seconds (never hang)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the child printed nothing in time"
    return proc.stdout.readline()


def test_an_unreadable_segment_is_logged_once_counted_and_retried_when_it_changes(
    tmp_path: Path,
) -> None:
    """Mode 000 under a non-root serve: EACCES logged with what to do, then fixed by chmod.

    As root the child drops to nobody after setting up; relative paths from its working
    directory let it reach the spool without search permission on the test's parents.
    """
    area = tmp_path / "area"
    spool, state = area / "spool", area / "state"
    for d in (area, spool, state):
        d.mkdir()
    os.chmod(area, 0o755)
    ok = good(spool, "ok")
    locked = spool / "locked.1000.prom"
    locked.write_bytes(b"# TYPE locked_total counter\nlocked_total 4 1000\n")
    os.chmod(locked, 0)
    os.chmod(ok, 0o644)
    if os.geteuid() == 0:
        os.chown(spool, NOBODY, NOBODY)
        os.chown(state, NOBODY, NOBODY)
    proc = subprocess.Popen([sys.executable, "-c", UNREADABLE], cwd=area, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert json.loads(read_line(proc, 30)) == [1, 1]  # one failure, the good one consumed
        os.chmod(locked, 0o644)
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert json.loads(read_line(proc, 30)) == [1, 2]
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == 0, err
    lines = [ln for ln in err.splitlines() if "locked.1000.prom" in ln]
    assert len(lines) == 1, err
    assert "level=error" in lines[0] and "errno=EACCES" in lines[0]
    assert "read permission" in lines[0]
    assert not locked.exists()


# -- cat, check and backfill --------------------------------------------------------------------

TOOLS = """
import json, sys
from biometrics.files import check, merged_page, timeline

spool, link = sys.argv[1], sys.argv[2]
files, problems = check([spool])
page, cat_problems = merged_page([spool])
lines = timeline([spool])
print(json.dumps({
    "files": files,
    "problems": problems,
    "cat": [str(p) for p in cat_problems],
    "raw": [str(p) for p in lines.problems],
    "page": page,
    "backfill": lines.render(openmetrics=True),
    "explicit": check([link]),
}))
"""


def test_tools_skip_what_is_not_a_regular_file_and_say_so(tmp_path: Path, victim: Path) -> None:
    """Links (to a secret, /dev/zero, a directory), a FIFO and a directory named like a segment.

    Before, ``check`` printed the secret's first line as a problem, blocked forever on the FIFO
    and /dev/zero, and stopped with exit 2 at the directory.  Run in a child with a deadline so
    a regression fails instead of hanging.
    """
    spool = tmp_path / "spool"
    spool.mkdir()
    good(spool, "good", 1000, 7)
    planted = {
        "a.1000.prom": "symlink",
        "d.1000.prom": "symlink",
        "f.1000.prom": "FIFO",
        "x.1000.prom": "directory",
        "z.1000.prom": "symlink",
    }
    (spool / "a.1000.prom").symlink_to(victim)
    (spool / "d.1000.prom").symlink_to(victim.parent, target_is_directory=True)
    os.mkfifo(spool / "f.1000.prom")
    (spool / "x.1000.prom").mkdir()
    (spool / "z.1000.prom").symlink_to("/dev/zero")
    done = subprocess.run([sys.executable, "-c", TOOLS, str(spool), str(spool / "a.1000.prom")],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in done.stdout + done.stderr
    out = json.loads(done.stdout)
    expected = sorted(
        f"{spool / name}:0: not a regular file ({kind}); skipped" for name, kind in planted.items()
    )
    assert out["files"] == 6
    for key in ("problems", "cat", "raw"):
        assert sorted(p.split("skipped")[0] + "skipped" for p in out[key]) == expected, key
    links = [p for p in out["problems"] if "(symlink)" in p]
    assert links and all("never read through a link" in p for p in links)
    assert "jobs_total 7\n" in out["page"]
    assert "jobs_total 7 1\n" in out["backfill"]
    files, problems = out["explicit"]
    assert files == 1
    assert len(problems) == 1
    assert problems[0].startswith(f"{spool / 'a.1000.prom'}:0: not a regular file (symlink)")
    assert "name the file it points to" in problems[0]


def test_tools_still_name_a_missing_path(tmp_path: Path) -> None:
    """A path that does not exist is an error naming it, not a problem to skip."""
    from biometrics.files import check

    with pytest.raises(BiometricsError, match="gone: no such file"):
        check([tmp_path / "gone"])
