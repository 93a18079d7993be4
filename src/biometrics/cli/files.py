"""``biometrics cat``, ``check`` and ``backfill``: the offline tools over segment files.

The work is :mod:`biometrics.files`'; here are the options, the progress bar on stderr, the
warnings and the exit codes.  A path or option the library refuses is exit 2 with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import TextIO

from .._clock import now_ms
from .._daemon.bar import ProgressBar
from ..errors import BiometricsError, ParseError
from ..files import Timeline, check, merged_page, timeline
from ._command import Handler, fail

__all__ = [
    "add_backfill_arguments",
    "add_cat_arguments",
    "add_check_arguments",
    "run_backfill",
    "run_cat",
    "run_check",
]

_RECENT_MS = 3 * 3_600_000


def add_cat_arguments(cat: argparse.ArgumentParser) -> None:
    """Paths, and ``--raw`` (every sample with its time) instead of the merged page."""
    cat.add_argument("paths", nargs="+", metavar="PATH", help="segment files or directories")
    cat.add_argument("--raw", action="store_true",
                     help="every sample with its timestamp, not the merged page")  # fmt: skip
    cat.add_argument("--openmetrics", action="store_true", help="OpenMetrics instead of 0.0.4")
    cat.add_argument("--source-label", metavar="NAME",
                     help="with --raw: label each sample with its segment's source")  # fmt: skip


def add_check_arguments(chk: argparse.ArgumentParser) -> None:
    """Only paths: check has nothing to choose."""
    chk.add_argument("paths", nargs="+", metavar="PATH", help="segment files or directories")


def add_backfill_arguments(back: argparse.ArgumentParser) -> None:
    """Paths, the output file, and the label keeping sources apart."""
    back.add_argument("paths", nargs="+", metavar="PATH", help="segment files or directories")
    back.add_argument("--out", required=True, metavar="FILE",
                      help="the OpenMetrics file to write; - for standard output")  # fmt: skip
    back.add_argument("--source-label", metavar="NAME",
                      help="label each sample with its segment's source")  # fmt: skip


def _cat(args: argparse.Namespace, out: TextIO) -> int:
    if args.source_label is not None and not args.raw:
        fail(
            2,
            "--source-label only applies to --raw (the merged page has no sources); "
            "add --raw or drop it",
        )
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
    if stamps and max(stamps) > now_ms() - _RECENT_MS:
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


def _guarded(command: Callable[[argparse.Namespace, TextIO], int]) -> Handler:
    """The tool as a handler; a path it cannot read or a value it refuses is exit 2.

    Named with its path, in one line: a typo in a CI check must fail it, not print a traceback.
    """

    def run(args: argparse.Namespace, out: TextIO, stop: threading.Event) -> int:
        try:
            return command(args, out)
        except BiometricsError:
            raise  # _command.invoke: one line, exit 2
        except OSError as e:
            where = f" {e.filename}" if e.filename else ""
            print(f"biometrics {args.command}:{where}: {e.strerror or e}", file=sys.stderr)
            return 2

    return run


run_cat = _guarded(_cat)
run_check = _guarded(_check)
run_backfill = _guarded(_backfill)
