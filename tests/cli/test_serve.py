"""``biometrics serve``: runs until stopped, refuses what it cannot serve in one line."""

import io
import os
import re
import socket
from pathlib import Path

import pytest

from biometrics.cli import run

from ..helpers import get_text, scrape, wait_for
from ..ship._receiver import Receiver
from ._helpers import error_line, port_of, run_in_thread


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

        def shipped_and_served() -> str | None:
            page = scrape(port)
            return page if len(receiver.accepted()) >= 2 and "jobs_total 5" in page else None

        page = wait_for(shipped_and_served, "both samples shipped and the sum on the page",
                        timeout=30, every=0.05)  # fmt: skip
        assert page is not None
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


def test_serve_listens_on_a_bracketed_v6_address(tmp_path: Path) -> None:
    """[::1]:0 binds the bare v6 address and prints a URL with the brackets back."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    _serve_and_scrape(tmp_path, "[::1]:0", shown=r"\[::1\]", host="[::1]")


def _serve_and_scrape(tmp_path: Path, listen: str, *, shown: str, host: str) -> None:
    """Serve on ``listen``; the printed address matches ``shown``; ``host`` answers on it."""
    thread, stop, out, codes = run_in_thread(
        ["serve", str(tmp_path), "--listen", listen, "--log-level", "error"])  # fmt: skip
    try:
        match = re.search(rf"serving http://{shown}:(\d+)/metrics", out.getvalue())
        assert match is not None, out.getvalue()
        assert "biometrics_exporter_sources 0" in get_text(f"http://{host}:{match[1]}/metrics")
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


def test_serve_on_all_interfaces_with_a_bare_port(tmp_path: Path) -> None:
    """:PORT listens on every interface, so loopback answers too; the address prints as *."""
    _serve_and_scrape(tmp_path, ":0", shown=r"\*", host="127.0.0.1")


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
