"""Argument types shared by the commands: durations, ``--listen`` addresses, counts, pairs.

Each raises ``argparse.ArgumentTypeError``, so a malformed value is a one-line usage error
(exit 2) naming the option, never a traceback from deeper in the library.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import socket
from typing import NoReturn

from ._command import reason

__all__ = ["duration_ms", "listen_address", "pair", "positive"]

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


MIN_FORGET_MS = 60_000
"""``--forget-after`` below this would forget live writers between their emissions (10 s
apart by default) and count their totals again when they come back."""


def forget_after_ms(text: str) -> int:
    """A ``--forget-after`` duration: at least a minute."""
    value = duration_ms(text)
    if value < MIN_FORGET_MS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is too short: a live writer quiet for that long (between two emissions) "
            "would be forgotten and its totals counted again; give 1m or more, e.g. 1h"
        )
    return value


def duration_ms(text: str) -> int:
    """``500ms``, ``30s``, ``15m``, ``2h``, ``7d`` (or a sum such as ``1h30m``) in milliseconds."""
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match[1]) * _UNITS[match[2]]
        pos = match.end()
    if pos != len(text) or not text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30s, 15m or 2h")
    return int(total)


_LISTEN_EXAMPLES = "e.g. 127.0.0.1:9464, :9464 (all interfaces) or [::1]:9464"


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (host ``""``: all interfaces) or ``[V6]:PORT`` (the bare V6).

    Checked here, host resolved too, so a typo is a one-line usage error, not a traceback
    from the HTTP server or a daemon listening somewhere unintended.
    """

    def refuse(why: str) -> NoReturn:
        raise argparse.ArgumentTypeError(f"{text!r} {why}; {_LISTEN_EXAMPLES}")

    if "/" in text:
        refuse("is a URL or a path, not HOST:PORT")
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            refuse("is not [IPV6]:PORT")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            refuse(f"has {host!r} in brackets, which is not an IPv6 address")
        port = rest[1:]
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            refuse("has no port; give HOST:PORT")
        if ":" in host:
            refuse("has an IPv6 address without brackets")
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        refuse(f"has the port {port!r}, not a number from 0 to 65535")
    if host:
        try:
            socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            refuse(f"names the host {host!r}, which does not resolve ({reason(e)})")
    return host, int(port)


def positive(text: str) -> int:
    """A whole number >= 1: a count of workers or series, where 0 would mean nothing runs."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def pair(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` (the value may be empty or hold ``=``): a label or an HTTP header."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value
