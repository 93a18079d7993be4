"""The shared argument types: durations and ``--listen`` addresses."""

import argparse
import io
import re

import pytest

from biometrics.cli import run
from biometrics.cli._args import duration_ms, listen_address

from ._helpers import error_line


def test_durations() -> None:
    """Durations are summed unit terms."""
    assert duration_ms("1h30m") == 5_400_000
    assert duration_ms("250ms") == 250
    assert duration_ms("1.5s") == 1500


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
