"""The ``biometrics`` command.  Commands are thin: parse arguments, call the library, return."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import re
import socket
import sys
import tempfile
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn, TextIO, TypeVar

from ._commands import add_commands, handlers
from ._version import __version__
from .errors import BiometricsError, StateError
from .exporter import GAUGE_MODES, ExporterOptions, MergeRules
from .exporter._logging import LEVELS, configure
from .exporter.demo import start_workers, stop_workers

if TYPE_CHECKING:
    from .exporter.ship import ShipOptions

__all__ = ["main", "run"]

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


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
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            refuse(f"names the host {host!r}, which does not resolve ({reason})")
    return host, int(port)


def _gauge_rule(text: str) -> tuple[str, str]:
    pattern, sep, mode = text.rpartition("=")
    if not sep or not pattern or mode not in GAUGE_MODES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not PATTERN=MODE with MODE one of {', '.join(GAUGE_MODES)}"
        )
    return pattern, mode


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line naming the command, not the whole usage text before them."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="biometrics",
        description="Cheap, crash-safe metrics for Python programs, readable by Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"biometrics {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="merge a spool's segments and serve /metrics")
    serve.add_argument("spool", metavar="SPOOL_DIR", help="directory the emitters write into")
    serve.add_argument("--create", action="store_true",
                       help="create SPOOL_DIR if it does not exist (else: an error)")  # fmt: skip
    _serve_arguments(serve, listen="127.0.0.1:9464")
    serve.add_argument("--ship-url", metavar="URL",
                       help="also ship every sample to this remote-write URL")  # fmt: skip
    _ship_arguments(serve)

    ship = commands.add_parser("ship", help="send a spool's samples by Prometheus remote write")
    ship.add_argument("spool", metavar="SPOOL_DIR", help="directory the emitters write into")
    ship.add_argument("--url", required=True, help="remote-write URL, e.g. "
                      "http://127.0.0.1:9090/api/v1/write")  # fmt: skip
    ship.add_argument("--state", help="progress file (default SPOOL/.biometrics/ship.json)")
    ship.add_argument("--archive", metavar="DIR", help="move shipped segments here, not delete")
    ship.add_argument("--quarantine", metavar="DIR",
                      help="where rejected segments go (default SPOOL/quarantine)")  # fmt: skip
    ship.add_argument("--poll-interval", type=duration_ms, default=100, metavar="DURATION",
                      help="how often to look for finished segments (default 100ms)")  # fmt: skip
    ship.add_argument("--once", action="store_true",
                      help="ship what is there, then exit (1 if any was quarantined)")  # fmt: skip
    ship.add_argument("--deadline", type=duration_ms, metavar="DURATION",
                      help="with --once: exit 1 if not done by then (default 5m)")  # fmt: skip
    ship.add_argument("--self-metrics-dir", metavar="DIR",
                      help="write the shipper's own metrics there as segments")  # fmt: skip
    ship.add_argument("--log-level", default="info", choices=LEVELS)
    _ship_arguments(ship)

    demo = commands.add_parser("demo", help="worker processes + serve, on a temporary spool")
    demo.add_argument("--workers", type=_positive, default=4, help="emitting processes (default 4)")
    demo.add_argument("--duration", type=duration_ms, default=None,
                      help="stop after this long (default: run until Ctrl-C)")  # fmt: skip
    _serve_arguments(demo, listen="127.0.0.1:9464")
    add_commands(commands)
    return parser


def _serve_arguments(p: argparse.ArgumentParser, *, listen: str) -> None:
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
        type=duration_ms,
        metavar="DURATION",
        help="drop sources not seen for this long (default: keep forever)",
    )
    p.add_argument(
        "--max-series",
        type=_positive,
        default=500_000,
        metavar="N",
        help="source-series held at most; new ones beyond are dropped (default 500000: "
        "~320 MB of RSS with counters)",
    )
    p.add_argument(
        "--max-series-per-source",
        type=_positive,
        metavar="N",
        help="series one source may feed at most, so one runaway process cannot starve the "
        "others (default: a tenth of --max-series)",
    )
    p.add_argument(
        "--gauge-mode",
        default="latest",
        choices=("sum", "min", "max", "latest", "all"),
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


def _ship_arguments(p: argparse.ArgumentParser) -> None:
    # Every default is None so that serve can tell which were given without --ship-url.
    g = p.add_argument_group("remote write")
    source = g.add_mutually_exclusive_group()
    actions = [
        source.add_argument("--source-label", metavar="NAME",
                            help="label carrying each segment's source (file-name prefix), so "
                            "processes writing one series never interleave (default source)"),
        source.add_argument("--no-source-label", action="store_const", const=True,
                            help="send series without a source label (only when each series "
                            "has one writer: otherwise Prometheus keeps one value per ms)"),
        g.add_argument("--label", type=_pair, action="append", metavar="NAME=VALUE",
                       help="external label for every series; repeatable"),
        g.add_argument("--header", type=_pair, action="append", metavar="NAME=VALUE",
                       help="extra HTTP header (e.g. X-Scope-OrgID=team); repeatable"),
        g.add_argument("--bearer-token-file", metavar="FILE", help="send this file's token"),
        g.add_argument("--basic-auth-user", metavar="USER", help="basic-auth user name"),
        g.add_argument("--basic-auth-password-file", metavar="FILE", help="basic-auth password"),
        g.add_argument("--ca-file", metavar="FILE",
                       help="trust this CA bundle (TLS is verified)"),
        g.add_argument("--timeout", type=duration_ms, metavar="DURATION",
                       help="per request (default 30s)"),
        g.add_argument("--max-backoff", type=duration_ms, metavar="DURATION",
                       help="longest wait between retries (default 10s)"),
        g.add_argument("--blocked-backoff", type=duration_ms, metavar="DURATION",
                       help="wait between tries while the receiver answers 401, 403, 404, "
                       "405, 407 or a redirect (default 5m)"),
        g.add_argument("--max-samples-per-request", type=int, metavar="N",
                       help="samples per request at most (default 2000)"),
        g.add_argument("--max-retries", type=int, metavar="N",
                       help="re-sends of a 500 answer before quarantine (default 10)"),
    ]  # fmt: skip
    p.set_defaults(remote_options=[(a.dest, a.option_strings[0]) for a in actions])


T = TypeVar("T")


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


class _Exit(Exception):  # noqa: N818 - not an error: an exit with a message
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _reason(e: BaseException) -> str:
    """An error's message without the ``[Errno N]`` prefix an ``OSError`` subclass adds."""
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


