"""SpoolConsumer.claim_or_held: a writer's segment is handed over for tailing, nothing else."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from biometrics import Counter
from biometrics._daemon.consumer import Claimed, Places, SpoolConsumer, Words, Writing
from biometrics.prometheus import _locks


class Metrics:
    def __init__(self) -> None:
        self.failures = Counter("failures")
        self.quarantined = Counter("quarantined")


def held(path: Path) -> int:
    """``path`` created and write-locked, as its writer holds it; the fd is the lock."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    assert _locks.lock(fd, exclusive=True, wait=False)
    os.write(fd, b"c_total 1 5\n# EMITTED 5\n")
    return fd


def consumer(tmp_path: Path) -> SpoolConsumer:
    spool = tmp_path / "spool"
    spool.mkdir()
    return SpoolConsumer(str(spool), Places(str(tmp_path / "q")), Metrics(), Words("done", "-"))


def test_only_the_writers_lock_makes_a_writing(tmp_path: Path) -> None:
    """Held and named: Writing with the name's source and time.  Held but nameless, or skipped:
    None, never quarantined while held.  Finished: claimed as ever."""
    c = consumer(tmp_path)
    spool = tmp_path / "spool"
    fds = [held(spool / "w.h.1.1000.prom"), held(spool / "notes.prom"), held(spool / "s.7.prom")]
    try:
        got = c.claim_or_held(str(spool / "w.h.1.1000.prom"))
        assert isinstance(got, Writing)
        with got.held:
            assert (got.source, got.default_ms, got.path) == (
                "w.h.1", 1000, str(spool / "w.h.1.1000.prom"))  # fmt: skip
        assert c.claim_or_held(str(spool / "notes.prom")) is None
        assert (spool / "notes.prom").exists() and not (tmp_path / "q").exists()
        c.skip(str(spool / "s.7.prom"), "test", OSError(errno.EIO, "test"))
        assert c.claim_or_held(str(spool / "s.7.prom")) is None
        assert c.claim(str(spool / "w.h.1.1000.prom")) is None
    finally:
        for fd in fds:
            os.close(fd)
    claimed = c.claim_or_held(str(spool / "w.h.1.1000.prom"))
    assert isinstance(claimed, Claimed)
    claimed.reader.close()
