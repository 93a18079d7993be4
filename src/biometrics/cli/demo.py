"""``biometrics demo``: worker processes emitting into a temporary spool, served as ``serve`` does.

The whole pipeline with nothing to configure: the spool is made and removed here, the workers
are stopped however the serve ends.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from typing import TextIO

from ..exporter.demo import start_workers, stop_workers
from ._args import duration_ms, positive
from .serve import serve_arguments, serve_spool

__all__ = ["add_arguments", "run"]


def add_arguments(demo: argparse.ArgumentParser) -> None:
    """How many workers, for how long, and ``serve``'s own options."""
    demo.add_argument("--workers", type=positive, default=4, help="emitting processes (default 4)")
    demo.add_argument("--duration", type=duration_ms, default=None,
                      help="stop after this long (default: run until Ctrl-C)")  # fmt: skip
    serve_arguments(demo, listen="127.0.0.1:9464")


def run(args: argparse.Namespace, out: TextIO, stop: threading.Event) -> int:
    """Start the workers, serve their spool until stopped or ``--duration``, stop them."""
    with tempfile.TemporaryDirectory(prefix="biometrics-demo-") as spool:
        workers = start_workers(spool, args.workers)
        timer = None
        if args.duration is not None:
            timer = threading.Timer(args.duration / 1000, stop.set)
            timer.start()
        try:
            print(f"{args.workers} workers emitting into {spool}; Ctrl-C to stop", file=out)
            return serve_spool(args, spool, out, stop, any_port_if_busy=True)
        finally:
            if timer is not None:
                timer.cancel()
            stop_workers(workers)
