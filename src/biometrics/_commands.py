"""The commands over a process or files: ``with-system-metrics``, ``cat``, ``check``, ``backfill``.

Thin, like the rest of the CLI: parse, call the library, return an exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, TextIO

from .errors import BiometricsError, ParseError
from .exporter._bar import ProgressBar
from .exporter.tools import Timeline, check, merged_page, timeline
from .prometheus import Options
from .prometheus.supervise import supervise

__all__ = ["add_commands", "handlers"]

_RECENT_MS = 3 * 3_600_000


def add_commands(commands: Any) -> None:
    """Add the subcommands to the ``biometrics`` parser's subparsers."""
    wrap = commands.add_parser(
        "with-system-metrics",
        help="run a command, emitting its CPU, faults, I/O and context switches",
        description="Run COMMAND; emit its rusage as biometrics.sys.* counters to segments.",
    )
    wrap.add_argument("--poll-in-seconds", type=float, default=1.0, metavar="N",
                      help="seconds between samples (default 1)")  # fmt: skip
    wrap.add_argument("--prefix", default="biometrics.",
                      help="segment prefix, may hold a directory")  # fmt: skip
    wrap.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")

    cat = commands.add_parser("cat", help="print segments as one merged page, or raw")
    cat.add_argument("paths", nargs="+", metavar="PATH", help="segment files or directories")
    cat.add_argument("--raw", action="store_true",
                     help="every sample with its timestamp, not the merged page")  # fmt: skip
    cat.add_argument("--openmetrics", action="store_true", help="OpenMetrics instead of 0.0.4")
    cat.add_argument("--source-label", metavar="NAME",
                     help="with --raw: label each sample with its segment's source")  # fmt: skip

    chk = commands.add_parser("check", help="validate segments; exit 1 listing file:line problems")
    chk.add_argument("paths", nargs="+", metavar="PATH", help="segment files or directories")

    back = commands.add_parser(
        "backfill", help="write OpenMetrics for `promtool tsdb create-blocks-from openmetrics`"
    )
    back.add_argument("paths", nargs="+", metavar="PATH", help="segment files or directories")
    back.add_argument("--out", required=True, metavar="FILE",
                      help="the OpenMetrics file to write; - for standard output")  # fmt: skip
    back.add_argument("--source-label", metavar="NAME",
                      help="label each sample with its segment's source")  # fmt: skip


def _with_system_metrics(args: argparse.Namespace, out: TextIO) -> int:
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
        options = Options(prefix=args.prefix)
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


def _cat(args: argparse.Namespace, out: TextIO) -> int:
    if args.source_label is not None and not args.raw:
        print("biometrics cat: --source-label only applies to --raw (the merged page has no "
              "sources); add --raw or drop it", file=sys.stderr)  # fmt: skip
        return 2
    bar = ProgressBar(sys.stderr)
    problems: list[ParseError] = []
    try:
        if args.raw:
            lines = timeline(args.paths, source_label=args.source_label, progress=bar)
            text = lines.render(openmetrics=args.openmetrics)
            _warn("cat", lines)
        else:
            text, problems = merged_page(args.paths, openmetrics=args.openmetrics, progress=bar)
    finally:
        bar.close()
    out.write(text)
    for problem in problems:
        print(f"biometrics cat: {problem}", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace, out: TextIO) -> int:
    bar = ProgressBar(sys.stderr)
    try:
        files, problems = check(args.paths, progress=bar)
    finally:
        bar.close()
    for problem in problems:
        print(problem, file=out)
    print(f"biometrics check: {files} file(s), {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


def _backfill(args: argparse.Namespace, out: TextIO) -> int:
    bar = ProgressBar(sys.stderr)
    try:
        lines = timeline(args.paths, source_label=args.source_label, progress=bar)
    finally:
        bar.close()
    if args.out == "-":
        out.write(lines.render(openmetrics=True))
        out.flush()
    else:
        _write_atomically(args.out, lines.render(openmetrics=True))
    _warn("backfill", lines)
    stamps = [ts for rows in lines.samples.values() for ts, _, _ in rows]
    where = "standard output" if args.out == "-" else args.out
    print(f"biometrics backfill: {lines.count} samples in {len(lines.families)} families "
          f"written to {where}", file=sys.stderr)  # fmt: skip
    if stamps and max(stamps) > time.time() * 1000 - _RECENT_MS:
        print("biometrics backfill: note: samples from the last 3 hours overlap Prometheus's "
              "head block; backfill older data or let the blocks overlap (2.39+)",
              file=sys.stderr)  # fmt: skip
    return 0


def _write_atomically(path: str, text: str) -> None:
    """Write ``path`` whole or not at all: promtool must never read half a backfill."""
    target = os.path.abspath(path)
    fd, temp = tempfile.mkstemp(prefix=".backfill.", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temp, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _warn(command: str, lines: Timeline) -> None:
    for problem in lines.problems:
        print(f"biometrics {command}: {problem}", file=sys.stderr)
    if lines.shared:
        some = ", ".join(sorted(lines.shared)[:3])
        print(f"biometrics {command}: warning: {len(lines.shared)} series are written by more "
              f"than one source (e.g. {some}); their samples interleave and Prometheus keeps "
              "one per timestamp. Pass --source-label NAME to keep the sources apart.",
              file=sys.stderr)  # fmt: skip


def _guarded(command: Callable[[argparse.Namespace, TextIO], int]) -> Callable[..., int]:
    def run(args: argparse.Namespace, out: TextIO) -> int:
        try:
            return command(args, out)
        except BiometricsError as e:
            print(f"biometrics {args.command}: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            where = f" {e.filename}" if e.filename else ""
            print(f"biometrics {args.command}:{where}: {e.strerror or e}", file=sys.stderr)
            return 2

    return run


handlers: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "with-system-metrics": _with_system_metrics,
    "cat": _guarded(_cat),
    "check": _guarded(_check),
    "backfill": _guarded(_backfill),
}
"""Command name to ``handler(args, out) -> exit code``."""
