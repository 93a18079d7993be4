"""The ``biometrics`` command.  Commands are thin: parse arguments, call the library, return.

Every command is one row of the table below (its module holds its options and handler), so the
whole command line reads in one place, and every command ends the same way
(``_command.invoke``): one line on stderr and an exit code, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import TYPE_CHECKING

from .. import _version
from . import demo, files, serve, ship, top, wrap
from ._command import Command as _Command
from ._command import invoke as _invoke

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn, TextIO

__all__ = ["main", "run"]

_COMMANDS = (
    _Command("serve", "merge a spool's segments and serve /metrics",
             serve.add_arguments, serve.run),
    _Command("ship", "send a spool's samples by Prometheus remote write",
             ship.add_arguments, ship.run),
    _Command("demo", "worker processes + serve, on a temporary spool",
             demo.add_arguments, demo.run),
    _Command("with-system-metrics",
             "run a command, emitting its usage and its result (exit code, duration, success)",
             wrap.add_arguments, wrap.run,
             description="Run COMMAND; emit its rusage as biometrics.sys.* counters and, at "
             "exit, its result as biometrics_job_* series (job_name label) to segments."),
    _Command("cat", "print segments as one merged page, or raw",
             files.add_cat_arguments, files.run_cat),
    _Command("check", "validate segments; exit 1 listing file:line problems",
             files.add_check_arguments, files.run_check),
    _Command("backfill", "write OpenMetrics for `promtool tsdb create-blocks-from openmetrics`",
             files.add_backfill_arguments, files.run_backfill),
    _Command("top", "live view of a spool's writers or a /metrics URL (q quits)",
             top.add_arguments, top.run),
)  # fmt: skip
"""Every subcommand, in ``--help`` order."""

_BY_NAME = {command.name: command for command in _COMMANDS}


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line naming the command, not the whole usage text before them."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="biometrics",
        description="Cheap, crash-safe metrics for Python programs, readable by Prometheus.",
    )
    version = f"biometrics {_version.__version__}"
    parser.add_argument("--version", action="version", version=version)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in _COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help,
                                    description=command.description)  # fmt: skip
        command.add_arguments(sub)
    return parser


def run(argv: Sequence[str], out: TextIO, *, stop: threading.Event | None = None) -> int:
    """Run one command; the exit code is returned, never passed to ``sys.exit`` here.

    ``stop`` ends a long-running command (``serve``, ``demo``) from another thread, as
    SIGTERM does.
    """
    args = _parser().parse_args(list(argv))
    if args.command is None:
        _parser().print_help(out)
        return 0
    return _invoke(_BY_NAME[args.command], args, out, stop or threading.Event())


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    return run(sys.argv[1:] if argv is None else argv, sys.stdout)
