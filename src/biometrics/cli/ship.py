"""``biometrics ship``, and the remote-write options ``serve --ship-url`` shares with it."""

from __future__ import annotations

import argparse
import sys
import threading
from typing import TYPE_CHECKING, TextIO, TypeVar

from .._daemon.logfmt import LEVELS, configure
from ..errors import BiometricsError, StateError
from ._args import duration_ms, pair
from ._command import fail, reason

if TYPE_CHECKING:
    from ..ship import ShipOptions

__all__ = ["add_arguments", "remote_arguments", "run", "ship_options"]


def add_arguments(ship: argparse.ArgumentParser) -> None:
    """``ship SPOOL_DIR --url URL`` and its spool, state and pacing options."""
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
    remote_arguments(ship)


def remote_arguments(p: argparse.ArgumentParser) -> None:
    """The remote-write group, for ``ship`` and for ``serve --ship-url``.

    Every default is None so that serve can tell which were given without ``--ship-url`` (and
    refuse them: an option that silently does nothing hides a mistake).  ``remote_options``
    lists them as ``(dest, option string)`` for that check.
    """
    g = p.add_argument_group("remote write")
    source = g.add_mutually_exclusive_group()
    actions = [
        source.add_argument("--source-label", metavar="NAME",
                            help="label carrying each segment's source (file-name prefix), so "
                            "processes writing one series never interleave (default source)"),
        source.add_argument("--no-source-label", action="store_const", const=True,
                            help="send series without a source label (only when each series "
                            "has one writer: otherwise Prometheus keeps one value per ms)"),
        g.add_argument("--label", type=pair, action="append", metavar="NAME=VALUE",
                       help="external label for every series; repeatable"),
        g.add_argument("--header", type=pair, action="append", metavar="NAME=VALUE",
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
        g.add_argument("--concurrency", type=int, metavar="N",
                       help="requests in flight at most, each series in one of them, in order; "
                       "fewer while the receiver pushes back (default 4)"),
        g.add_argument("--max-retries", type=int, metavar="N",
                       help="re-sends of a 500 answer before quarantine (default 10)"),
    ]  # fmt: skip
    p.set_defaults(remote_options=[(a.dest, a.option_strings[0]) for a in actions])


T = TypeVar("T")


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


def ship_options(
    args: argparse.Namespace, spool: str, url: str, *, state: str | None, quarantine: str | None
) -> ShipOptions:
    """The parsed remote-write options as :class:`ShipOptions`; exit 2 if the library refuses.

    Imported here, not at the top, so that ``serve`` without ``--ship-url`` runs without the
    ``ship`` extra, and a missing extra is one line saying what to install.
    """
    try:
        from ..ship import RemoteWriteOptions, ShipOptions  # noqa: PLC0415 - ship extra
    except ImportError as e:
        fail(1, f"{e}; install it with pip install 'biometrics[ship]'")
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
            state=state,
            archive=args.archive,
            quarantine=quarantine,
            source_label=None if args.no_source_label else _or(args.source_label, "source"),
            external_labels=dict(args.label or ()),
            max_samples_per_request=_or(args.max_samples_per_request, 2000),
            max_retries=_or(args.max_retries, 10),
            concurrency=_or(args.concurrency, 4),
            max_backoff=max_backoff,
            min_backoff=min(0.1, max_backoff),
            blocked_backoff=_or(args.blocked_backoff, 300_000) / 1000,
            poll_interval=args.poll_interval / 1000,
        )
    except BiometricsError as e:
        fail(2, str(e))


def run(args: argparse.Namespace, out: TextIO, stop: threading.Event) -> int:
    """Ship until stopped, or with ``--once`` until drained (1 at ``--deadline``)."""
    if args.deadline is not None and not args.once:
        fail(2, "--deadline only applies to --once; add --once or drop it")
    options = ship_options(args, args.spool, args.url, state=args.state,
                           quarantine=args.quarantine)  # fmt: skip
    from ..ship import ship  # noqa: PLC0415 - needs the ship extra

    configure(args.log_level)
    deadline = _or(args.deadline, 300_000) / 1000
    try:
        return ship(options, stop=stop, once=args.once, metrics_dir=args.self_metrics_dir,
                    deadline=deadline)  # fmt: skip
    except (StateError, TimeoutError) as e:  # TimeoutError: DeadlineError, not all taken in time
        print(f"biometrics ship: {reason(e)}", file=sys.stderr)
        return 1
