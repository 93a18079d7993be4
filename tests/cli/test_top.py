"""``biometrics top --once``, in-process: against a spool, and against a live serve."""

import io
import re
import threading
import time
from pathlib import Path

import pytest

from biometrics import Collector, Counter, Histogram
from biometrics.cli import run
from biometrics.prometheus import Options, SegmentEmitter

from ..helpers import scrape, wait_for
from ..integration._prometheus import free_port
from ._helpers import error_line, port_of, run_in_thread


def _now() -> int:
    return time.time_ns() // 1_000_000


def _writer(spool: Path, stop: threading.Event, step: int) -> threading.Thread:
    """Emits jobs_total (+``step`` each time) and a latency histogram every 20 ms."""

    def emit() -> None:
        c = Collector()
        jobs = c.register(Counter("jobs"))
        latency = c.register(Histogram("latency.seconds", buckets=[0.1, 1]))
        with SegmentEmitter(Options(prefix=spool / "w.")) as e:
            for _ in range(3000):  # bounded: 60 s at most
                jobs.count(step)
                latency.observe(0.05)
                c.emit(e, _now())
                if stop.wait(0.02):
                    break

    thread = threading.Thread(target=emit)
    thread.start()
    return thread


def _rate(out: str, series: str) -> float:
    match = re.search(rf"^  {re.escape(series)} +(\S+) +(\d+)$", out, re.MULTILINE)
    assert match is not None, out
    return float(match[1])


def test_once_against_a_spool_prints_rates(tmp_path: Path) -> None:
    """Two readings --interval apart: the counter's rate is what the writer adds per second
    (50 every 20 ms: about 2,500/s; wide margins for a shared machine), the histogram's p50
    is in its first bucket, the source is live."""
    spool = tmp_path / "spool"
    spool.mkdir()
    stop = threading.Event()
    writer = _writer(spool, stop, 50)
    try:
        wait_for(lambda: list(spool.iterdir()), "a first segment")
        out = io.StringIO()
        assert run(["top", str(spool), "--once", "--interval", "0.5"], out) == 0
    finally:
        stop.set()
        writer.join(30)
    text = out.getvalue()
    assert 250 < _rate(text, "jobs_total") < 10_000, text
    assert re.search(r"^  latency_seconds +\S+ +0\.05 ", text, re.MULTILINE), text
    assert re.search(r"^  w +\d+\.\ds +1 +live$", text, re.MULTILINE), text
    assert "biometrics_collector" not in text and "PROBLEMS" not in text


def test_once_against_a_live_serve(tmp_path: Path) -> None:
    """The same view of serve's page: merged totals, exporter self-metrics left out."""
    spool = tmp_path / "spool"
    spool.mkdir()
    thread, stop, out, codes = run_in_thread(
        ["serve", str(spool), "--listen", "127.0.0.1:0", "--state", str(tmp_path / "s.json"),
         "--poll-interval", "20ms", "--log-level", "error"])  # fmt: skip
    writing = threading.Event()
    writer = _writer(spool, writing, 7)
    try:
        url = f"http://127.0.0.1:{port_of(out)}"
        wait_for(lambda: "jobs_total " in scrape(port_of(out)), "serve to show the counter")
        page = io.StringIO()
        assert run(["top", url, "--once", "--interval", "0.5", "--window", "0.5"], page) == 0
    finally:
        writing.set()
        writer.join(30)
        stop.set()
        thread.join(30)
    assert codes == [0]
    text = page.getvalue()
    assert text.startswith(f"biometrics top {url}/metrics  ")
    assert 35 < _rate(text, "jobs_total") < 10_000, text
    assert "biometrics_exporter" not in text and "SOURCES" not in text


def test_once_against_nothing_listening_exits_1(tmp_path: Path) -> None:
    """The frame says why; the exit code says it failed."""
    url = f"http://127.0.0.1:{free_port()}/metrics"
    out = io.StringIO()
    assert run(["top", url, "--once", "--interval", "50ms"], out) == 1
    assert f"PROBLEMS (1)\n  GET {url}: " in out.getvalue()


def test_usage_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A spool that is not there is exit 2 naming it; a bad interval is a usage error."""
    assert run(["top", str(tmp_path / "gone"), "--once"], io.StringIO()) == 2
    assert error_line(capsys) == f"biometrics top: {tmp_path / 'gone'}: not a directory (a " \
        "spool) or a URL"  # fmt: skip
    with pytest.raises(SystemExit) as exited:
        run(["top", str(tmp_path), "--interval", "0"], io.StringIO())
    assert exited.value.code == 2
    assert "'0' is not a positive number of seconds" in capsys.readouterr().err


def test_stop_during_the_wait_ends_with_130(tmp_path: Path) -> None:
    """A stop (Ctrl-C's stand-in) between the two readings ends the command early."""
    stop = threading.Event()
    stop.set()
    assert (
        run(["top", str(tmp_path), "--once", "--interval", "1m"], io.StringIO(), stop=stop) == 130
    )
