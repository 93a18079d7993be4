"""The journal on a failing state volume: appends are all-or-nothing; bad tails are logged."""

import errno
import json
import logging
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from biometrics import StateError
from biometrics.errors import SegmentError
from biometrics.exporter import DurableState, Store
from biometrics.exporter.snapshot import STATE_FORMAT

MAGIC = b"#@biometrics-journal "
IN_DURABLE = "biometrics.exporter.durable.os."  # what durable.py calls the OS through


def record(name: str, data: bytes) -> bytes:
    """One journal record as the format defines it: header line, then the bytes."""
    return MAGIC + f"{len(data)} {name}\n".encode() + data


def append_file(durable: DurableState, path: Path) -> None:
    with open(path, "rb") as f:
        durable.append(path.name, f, path.stat().st_size)


def fail_on_journal(
    real: Callable[..., object], journal: Path, calls: int, error: int = errno.ENOSPC
) -> Callable[..., object]:
    """``real`` failing with ``error`` for its first ``calls`` calls on the journal's fd."""
    left = [calls]

    def fake(fd: int, *args: object) -> object:
        mine = os.path.exists(journal) and os.path.samestat(os.fstat(fd), os.stat(journal))
        if left[0] > 0 and mine:
            left[0] -= 1
            raise OSError(error, os.strerror(error))
        return real(fd, *args)

    return fake


# -- a real file size limit (EFBIG), in a child process -----------------------------------------


def _child_file_size_limit(tmp: Path) -> None:
    """Append under RLIMIT_FSIZE cut mid-header and mid-data; report what the journal holds."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    a, b = tmp / "x.1.prom", tmp / "x.2.prom"
    a.write_bytes(b"a_total 1 1\n" * 10)
    b.write_bytes(b"b_total 2 2\n" * 500)
    header_b = len(record(b.name, b.read_bytes())) - b.stat().st_size
    durable = DurableState(tmp / "s.json")
    out: dict[str, object] = {}
    with durable:
        append_file(durable, a)
        durable.sync()
        good = os.path.getsize(durable.journal_path)
        for label, extra in (("mid-header", 5), ("mid-data", header_b + 100)):
            resource.setrlimit(resource.RLIMIT_FSIZE, (good + extra, hard))
            try:
                append_file(durable, b)
                out[label] = "no error"
            except OSError as e:
                out[label] = [type(e).__name__, e.errno, e.filename]
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            out[label + " journal"] = Path(durable.journal_path).read_bytes().decode("latin-1")
            out[label + " journal_bytes"] = durable.journal_bytes
        append_file(durable, b)
        durable.sync()
    out["replay"] = [[name, len(data)] for name, data in DurableState(tmp / "s.json").replay()]
    print(json.dumps(out))


def test_a_write_past_the_file_size_limit_leaves_only_whole_records(tmp_path: Path) -> None:
    """EFBIG mid-header or mid-data: StateError naming the journal, the file cut back exactly.

    Before the fix the header stayed in Python's buffer and reached the file later, so replay
    stopped at it and every later record was lost.
    """
    done = subprocess.run([sys.executable, __file__, "file-size-limit", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    journal = str(tmp_path / "s.json.journal")
    good = record("x.1.prom", b"a_total 1 1\n" * 10).decode("latin-1")
    for label in ("mid-header", "mid-data"):
        assert out[label] == ["StateError", errno.EFBIG, journal], label
        assert out[label + " journal"] == good, label
        assert out[label + " journal_bytes"] == len(good), label
    assert out["replay"] == [["x.1.prom", 120], ["x.2.prom", 6000]]


# -- injected failures (the local file system is what we talk to) -------------------------------


def test_a_failed_sync_cuts_the_journal_back_to_the_last_synced_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync failing: the batch's records are cut off, earlier synced ones kept, then retried."""
    durable = DurableState(tmp_path / "s.json")
    segs = [tmp_path / f"x.{i}.prom" for i in range(3)]
    for i, seg in enumerate(segs):
        seg.write_bytes(f"c_total {i} {i}\n".encode())
    journal = Path(durable.journal_path)
    with durable:
        append_file(durable, segs[0])
        durable.sync()
        synced = journal.read_bytes()
        append_file(durable, segs[1])
        append_file(durable, segs[2])
        monkeypatch.setattr(IN_DURABLE + "fsync", fail_on_journal(os.fsync, journal, 1))
        with pytest.raises(StateError) as raised:
            durable.sync()
        assert raised.value.errno == errno.ENOSPC
        assert raised.value.filename == str(journal)
        assert journal.read_bytes() == synced == record(segs[0].name, segs[0].read_bytes())
        assert durable.journal_bytes == len(synced)
        append_file(durable, segs[1])
        durable.sync()
    assert [name for name, _ in DurableState(tmp_path / "s.json").replay()] == [
        segs[0].name, segs[1].name]  # fmt: skip


