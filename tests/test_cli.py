import argparse
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from biometrics import __version__
from biometrics.cli import duration_ms, listen_address, main, run

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
    """serve --create makes the spool, binds, answers, and on stop leaves a state snapshot."""
    state = tmp_path / "state.json"
    thread, stop, out, codes = run_in_thread(
        ["serve", str(tmp_path / "spool"), "--create", "--listen", "127.0.0.1:0", "--state",
         str(state), "--log-level", "error"])  # fmt: skip
    assert "biometrics_exporter_sources 0" in scrape(port_of(out))
    stop.set()
    thread.join(30)
    assert codes == [0]
    assert state.exists()
    assert (tmp_path / "spool").is_dir()


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
        (["serve", "x", "--listen", "nowhere"], "has no port"),
        (["serve", "x", "--gauge", "temp=avg"], "is not PATTERN=MODE"),
        (["ship", "x", "--url", "http://h/", "--label", "novalue"], "is not NAME=VALUE"),
        (["ship", "x"], "the following arguments are required: --url"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], message: str,
                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """Malformed options are usage errors that say what was wrong, in one line."""
    with pytest.raises(SystemExit) as info:
        run(argv, io.StringIO())
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


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


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """What a command printed on stderr, asserted to be one line."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        (":9464", ("", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_listen_takes_host_port_all_interfaces_and_bracketed_v6(
    text: str, address: tuple[str, int]
) -> None:
    """:PORT is every interface (host ""), as Go exporters take it; [V6] loses its brackets."""
    assert listen_address(text) == address


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://127.0.0.1:9464", "is a URL"),
        ("127.0.0.1:http", "not a number from 0 to 65535"),
        ("127.0.0.1:65536", "not a number from 0 to 65535"),
        ("127.0.0.1", "has no port"),
        ("::1:9464", "without brackets"),
        ("[nope]:9464", "not an IPv6 address"),
        ("[::1]", "is not [IPV6]:PORT"),
        ("no-such-host.invalid:9464", "does not resolve"),
    ],
)
def test_listen_refuses_anything_else_in_one_line(
    text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A URL, a bad or missing port, an unresolvable host: exit 2, one line, no traceback."""
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        listen_address(text)
    with pytest.raises(SystemExit) as info:
        run(["serve", "spool", "--listen", text], io.StringIO())
    assert info.value.code == 2
    assert message in error_line(capsys)


def test_serve_listens_on_a_bracketed_v6_address(tmp_path: Path) -> None:
    """[::1]:0 binds the bare v6 address and prints a URL with the brackets back."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    thread, stop, out, codes = run_in_thread(
        ["serve", str(tmp_path), "--listen", "[::1]:0", "--log-level", "error"])  # fmt: skip
    try:
        match = re.search(r"serving http://\[::1\]:(\d+)/metrics", out.getvalue())
        assert match is not None, out.getvalue()
        with urllib.request.urlopen(f"http://[::1]:{match[1]}/metrics", timeout=10) as r:
            assert b"biometrics_exporter_sources 0" in r.read()
    finally:
        stop.set()
        thread.join(30)
    assert codes == [0]


def test_serve_needs_an_existing_spool_directory_unless_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo is not created and watched forever; a file is not blamed on --listen."""
    typo, notes = tmp_path / "typo", tmp_path / "notes.txt"
    notes.write_text("not a spool\n")
    out = io.StringIO()
    assert run(["serve", str(typo), "--listen", "127.0.0.1:0"], out) == 2
    err = error_line(capsys)
    assert f"spool {typo}: no such directory; create it or pass --create" in err
    assert not typo.exists()
    assert run(["serve", str(notes), "--listen", "127.0.0.1:0"], out) == 2
    err = error_line(capsys)
    assert f"spool {notes} is a file, not a directory" in err and "--listen" not in err
    assert out.getvalue() == "", "nothing was served"