def _ship_options(args: argparse.Namespace, spool: str, url: str, **more: str) -> ShipOptions:
    try:
        from .exporter.remote_write import RemoteWriteOptions  # noqa: PLC0415 - ship extra
        from .exporter.ship import ShipOptions  # noqa: PLC0415
    except ImportError as e:
        raise _Exit(1, f"{e}; install it with pip install 'biometrics[ship]'") from e
    max_backoff = _or(args.max_backoff, 10_000) / 1000
    try:
        remote = RemoteWriteOptions(
            url,
            timeout=_or(args.timeout, 30_000) / 1000,
            bearer_token_file=args.bearer_token_file,
            basic_auth_user=args.basic_auth_user,
            basic_auth_password_file=args.basic_auth_password_file,
            ca_file=args.ca_file,
            headers=dict(args.header or ()),
        )
        return ShipOptions(
            spool=spool,
            remote=remote,
            archive=args.archive,
            source_label=None if args.no_source_label else _or(args.source_label, "source"),
            external_labels=dict(args.label or ()),
            max_samples_per_request=_or(args.max_samples_per_request, 2000),
            max_retries=_or(args.max_retries, 10),
            max_backoff=max_backoff,
            min_backoff=min(0.1, max_backoff),
            blocked_backoff=_or(args.blocked_backoff, 300_000) / 1000,
            poll_interval=args.poll_interval / 1000,
            **more,  # type: ignore[arg-type]
        )
    except BiometricsError as e:
        raise _Exit(2, str(e)) from e


