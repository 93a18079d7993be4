import io
import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from biometrics import __version__
from biometrics.cli import duration_ms, main, run

from .exporter._receiver import Receiver


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version and exits 0."""
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"biometrics {__version__}"


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """--help and no arguments both describe the tool."""
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "demo" in capsys.readouterr().out
    out = io.StringIO()
    assert run([], out) == 0
    assert "usage: biometrics" in out.getvalue()


def run_in_thread(
    argv: list[str],
) -> tuple[threading.Thread, threading.Event, io.StringIO, list[int]]:
    """Start a long-running command; returns once it printed the port it serves on."""
    out, stop, codes = io.StringIO(), threading.Event(), []
    thread = threading.Thread(target=lambda: codes.append(run(argv, out, stop=stop)))
    thread.start()
    deadline = time.monotonic() + 30
    while "serving http://" not in out.getvalue():
        assert thread.is_alive() and time.monotonic() < deadline, out.getvalue()
        time.sleep(0.02)
    return thread, stop, out, codes


def port_of(out: io.StringIO) -> int:
    match = re.search(r"serving http://127.0.0.1:(\d+)/metrics", out.getvalue())
    assert match is not None
    return int(match[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def test_demo_serves_its_workers_metrics() -> None:
    """The main job: workers emit, serve merges, /metrics shows their requests, Ctrl-C stops."""
    thread, stop, out, codes = run_in_thread(["demo", "--workers", "2", "--listen", "127.0.0.1:0",
                                              "--log-level", "warning"])  # fmt: skip
    try:
        port = port_of(out)
        deadline = time.monotonic() + 60
        while "http_requests_total{" not in (page := scrape(port)):
            assert time.monotonic() < deadline, page
            time.sleep(0.1)
        assert "http_request_duration_seconds_bucket{" in page
        assert "http_response_bytes_mean " in page
    finally:
        stop.set()
        thread.join(30)
    assert codes == [0]


def test_serve_runs_until_stopped_and_writes_state(tmp_path: Path) -> None:
    """serve binds, answers, and on stop leaves a state snapshot behind."""
    state = tmp_path / "state.json"
    thread, stop, out, codes = run_in_thread(
        ["serve", str(tmp_path / "spool"), "--listen", "127.0.0.1:0", "--state", str(state),
         "--log-level", "error"])  # fmt: skip
    assert "biometrics_exporter_sources 0" in scrape(port_of(out))
    stop.set()
    thread.join(30)
    assert codes == [0]
    assert state.exists()


def test_serve_refuses_a_state_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second serve on the same state exits 1 with a message saying what to do."""
    state = tmp_path / "state.json"
    argv = ["serve", str(tmp_path), "--listen", "127.0.0.1:0", "--state", str(state),
            "--log-level", "error"]  # fmt: skip
    thread, stop, _, _ = run_in_thread(argv)
    try:
        assert run(argv, io.StringIO()) == 1
        assert "give this one its own --state" in capsys.readouterr().err
    finally:
        stop.set()
        thread.join(30)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "x", "--forget-after", "soon"], "is not a duration"),
        (["serve", "x", "--listen", "nowhere"], "is not HOST:PORT"),
        (["serve", "x", "--gauge", "temp=avg"], "is not PATTERN=MODE"),
        (["ship", "x", "--url", "http://h/", "--label", "novalue"], "is not NAME=VALUE"),
        (["ship", "x"], "the following arguments are required: --url"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], message: str,
                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """Malformed options are usage errors that say what was wrong."""
    with pytest.raises(SystemExit) as info:
        run(argv, io.StringIO())
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_durations() -> None:
    """Durations are summed unit terms."""
    assert duration_ms("1h30m") == 5_400_000
    assert duration_ms("250ms") == 250
    assert duration_ms("1.5s") == 1500


def test_ship_once_delivers_and_exits_0(tmp_path: Path) -> None:
    """ship --once: every sample to the receiver, spool emptied, own metrics written."""
    spool, own = tmp_path / "spool", tmp_path / "own"
    spool.mkdir()
    (spool / "web.1700000000000.prom").write_text('a_total{route="/"} 3 1700000000000\n')
    receiver = Receiver()
    try:
        code = run(["ship", str(spool), "--url", receiver.url, "--once", "--source-label", "src",
                    "--label", "dc=eu", "--self-metrics-dir", str(own), "--log-level", "error"],
                   io.StringIO())  # fmt: skip
    finally:
        receiver.close()
    assert code == 0
    assert receiver.accepted() == {
        (("__name__", "a_total"), ("dc", "eu"), ("route", "/"), ("src", "web")):
            [(1_700_000_000_000, 3.0)]
    }  # fmt: skip
    assert list(spool.glob("*.prom")) == []
    own_text = "".join(p.read_text() for p in own.glob("*.prom"))
    assert "biometrics_ship_samples_sent_total 1 " in own_text


def test_ship_once_exits_1_when_something_was_quarantined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "web.1700000000000.prom").write_text("a_total 3\n")
    receiver = Receiver(answer=lambda _n, _s: (400, {}, "out of bounds"))
    try:
        code = run(["ship", str(spool), "--url", receiver.url, "--once", "--log-level", "error"],
                   io.StringIO())  # fmt: skip
    finally:
        receiver.close()
    assert code == 1
    assert (spool / "quarantine" / "web.1700000000000.prom.error").exists()
    assert run(["ship", str(spool), "--url", "http://x/", "--source-label", "a-b"],
               io.StringIO()) == 2  # fmt: skip
    assert "label name 'a-b' is invalid" in capsys.readouterr().err


def test_serve_with_ship_url_serves_and_ships_the_same_segments(tmp_path: Path) -> None:
    """One daemon: the page shows the merged counter and the remote gets every sample."""
    spool = tmp_path / "spool"
    spool.mkdir()
    for i, name in enumerate(["a.1700000000000.prom", "b.1700000000001.prom"]):
        (spool / name).write_text(
            f"# TYPE jobs_total counter\njobs_total {i + 2} {1700000000000 + i}\n"
        )
    receiver = Receiver()
    thread, stop, out, codes = run_in_thread(
        ["serve", str(spool), "--listen", "127.0.0.1:0", "--ship-url", receiver.url,
         "--source-label", "source", "--log-level", "error"])  # fmt: skip
    try:
        port = port_of(out)
        deadline = time.monotonic() + 30
        while len(receiver.accepted()) < 2 or "jobs_total 5" not in (page := scrape(port)):
            assert time.monotonic() < deadline, receiver.accepted()
            time.sleep(0.05)
        assert "biometrics_ship_samples_sent_total 2" in page
    finally:
        stop.set()
        thread.join(30)
        receiver.close()
    assert codes == [0]
    assert receiver.accepted() == {
        (("__name__", "jobs_total"), ("source", "a")): [(1_700_000_000_000, 2.0)],
        (("__name__", "jobs_total"), ("source", "b")): [(1_700_000_000_001, 3.0)],
    }
    assert list(spool.glob("*.prom")) == []
    assert list((spool / ".biometrics" / "outbox").glob("*.prom")) == []
