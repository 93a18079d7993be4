"""``biometrics demo``: worker processes emitting realistic sensors into a spool.

``serve`` exports them, so a newcomer sees the whole pipeline with nothing to configure.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from multiprocessing.process import BaseProcess

from .. import _clock
from ..collector import Collector
from ..family import Family
from ..histogram import Histogram
from ..moments import Moments
from ..prometheus import Options, SegmentEmitter
from ..sensors import Counter, Gauge

__all__ = ["start_workers", "stop_workers", "worker"]

_ROUTES = (("/", 0.004), ("/search", 0.03), ("/checkout", 0.08), ("/api/items", 0.01))


def worker(spool: str, job: str, seed: int, emit_every: float, lifetime: float | None) -> None:
    """Serve fake requests and emit every ``emit_every`` s until the parent goes or time is up.

    Ctrl-C reaches the whole foreground process group; the parent stops the workers itself
    (SIGTERM), so they ignore SIGINT rather than each print a KeyboardInterrupt traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rng = random.Random(seed)
    parent = os.getppid()
    collector = Collector()
    # The README's convention: dotted labels, no _total (a counter's page name gets it).
    requests = Family(Counter, "http.requests", ("route", "code"),
                      help="Requests served.", collector=collector)  # fmt: skip
    latency = Family(Histogram, "http.request.duration.seconds", ("route",),
                     help="Request latency.", collector=collector)  # fmt: skip
    in_flight = collector.register(  # declared: serve adds the workers' values up
        Gauge("http.in_flight", help="Requests in progress.", merge="sum", live_only=True)
    )
    size = collector.register(Moments("http.response.bytes", help="Response body size."))
    options = Options.per_process(spool, job, flush_interval=emit_every)
    started = time.monotonic()
    with SegmentEmitter(options) as emitter:
        while os.getppid() == parent:
            for _ in range(rng.randint(20, 80)):
                route, typical = rng.choice(_ROUTES)
                code = "500" if rng.random() < 0.01 else "200"
                requests.labels(route, code).click()
                latency.labels(route).observe(rng.lognormvariate(0.0, 0.6) * typical)
                size.add(max(0.0, rng.gauss(4096.0, 1024.0)))
            in_flight.set(rng.randint(0, 16))
            collector.emit(emitter, _clock.now_ms())
            emitter.close()  # finished at once, as emit_every does: on the page within a poll
            if lifetime is not None and time.monotonic() - started >= lifetime:
                break
            time.sleep(emit_every)
        emitter.end()  # a clean stop: serve drops this worker's in-flight value at once


def start_workers(
    spool: str, count: int, *, emit_every: float = 1.0, lifetime: float | None = None
) -> list[BaseProcess]:
    """Start ``count`` worker processes (spawned, so no state is shared with the parent).

    They are started with SIGINT ignored, which a spawned interpreter inherits (a mask is not
    inherited): a Ctrl-C while one is still importing cannot print its traceback.  Meanwhile
    SIGINT is also blocked here, so this process gets a Ctrl-C once the workers are started.
    """
    context = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = []
    try:
        with _sigint_ignored_by_children():
            for i in range(count):
                process = context.Process(target=worker,
                                          args=(spool, "demo", i, emit_every, lifetime),
                                          name=f"biometrics-demo-{i}", daemon=True)  # fmt: skip
                process.start()
                workers.append(process)
    except BaseException:  # a Ctrl-C held back is raised on leaving the block: stop them too
        stop_workers(workers)
        raise
    return workers


@contextlib.contextmanager
def _sigint_ignored_by_children() -> Iterator[None]:
    """SIGINT ignored (inherited by spawned children) and blocked (held for us) meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if handler is None else handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def stop_workers(workers: list[BaseProcess], timeout: float = 5.0) -> None:
    """Terminate the workers (their last segment is unlocked by the kernel) and reap them."""
    for process in workers:
        process.terminate()
    deadline = time.monotonic() + timeout
    for process in workers:
        process.join(max(0.0, deadline - time.monotonic()))
