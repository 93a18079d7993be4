"""``biometrics with-system-metrics -- COMMAND``: run a command and emit its resource usage.

The exit code is the command's (or 128+signal), and one that cannot be run exits 127 or 126 as
``env``, ``nice`` and ``timeout`` do, so the wrapper can stand in for the bare command (in a
crontab, a systemd unit, a CI step).  The run's result goes out as the ``biometrics_job_*``
series of its job (see :func:`biometrics.runtime.supervise`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import threading
from typing import TextIO

from ..errors import BiometricsError
from ..prometheus import Options
from ..runtime import supervise
from ..runtime.supervise import exit_code_for

__all__ = ["add_arguments", "job_name", "run"]

_DEFAULT_PREFIX = "biometrics."


def _octal(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode (e.g. 664)") from None
    if not 0 <= mode <= 0o7777:
        raise argparse.ArgumentTypeError(f"{text!r} is not a file mode (0 to 7777)")
    return mode


def add_arguments(wrap: argparse.ArgumentParser) -> None:
    """The poll interval, the segment prefix and mode, the job, and the command after ``--``."""
    wrap.add_argument("--poll-in-seconds", type=float, default=1.0, metavar="N",
                      help="seconds between samples (default 1)")  # fmt: skip
    wrap.add_argument("--prefix", default=None,
                      help="segment prefix, may hold a directory (created if missing); this "
                      "run's pid is appended, so overlapping runs never share a source "
                      f"(default {_DEFAULT_PREFIX})")  # fmt: skip
    wrap.add_argument("--job", default=None, metavar="NAME",
                      help="job_name label of the biometrics_job_* series (default: the "
                      "prefix's file part without its dot, e.g. backup for "
                      "/var/spool/biometrics/backup.; else the command's name)")  # fmt: skip
    wrap.add_argument("--mode", type=_octal, default=None, metavar="OCTAL",
                      help="segment file mode (default 644; 664 for a spool shared by a "
                      "group: serve can then claim segments exclusively)")  # fmt: skip
    wrap.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")


def job_name(prefix: str | None, argv: list[str]) -> str:
    """The default job name: the prefix's file part (``backup.`` -> ``backup``), else the command's.

    So a crontab line names its job once.
    """
    base = os.path.basename(prefix or "").rstrip(".")
    return base or os.path.basename(argv[0]) or argv[0]


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
    job = args.job if args.job is not None else job_name(args.prefix, argv)
    prefix = args.prefix if args.prefix is not None else _DEFAULT_PREFIX
    try:
        options = Options(prefix=f"{prefix}{os.getpid()}.")
        if args.mode is not None:
            options = dataclasses.replace(options, mode=args.mode)
        return supervise(argv, poll_seconds=args.poll_in_seconds, options=options, job=job)
    except BiometricsError as e:
        print(f"{me}: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        missing = exit_code_for(e) == 127
        reason = "command not found" if missing and "/" not in argv[0] else e.strerror or str(e)
        print(f"{me}: {argv[0]}: {reason}", file=sys.stderr)
        return exit_code_for(e)
