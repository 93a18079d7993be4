"""``biometrics with-system-metrics -- COMMAND``: run a command and emit its resource usage.

The exit code is the command's (or 128+signal), and one that cannot be run exits 127 or 126 as
``env``, ``nice`` and ``timeout`` do, so the wrapper can stand in for the bare command.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import threading
from typing import TextIO

from ..errors import BiometricsError
from ..prometheus import Options
from ..runtime import supervise

__all__ = ["add_arguments", "run"]


def add_arguments(wrap: argparse.ArgumentParser) -> None:
    """The poll interval, the segment prefix, and everything after ``--`` as the command."""
    wrap.add_argument("--poll-in-seconds", type=float, default=1.0, metavar="N",
                      help="seconds between samples (default 1)")  # fmt: skip
    wrap.add_argument("--prefix", default="biometrics.",
                      help="segment prefix, may hold a directory; this run's pid is appended, "
                      "so overlapping runs never share a source")  # fmt: skip
    wrap.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")


def run(args: argparse.Namespace, out: TextIO, stop: threading.Event) -> int:
    """Supervise the command; ``stop`` is unused: signals are forwarded to the command."""
    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    me = "biometrics with-system-metrics"
    if not args.poll_in_seconds > 0:
        print(f"{me}: --poll-in-seconds must be > 0, got {args.poll_in_seconds}", file=sys.stderr)
        return 2
    if not argv:
        print(f"{me}: no command given; usage: {me} [--poll-in-seconds N] -- COMMAND [ARGS...]",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        options = Options(prefix=f"{args.prefix}{os.getpid()}.")
        return supervise(argv, poll_seconds=args.poll_in_seconds, options=options)
    except BiometricsError as e:
        print(f"{me}: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # As env, nice and timeout do (and the shell): 127 not found, 126 found but not run.
        missing = e.errno in (errno.ENOENT, errno.ENOTDIR)
        reason = "command not found" if missing and "/" not in argv[0] else e.strerror or str(e)
        print(f"{me}: {argv[0]}: {reason}", file=sys.stderr)
        return 127 if missing else 126
