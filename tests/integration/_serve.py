"""Helpers for integration tests: a `biometrics serve` subprocess and emitting processes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ..helpers import scrape, series_value

WORKER = """
import sys, time
from biometrics import Collector, Counter, Histogram, Moments
from biometrics.prometheus import Options, SegmentEmitter
spool, name, n, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = Collector()
jobs = c.register(Counter("jobs.done_total", help="Jobs done."))
work = c.register(Histogram("work.seconds", help="Work time."))
size = c.register(Moments("work.size", help="Work size."))
with SegmentEmitter(Options(prefix=f"{spool}/{name}.", flush_interval=0.05)) as e:
    for step in range(steps):
        for _ in range(n):
            jobs.click()
            work.observe(0.5)
            size.add(2.0)
        c.emit(e, time.time_ns() // 1_000_000)
        time.sleep(0.02)
"""


def start_workers(
    spool: Path, count: int, per_step: int, steps: int
) -> list[subprocess.Popen[bytes]]:
    """``count`` processes, each counting ``per_step * steps`` jobs in ``steps`` emits."""
    return [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(spool), f"w{i}", str(per_step), str(steps)]
        )
        for i in range(count)
    ]


class Serve:
    """`biometrics serve` as a child process on a free loopback port."""

    def __init__(self, spool: Path, state: Path, *extra: str) -> None:
        self.spool, self.state, self.extra = spool, state, extra
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> Serve:
        argv = [sys.executable, "-m", "biometrics", "serve", str(self.spool)]
        argv += ["--listen", "127.0.0.1:0", "--state", str(self.state), "--poll-interval", "20ms"]
        argv += ["--checkpoint-interval", "200ms", "--log-level", "warning", *self.extra]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until serve prints its address
        match = re.search(r"http://127.0.0.1:(\d+)/metrics", line)
        assert match is not None, f"serve printed {line!r}"
        self.port = int(match[1])
        return self

    def metrics(self) -> str:
        """The page ``serve`` answers now."""
        return scrape(self.port)

    def value(self, series: str) -> float | None:
        """``series``'s value on the page now; None while it is not there."""
        return series_value(self.metrics(), series)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(30)