def _ship(args: argparse.Namespace, stop: threading.Event) -> int:
    if args.deadline is not None and not args.once:
        raise _Exit(2, "--deadline only applies to --once; add --once or drop it")
    options = _ship_options(args, args.spool, args.url, state=args.state,
                            quarantine=args.quarantine)  # fmt: skip
    from .exporter.serve import ship  # noqa: PLC0415 - needs the exporter extra

    configure(args.log_level)
    deadline = _or(args.deadline, 300_000) / 1000
    try:
        return ship(options, stop=stop, once=args.once, metrics_dir=args.self_metrics_dir,
                    deadline=deadline)  # fmt: skip
    except StateError as e:
        print(f"biometrics ship: {_reason(e)}", file=sys.stderr)
        return 1
    except TimeoutError as e:  # DeadlineError: the receiver did not take everything in time
        print(f"biometrics ship: {_reason(e)}", file=sys.stderr)
        return 1


def _refuse_unused_remote_options(args: argparse.Namespace) -> None:
    if getattr(args, "ship_url", None):
        return
    for dest, option in getattr(args, "remote_options", ()):
        if getattr(args, dest) is not None:
            raise _Exit(2, f"{option} does nothing without --ship-url; add --ship-url URL or "
                        f"drop {option}")  # fmt: skip


def _serve(
    args: argparse.Namespace, spool: str, out: TextIO, stop: threading.Event, *,
    create: bool = False,
) -> int:  # fmt: skip
    try:
        from .exporter.serve import address, serve  # noqa: PLC0415 - needs the exporter extra
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
        ship = _ship_options(args, os.path.join(state, "outbox"), args.ship_url,
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
        if in_use and not bound and args.command == "demo" and port:
            args.listen = (host, 0)
            return _serve(args, spool, out, stop)
        print(f"biometrics {args.command}: {_serve_failure(e, address(host, port), bound)}",
              file=sys.stderr)  # fmt: skip
        # The spool, --archive, --quarantine, a secret file: what was given is wrong (2).
        return 1 if isinstance(e, StateError) or not isinstance(e, BiometricsError) else 2


def _serve_failure(e: OSError | ValueError, where: str, bound: list[int]) -> str:
    if isinstance(e, BiometricsError):  # StateError too: its message names the file
        return _reason(e)
    if bound:  # after binding, only the state is opened, and that raises StateError
        filename = getattr(e, "filename", None)
        return f"{filename}: {_reason(e)}" if filename else _reason(e)
    return f"cannot listen on {where}: {_reason(e)}; stop what uses it or choose another --listen"


def _demo(args: argparse.Namespace, out: TextIO, stop: threading.Event) -> int:
    if args.workers < 1:
        print("biometrics demo: --workers must be >= 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="biometrics-demo-") as spool:
        workers = start_workers(spool, args.workers)
        timer = None
        if args.duration is not None:
            timer = threading.Timer(args.duration / 1000, stop.set)
            timer.start()
        try:
            print(f"{args.workers} workers emitting into {spool}; Ctrl-C to stop", file=out)
            return _serve(args, spool, out, stop)
        finally:
            if timer is not None:
                timer.cancel()
            stop_workers(workers)


def run(argv: Sequence[str], out: TextIO, *, stop: threading.Event | None = None) -> int:
    """Run one command; the exit code is returned, never passed to ``sys.exit`` here.

    ``stop`` ends a long-running command (``serve``, ``demo``) from another thread, as
    SIGTERM does.
    """
    args = _parser().parse_args(list(argv))
    if args.command is None:
        _parser().print_help(out)
        return 0
    try:
        return _dispatch(args, out, stop or threading.Event())
    except _Exit as e:
        print(f"biometrics {args.command}: {e}", file=sys.stderr)
        return e.code
    except BiometricsError as e:  # an option value the library refuses, or a start-up check
        print(f"biometrics {args.command}: {_reason(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: daemons have stopped cleanly; tools just stop
        print(f"biometrics {args.command}: interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace, out: TextIO, stop: threading.Event) -> int:
    if args.command == "serve":
        return _serve(args, args.spool, out, stop, create=args.create)
    if args.command == "demo":
        return _demo(args, out, stop)
    if args.command == "ship":
        return _ship(args, stop)
    return handlers[args.command](args, out)


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    return run(sys.argv[1:] if argv is None else argv, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
