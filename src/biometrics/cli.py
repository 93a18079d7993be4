"""The ``biometrics`` command.  Commands are thin: parse arguments, call the library, return."""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from ._version import __version__
from .collector import Collector
from .emitter import PlainTextEmitter
from .histogram import Histogram
from .moments import Moments
from .sensors import Counter, Gauge

__all__ = ["main", "run"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="biometrics",
        description="Cheap, crash-safe metrics for Python programs, readable by Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"biometrics {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="record a small synthetic workload and print its readings"
    )
    demo.add_argument("--requests", type=int, default=10_000, help="requests to simulate")
    demo.add_argument("--seed", type=int, default=0, help="random seed, for repeatable output")
    return parser


def _demo(requests: int, seed: int, now_ms: int, out: TextIO) -> int:
    rng = random.Random(seed)
    collector = Collector()
    served = collector.register(Counter("demo.requests", help="Requests served."))
    in_flight = collector.register(Gauge("demo.in_flight", help="Requests in progress."))
    latency = collector.register(Histogram("demo.latency.seconds", help="Request latency."))
    size = collector.register(Moments("demo.response.bytes", help="Response size."))
    for _ in range(requests):
        served.click()
        in_flight.set(rng.randint(0, 8))
        latency.observe(rng.lognormvariate(-5.0, 1.0))
        size.add(rng.gauss(2048.0, 256.0))
    collector.emit(PlainTextEmitter(out), now_ms)
    return 0


def run(argv: Sequence[str], out: TextIO, *, now_ms: int | None = None) -> int:
    """Run one command; the exit code is returned, never passed to ``sys.exit`` here."""
    args = _parser().parse_args(list(argv))
    if args.command == "demo":
        if args.requests < 0:
            print("biometrics demo: --requests must be >= 0", file=sys.stderr)
            return 2
        return _demo(args.requests, args.seed, now_ms or time.time_ns() // 1_000_000, out)
    _parser().print_help(out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    return run(sys.argv[1:] if argv is None else argv, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
