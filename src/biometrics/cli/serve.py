"""``biometrics serve``: the exporter's options, start-up failures as one line and an exit code.

``demo`` serves the same way, so its options and runner are here for both.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import threading
from typing import TextIO

from .._daemon.logfmt import LEVELS, configure
from ..errors import BiometricsError, StateError
from ..exporter import GAUGE_MODES, ExporterOptions, MergeRules
from . import ship as ship_command
from ._args import duration_ms, forget_after_ms, listen_address, positive
from ._command import fail, reason

__all__ = ["add_arguments", "run", "serve_arguments", "serve_spool"]


def add_arguments(serve: argparse.ArgumentParser) -> None:
    """``serve SPOOL_DIR``, the exporter's options and, for ``--ship-url``, remote write's."""
    serve.add_argument("spool", metavar="SPOOL_DIR", help="directory the emitters write into")
    serve.add_argument("--create", action="store_true",
                       help="create SPOOL_DIR if it does not exist (else: an error)")  # fmt: skip
    serve_arguments(serve, listen="127.0.0.1:9464")
    serve.add_argument("--ship-url", metavar="URL",
                       help="also ship every sample to this remote-write URL")  # fmt: skip
    ship_command.remote_arguments(serve)


def _gauge_rule(text: str) -> tuple[str, str]:
    pattern, sep, mode = text.rpartition("=")
    if not sep or not pattern or mode not in GAUGE_MODES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not PATTERN=MODE with MODE one of {', '.join(GAUGE_MODES)}"
        )
    return pattern, mode


def serve_arguments(p: argparse.ArgumentParser, *, listen: str) -> None:
    """The exporter's options, shared by ``serve`` and ``demo``."""
    p.add_argument(
        "--listen",
        type=listen_address,
        default=listen_address(listen),
        metavar="HOST:PORT",
        help=f"address to serve on: HOST:PORT, :PORT (all interfaces) or [V6]:PORT (default "
        f"{listen}; port 0 picks a free one)",
    )
    p.add_argument("--state", help="state snapshot file (default SPOOL/.biometrics/state.json)")
    p.add_argument("--archive", metavar="DIR", help="move consumed segments here, not delete")
    p.add_argument(
        "--quarantine",
        metavar="DIR",
        help="where unparseable segments go (default SPOOL/quarantine)",
    )
    p.add_argument(
        "--forget-after",
        type=forget_after_ms,
        metavar="DURATION",
        help="drop sources not seen for this long (default: keep forever)",
    )
    p.add_argument(
        "--max-series",
        type=positive,
        default=500_000,
        metavar="N",
        help="source-series held at most; new ones beyond are dropped (default 500000: "
        "~320 MB of RSS with counters)",
    )
    p.add_argument(
        "--max-series-per-source",
        type=positive,
        metavar="N",
        help="series one source may feed at most, so one runaway process cannot starve the "
        "others (default: a tenth of --max-series)",
    )
    p.add_argument(
        "--gauge-mode",
        default="latest",
        choices=GAUGE_MODES,
        help="how gauges from many sources merge (default latest)",
    )
    p.add_argument(
        "--gauge",
        type=_gauge_rule,
        action="append",
        default=[],
        metavar="PATTERN=MODE",
        help="mode for gauges matching a glob; repeatable",
    )
    p.add_argument(
        "--per-source", action="store_true", help="no merging: every series gets a source label"
    )
    p.add_argument(
        "--honor-timestamps", action="store_true", help="expose each series' newest reading time"
    )
    p.add_argument(
        "--poll-interval",
        type=duration_ms,
        default=100,
        metavar="DURATION",
        help="how often to look for finished segments (default 100ms)",
    )
    p.add_argument(
        "--checkpoint-interval",
        type=duration_ms,
        default=60_000,
        metavar="DURATION",
        help="how often to snapshot the state (default 60s)",
    )
    p.add_argument("--log-level", default="info", choices=LEVELS)  # fmt: skip


def run(args: argparse.Namespace, out: TextIO, stop: threading.Event) -> int:
    """Serve ``SPOOL_DIR`` until stopped."""
    return serve_spool(args, args.spool, out, stop, create=args.create)


def _refuse_unused_remote_options(args: argparse.Namespace) -> None:
    if getattr(args, "ship_url", None):
        return
    for dest, option in getattr(args, "remote_options", ()):
        if getattr(args, dest) is not None:
            fail(2, f"{option} does nothing without --ship-url; add --ship-url URL or drop "
                 f"{option}")  # fmt: skip


def serve_spool(
    args: argparse.Namespace, spool: str, out: TextIO, stop: threading.Event, *,
    create: bool = False, any_port_if_busy: bool = False,
) -> int:  # fmt: skip
    """Serve ``spool`` with the parsed options; prints ``serving http://...`` once bound.

    ``any_port_if_busy`` (the demo's): when the chosen port is taken, take a free one instead
    of failing, since a demo has no operator who picked that port.
    """
    try:
        from ..exporter.run import address, serve  # noqa: PLC0415 - needs the exporter extra
    except ImportError as e:
        print(f"biometrics {args.command}: {e}; install it with "
              "pip install 'biometrics[exporter]'", file=sys.stderr)  # fmt: skip
        return 1
    _refuse_unused_remote_options(args)
    configure(args.log_level)
    options = ExporterOptions(
        spool=spool,
        state=args.state,
        archive=args.archive,
        quarantine=args.quarantine,
        rules=MergeRules(args.gauge_mode, tuple(args.gauge), args.per_source),
        forget_after_ms=args.forget_after,
        max_series=args.max_series,
        max_series_per_source=args.max_series_per_source,
        honor_timestamps=args.honor_timestamps,
        poll_interval=args.poll_interval / 1000,
        checkpoint_interval=args.checkpoint_interval / 1000,
    )
    host, port = args.listen
    ship = None
    if getattr(args, "ship_url", None):
        state = os.path.dirname(options.state_path)
        ship = ship_command.ship_options(args, os.path.join(state, "outbox"), args.ship_url,
                                         quarantine=options.quarantine_path,
                                         state=os.path.join(state, "ship.json"))  # fmt: skip

    bound: list[int] = []

    def listening(port: int) -> None:
        bound.append(port)
        print(f"serving http://{address(host, port)}/metrics from {spool}", file=out, flush=True)

    try:
        return serve(options, host, port, stop=stop, on_listening=listening, ship=ship,
                     create=create)  # fmt: skip
    except (OSError, ValueError) as e:  # BiometricsError subclasses are one or the other
        in_use = getattr(e, "errno", None) == errno.EADDRINUSE
        if in_use and not bound and any_port_if_busy and port:
            args.listen = (host, 0)
            return serve_spool(args, spool, out, stop, any_port_if_busy=True)
        print(f"biometrics {args.command}: {_serve_failure(e, address(host, port), bound)}",
              file=sys.stderr)  # fmt: skip
        # The spool, --archive, --quarantine, a secret file: what was given is wrong (2).
        return 1 if isinstance(e, StateError) or not isinstance(e, BiometricsError) else 2


def _serve_failure(e: OSError | ValueError, where: str, bound: list[int]) -> str:
    if isinstance(e, BiometricsError):  # StateError too: its message names the file
        return reason(e)
    if bound:  # after binding, only the state is opened, and that raises StateError
        filename = getattr(e, "filename", None)
        return f"{filename}: {reason(e)}" if filename else reason(e)
    return f"cannot listen on {where}: {reason(e)}; stop what uses it or choose another --listen"