@pytest.mark.parametrize("where", ["state.json", "state.json.journal", "state.json.lock"])
def test_serve_names_a_state_file_that_is_a_directory_before_listening(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state problem is reported as one, with the path, before "serving" is printed."""
    (tmp_path / ".biometrics" / where).mkdir(parents=True)
    out = io.StringIO()
    assert run(["serve", str(tmp_path), "--listen", "127.0.0.1:0"], out) == 1
    err = error_line(capsys)
    assert f"{tmp_path / '.biometrics' / where} is a directory" in err
    assert "--listen" not in err and "point --state elsewhere" in err
    assert out.getvalue() == ""


def test_serve_names_a_state_directory_it_cannot_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--state under a file: the state directory is named, and the fix is --state."""
    (tmp_path / "notes.txt").write_text("")
    state = tmp_path / "notes.txt" / "state.json"
    out = io.StringIO()
    argv = ["serve", str(tmp_path), "--listen", "127.0.0.1:0", "--state", str(state)]
    assert run(argv, out) == 1
    err = error_line(capsys)
    assert f"cannot create state directory {tmp_path / 'notes.txt'}" in err
    assert "point --state elsewhere" in err and out.getvalue() == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere; run as a user")
def test_serve_checks_spool_permissions_before_listening(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spool this user cannot change is refused before anything listens."""
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o500)
    out = io.StringIO()
    try:
        assert run(["serve", str(spool), "--listen", "127.0.0.1:0"], out) == 2
    finally:
        spool.chmod(0o700)
    assert f"spool {spool} is not readable and writable" in error_line(capsys)
    assert out.getvalue() == ""


def test_serve_names_the_address_it_cannot_bind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An address in use is named with --listen as the fix; the state is left unlocked."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["serve", str(tmp_path), "--listen", f"127.0.0.1:{port}", "--log-level", "error"]
        assert run(argv, io.StringIO()) == 1
    err = error_line(capsys)
    assert f"cannot listen on 127.0.0.1:{port}" in err and "choose another --listen" in err
    thread, stop, _, codes = run_in_thread([*argv[:-3], "127.0.0.1:0", "--log-level", "error"])
    stop.set()
    thread.join(30)
    assert codes == [0], "the failed start released the state's lock"


def test_options_that_do_nothing_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Remote-write options without --ship-url, --deadline without --once: exit 2, one line."""
    argv = ["serve", str(tmp_path), "--listen", "127.0.0.1:0", "--bearer-token-file", "t"]
    assert run(argv, io.StringIO()) == 2
    assert "--bearer-token-file does nothing without --ship-url" in error_line(capsys)
    assert run(["serve", str(tmp_path), "--max-retries", "3"], io.StringIO()) == 2
    assert "--max-retries does nothing without --ship-url" in error_line(capsys)
    argv = ["ship", str(tmp_path), "--url", "http://127.0.0.1:1/", "--deadline", "1s"]
    assert run(argv, io.StringIO()) == 2
    assert "--deadline only applies to --once" in error_line(capsys)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--url", "not-a-url"], "needs the scheme http:// or https:// and a host"),
        (["--url", "ftp://h/x"], "needs the scheme http:// or https://"),
        (["--bearer-token-file", "{tmp}/missing"], "{tmp}/missing: no such file"),
        (["--bearer-token-file", "{tmp}/empty"], "{tmp}/empty is empty; write the token"),
        (["--basic-auth-user", "u", "--basic-auth-password-file", "{tmp}"], "is a directory"),
        (["--ca-file", "{tmp}/missing"], "CA file (--ca-file) {tmp}/missing: no such file"),
        (["--source-label", "a-b"], "label name 'a-b' is invalid"),
    ],
)
def test_ship_checks_the_url_and_secret_files_at_start(
    tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo stops ship at once with exit 2 and the reason, even with --once, not a hang."""
    (tmp_path / "empty").write_text("\n")
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "web.1700000000000.prom").write_text("a_total 1\n")
    argv = ["ship", str(spool), "--url", "http://127.0.0.1:1/api/v1/write", "--once"]
    argv += [a.replace("{tmp}", str(tmp_path)) for a in extra]
    started = time.monotonic()
    assert run(argv, io.StringIO()) == 2
    assert time.monotonic() - started < 10
    assert message.replace("{tmp}", str(tmp_path)) in error_line(capsys)
    assert (spool / "web.1700000000000.prom").exists()


def test_ship_refuses_a_missing_spool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ship never creates its spool: a typo would be shipped from (empty) forever."""
    typo = tmp_path / "typo"
    assert run(["ship", str(typo), "--url", "http://127.0.0.1:1/", "--once"], io.StringIO()) == 2
    assert f"spool {typo}: no such directory" in error_line(capsys)
    assert not typo.exists()


@pytest.mark.parametrize(
    ("answer", "fix"),
    [
        (None, "check that the receiver at"),
        (401, "check --bearer-token-file"),
        (404, "check the path in the URL"),
    ],
)
def test_ship_once_gives_up_at_the_deadline_saying_what_blocked(
    tmp_path: Path, answer: int | None, fix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A receiver down, or refusing the URL or credentials: exit 1 by --deadline, segment kept."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "web.1700000000000.prom").write_text("a_total 1 1700000000000\n")
    receiver = Receiver(answer=lambda _n, _s: answer or 204)
    url = receiver.url
    if answer is None:
        receiver.close()  # nothing listens there any more
    argv = ["ship", str(spool), "--url", url, "--once", "--deadline", "1s", "--max-backoff",
            "100ms", "--log-level", "error"]  # fmt: skip
    started = time.monotonic()
    try:
        assert run(argv, io.StringIO()) == 1
    finally:
        if answer is not None:
            receiver.close()
    assert 0.9 <= time.monotonic() - started < 10
    lines = capsys.readouterr().err.strip().splitlines()
    assert "not finished within --deadline 1s; 1 segment(s) stay in" in lines[-1]
    assert fix in lines[-1]
    if answer is not None:  # the blocked state's own log line, at error level
        assert "remote write blocked" in lines[0] and fix in lines[0]
    assert (spool / "web.1700000000000.prom").exists()


def wait_for_line(stream: object, marker: str, proc: subprocess.Popen[str]) -> str:
    """Lines of ``stream`` until one holds ``marker``; the process is killed after 60 s, so
    a hang ends the read (with EOF) instead of the test run."""
    killer = threading.Timer(60, proc.kill)
    killer.start()
    try:
        seen = ""
        while marker not in seen:
            line = stream.readline()  # type: ignore[attr-defined]
            assert line, f"no {marker!r} before the end of output: {seen!r}"
            seen += line
        return seen
    finally:
        killer.cancel()


@pytest.mark.parametrize("command", ["serve", "demo", "ship"])
def test_ctrl_c_ends_daemons_with_one_line_and_exit_130(tmp_path: Path, command: str) -> None:
    """SIGINT to the process group, as a terminal sends it: a clean stop, no traceback, 130."""
    argv = [sys.executable, "-m", "biometrics.cli", command]
    if command == "serve":
        argv += [str(tmp_path), "--listen", "127.0.0.1:0", "--log-level", "error"]
    elif command == "demo":
        argv += ["--workers", "2", "--listen", "127.0.0.1:0", "--log-level", "error"]
    else:
        argv += [str(tmp_path), "--url", "http://127.0.0.1:1/", "--log-level", "info"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        if command == "ship":
            before = wait_for_line(proc.stderr, "event=shipping", proc)
        else:
            before = ""
            wait_for_line(proc.stdout, "serving http://", proc)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    err = before + err
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == f"biometrics {command}: interrupted"


def test_serve_on_all_interfaces_with_a_bare_port(tmp_path: Path) -> None:
    """:PORT listens on every interface, so loopback answers too; the address prints as *."""
    thread, stop, out, codes = run_in_thread(
        ["serve", str(tmp_path), "--listen", ":0", "--log-level", "error"])  # fmt: skip
    try:
        match = re.search(r"serving http://\*:(\d+)/metrics", out.getvalue())
        assert match is not None, out.getvalue()
        assert "biometrics_exporter_sources 0" in scrape(int(match[1]))
    finally:
        stop.set()
        thread.join(30)
    assert codes == [0]


def test_serve_checks_the_ship_options_before_listening(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--ship-url with a missing token or a bad URL: exit 2 before anything is served."""
    out = io.StringIO()
    argv = ["serve", str(tmp_path), "--listen", "127.0.0.1:0", "--ship-url"]
    assert run([*argv, "http://127.0.0.1:1/", "--bearer-token-file", "/nonexistent"], out) == 2
    assert "bearer token file (--bearer-token-file) /nonexistent: no such file" in error_line(
        capsys
    )
    assert run([*argv, "127.0.0.1:9090/api/v1/write"], out) == 2
    assert "needs the scheme http:// or https://" in error_line(capsys)
    assert out.getvalue() == ""


def test_ship_labels_each_series_with_its_source_unless_told_not_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Default ``source=<prefix>``; ``--no-source-label`` opts out; both at once is a misuse;
    serve refuses it without ``--ship-url``.  A Rust counter ships as ``x_total``."""
    spool = tmp_path / "spool"
    spool.mkdir()
    got = []
    for extra in ([], ["--no-source-label"]):
        (spool / "web.1700000000000.prom").write_text("# TYPE hits counter\nhits 3\n")
        receiver = Receiver()
        try:
            argv = ["ship", str(spool), "--url", receiver.url, "--once", "--log-level", "error"]
            assert run([*argv, *extra], io.StringIO()) == 0
        finally:
            receiver.close()
        got.append(receiver.accepted())
    assert got == [
        {(("__name__", "hits_total"), ("source", "web")): [(1_700_000_000_000, 3.0)]},
        {(("__name__", "hits_total"),): [(1_700_000_000_000, 3.0)]},
    ]
    with pytest.raises(SystemExit) as info:
        run(["ship", str(spool), "--url", "http://127.0.0.1:1/", "--source-label", "s",
             "--no-source-label"], io.StringIO())  # fmt: skip
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert run(["serve", str(spool), "--no-source-label"], io.StringIO()) == 2
    assert "--no-source-label does nothing without --ship-url" in error_line(capsys)
