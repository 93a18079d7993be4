"""``biometrics top``: the options; the view itself is :mod:`biometrics.top`."""

from __future__ import annotations

import argparse
import threading
from typing import TextIO

from ..top import TopOptions, top
from ._args import duration_ms

__all__ = ["add_arguments", "run"]


def _seconds(text: str) -> float:
    """A bare number of seconds (``2``, ``0.5``) or a duration (``500ms``, ``1m``)."""
    try:
        value = float(text)
    except ValueError:
        return duration_ms(text) / 1000
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The target, and how often and over what window to read it."""
    p.add_argument("target", metavar="SPOOL|URL",
                   help="a spool directory (only read) or a /metrics URL")  # fmt: skip
    p.add_argument("--interval", type=_seconds, default=2.0, metavar="SECONDS",
                   help="seconds between readings (default 2; 500ms, 1m also work)")  # fmt: skip
    p.add_argument("--window", type=_seconds, default=10.0, metavar="SECONDS",
                   help="rates and quantiles span this much (default 10, the writers' usual "
                   "interval; at most one --interval: between successive readings)")  # fmt: skip
    p.add_argument("--stale-after", type=_seconds, default=60.0, metavar="SECONDS",
                   help="a source silent this long is stale (default 60)")  # fmt: skip
    p.add_argument("--once", action="store_true",
                   help="print one frame as plain text (two readings --interval apart) and "
                   "exit; the default when standard output is not a terminal")  # fmt: skip
    p.add_argument("--all", action="store_true", dest="include_self",
                   help="list biometrics_* self-instrumentation too")  # fmt: skip


def run(args: argparse.Namespace, out: TextIO, stop: threading.Event) -> int:
    """Live on a terminal (q or Ctrl-C quits), else one plain frame."""
    options = TopOptions(args.target, interval=args.interval, window=args.window,
                         stale_after=args.stale_after, include_self=args.include_self)  # fmt: skip
    live = not args.once and out.isatty()
    return top(options, out, live=live, stop=stop)