def test_enospc_on_the_header_write_leaves_no_stray_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header is written unbuffered: a failed write never reaches the file later."""
    durable = DurableState(tmp_path / "s.json")
    seg = tmp_path / "x.1.prom"
    seg.write_bytes(b"c_total 1 1\n")
    journal = Path(durable.journal_path)
    with durable:
        monkeypatch.setattr(IN_DURABLE + "write", fail_on_journal(os.write, journal, 1))
        monkeypatch.setattr(IN_DURABLE + "sendfile", fail_on_journal(os.sendfile, journal, 1))
        for _ in range(2):  # the header's write fails, then the data's sendfile
            with pytest.raises(StateError, match="No space") as raised:
                append_file(durable, seg)
            assert raised.value.errno == errno.ENOSPC
            assert journal.read_bytes() == b""
            assert durable.journal_bytes == 0
        monkeypatch.undo()
        append_file(durable, seg)
        durable.sync()
    assert journal.read_bytes() == record(seg.name, seg.read_bytes())


def test_a_segment_that_shrinks_is_a_segment_error_and_nothing_is_kept(tmp_path: Path) -> None:
    """The source's fault, not the journal's: SegmentError (skip the file), journal untouched."""
    durable = DurableState(tmp_path / "s.json")
    seg = tmp_path / "x.1.prom"
    seg.write_bytes(b"c_total 1 1\n")
    with durable:
        with open(seg, "rb") as f, pytest.raises(SegmentError, match=r"x\.1\.prom") as raised:
            durable.append(seg.name, f, 1000)  # more than the file holds
        assert not isinstance(raised.value, StateError)  # the daemon retries those, not skips
        assert Path(durable.journal_path).read_bytes() == b""
        assert durable.journal_bytes == 0


# -- replay of a damaged journal ----------------------------------------------------------------

TAILS = {
    "torn header": b"#@biometrics-jour",
    "bad size": b"#@biometrics-journal 12x x.2.prom\nc_total 2 2\n",
    "huge size": b"#@biometrics-journal 99999999999999999999999999999 x.2.prom\nc_total 2 2\n",
    "short record": b"#@biometrics-journal 100 x.2.prom\npartial",
    "hole": b"\0" * 5000 + record("x.3.prom", b"c_total 3 3\n"),
    "no newline": b"#@biometrics-journal " + b"7" * 200_000,
}
REASONS = {
    "torn header": "torn header",
    "bad size": "bad size",
    "huge size": "bad size",
    "short record": "short record",
    "hole": "bad header",
    "no newline": "bad header",
}


@pytest.mark.parametrize("kind", sorted(TAILS))
def test_a_damaged_tail_is_cut_and_logged(
    tmp_path: Path, kind: str, events: list[logging.LogRecord]
) -> None:
    """Whole records replay; the rest is cut with a warning saying where, how much and why."""
    durable = DurableState(tmp_path / "s.json")
    good = record("x.1.prom", b"c_total 1 1\n")
    journal = Path(durable.journal_path)
    journal.write_bytes(good + TAILS[kind])
    with durable:
        assert list(durable.replay()) == [("x.1.prom", b"c_total 1 1\n")]
        assert durable.journal_bytes == len(good)
    assert journal.read_bytes() == good
    cuts = [r for r in events if r.levelno == logging.WARNING and "journal" in r.getMessage()]
    assert len(cuts) == 1, [r.getMessage() for r in events]
    fields = cuts[0].__dict__["fields"]
    assert fields["journal"] == str(journal)
    assert fields["offset"] == len(good)
    assert fields["cut_bytes"] == len(TAILS[kind])
    assert fields["records"] == 1
    assert REASONS[kind] in fields["reason"]


def test_a_whole_journal_is_replayed_without_a_warning(
    tmp_path: Path, events: list[logging.LogRecord]
) -> None:
    """No damage, no warning, nothing cut."""
    durable = DurableState(tmp_path / "s.json")
    whole = record("x.1.prom", b"c_total 1 1\n") + record("x.2.prom", b"")
    Path(durable.journal_path).write_bytes(whole)
    with durable:
        assert [name for name, _ in durable.replay()] == ["x.1.prom", "x.2.prom"]
    assert Path(durable.journal_path).read_bytes() == whole
    assert not [r for r in events if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("content", "advice"),
    [
        ("{not json", "move it aside"),
        ('{"format": "something else"}', "point --state elsewhere"),
        (json.dumps({"format": STATE_FORMAT, "version": 999}), "move it aside"),
    ],
)
def test_an_unusable_snapshot_names_the_file_and_says_what_to_do(
    tmp_path: Path, content: str, advice: str
) -> None:
    """Refused, named, with the way out; the file is left as it was."""
    state = tmp_path / "s.json"
    state.write_text(content)
    with DurableState(state) as durable, pytest.raises(StateError) as raised:
        durable.load(Store())
    assert str(state) in str(raised.value)
    assert advice in str(raised.value)
    assert state.read_text() == content


if __name__ == "__main__":
    if sys.argv[1] == "file-size-limit":
        _child_file_size_limit(Path(sys.argv[2]))
