"""``biometrics demo``: worker processes emitting realistic sensors into a spool.

``serve`` exports them, so a newcomer sees the whole pipeline with nothing to configure.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from multiprocessing.process import BaseProcess

from ..collector import Collector
from ..family import Family
from ..histogram import Histogram
from ..moments import Moments
from ..prometheus import Emitter, Options
from ..sensors import Counter, Gauge

__all__ = ["start_workers", "stop_workers", "worker"]

_ROUTES = (("/", 0.004), ("/search", 0.03), ("/checkout", 0.08), ("/api/items", 0.01))


def worker(spool: str, job: str, seed: int, emit_every: float, lifetime: float | None) -> None:
    """Serve fake requests and emit every ``emit_every`` s until the parent goes or time is up."""
    rng = random.Random(seed)
    parent = os.getppid()
    collector = Collector()
    requests = Family(Counter, "http.requests_total", ("route", "code"),
                      help="Requests served.", collector=collector)  # fmt: skip
    latency = Family(Histogram, "http.request.duration_seconds", ("route",),
                     help="Request latency.", collector=collector)  # fmt: skip
    in_flight = collector.register(Gauge("http.in_flight", help="Requests in progress."))
    size = collector.register(Moments("http.response.bytes", help="Response body size."))
    options = Options.per_process(spool, job, flush_interval=emit_every)
    started = time.monotonic()
    with Emitter(options) as emitter:
        while os.getppid() == parent:
            for _ in range(rng.randint(20, 80)):
                route, typical = rng.choice(_ROUTES)
                code = "500" if rng.random() < 0.01 else "200"
                requests.labels(route, code).click()
                latency.labels(route).observe(rng.lognormvariate(0.0, 0.6) * typical)
                size.add(max(0.0, rng.gauss(4096.0, 1024.0)))
            in_flight.set(rng.randint(0, 16))
            collector.emit(emitter, time.time_ns() // 1_000_000)
            if lifetime is not None and time.monotonic() - started >= lifetime:
                break
            time.sleep(emit_every)


def start_workers(
    spool: str, count: int, *, emit_every: float = 1.0, lifetime: float | None = None
) -> list[BaseProcess]:
    """Start ``count`` worker processes (spawned, so no state is shared with the parent)."""
    context = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = []
    for i in range(count):
        process = context.Process(target=worker, args=(spool, "demo", i, emit_every, lifetime),
                                  name=f"biometrics-demo-{i}", daemon=True)  # fmt: skip
        process.start()
        workers.append(process)
    return workers


def stop_workers(workers: list[BaseProcess], timeout: float = 5.0) -> None:
    """Terminate the workers (their last segment is unlocked by the kernel) and reap them."""
    for process in workers:
        process.terminate()
    deadline = time.monotonic() + timeout
    for process in workers:
        process.join(max(0.0, deadline - time.monotonic()))
