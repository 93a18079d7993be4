"""``biometrics ship``: --once exit codes, start-up checks, the deadline, source labels."""

import io
import time
from pathlib import Path

import pytest

from biometrics.cli import run

from ..ship._receiver import Receiver
from ._helpers import error_line


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
    """A segment the receiver refuses is quarantined and --once exits 1; a bad label name is 2."""
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
