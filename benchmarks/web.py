"""What instrumenting a WSGI app costs per request: ours against prometheus_client's, same run.

``python -c "from benchmarks import web; web.run()"`` (part of ``python -m benchmarks``).

The app is a trivial WSGI callable answering a list body, so the difference is the metrics.
Ours: :class:`biometrics.web.BiometricsWSGIMiddleware` (request counter, latency histogram and
in-flight gauge by method, route and status).  Theirs: the same three metrics with the same
labels written with prometheus_client in a minimal middleware, as prometheus-flask-exporter and
starlette_exporter do it (``labels(...).inc()``, ``.observe()``, ``inc()``/``dec()`` of a
gauge), in its single-process mode.  CPU time per request (``time.process_time``), median of
several rounds; the bare app's time is subtracted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from benchmarks._machine import describe
from biometrics import Collector
from biometrics.web import BiometricsWSGIMiddleware

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
BODY = [b"ok\n"]


def _bare(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return BODY


def _theirs(app: WSGIApp) -> WSGIApp:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry()
    requests = Counter("http_requests", "Requests.", ["method", "route", "status"],
                       registry=registry)  # fmt: skip
    latency = Histogram("http_request_duration_seconds", "Latency.",
                        ["method", "route", "status"], registry=registry)  # fmt: skip
    in_flight = Gauge("http_requests_in_progress", "In flight.", ["method"], registry=registry)

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        gauge = in_flight.labels(method)
        gauge.inc()
        started = time.perf_counter()
        status: list[str] = []

        def starting(line: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            status.append(line[:3])
            return start_response(line, headers, *exc)

        try:
            return app(environ, starting)
        finally:
            code = status[0] if status else "500"
            requests.labels(method, "/items", code).inc()
            latency.labels(method, "/items", code).observe(time.perf_counter() - started)
            gauge.dec()

    return middleware


def _per_request(app: WSGIApp, n: int) -> float:
    """CPU seconds per request, the body consumed and closed as a server does."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/items/1", "biometrics.route": "/items"}

    def start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> None:
        return None

    start = time.process_time()
    for _ in range(n):
        body = app(environ, start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.process_time() - start) / n


def run(*, quick: bool = False) -> None:
    """Print the per-request table."""
    n, rounds = (20_000, 3) if quick else (100_000, 7)
    apps: dict[str, WSGIApp] = {
        "bare app": _bare,
        "biometrics BiometricsWSGIMiddleware": BiometricsWSGIMiddleware(
            _bare, collector=Collector()
        ),
        "prometheus_client, same metrics": _theirs(_bare),
    }
    results = {name: statistics.median(_per_request(app, n) for _ in range(rounds))
               for name, app in apps.items()}  # fmt: skip
    bare = results["bare app"]
    ours = results["biometrics BiometricsWSGIMiddleware"] - bare
    theirs = results["prometheus_client, same metrics"] - bare
    print(f"\n### WSGI middleware cost per request (CPU µs, median of {rounds} x {n:,})\n")
    print("| app | µs per request | metrics cost (minus bare) |")
    print("|---|---:|---:|")
    for name, value in results.items():
        extra = "" if name == "bare app" else f"{(value - bare) * 1e6:.2f}"
        print(f"| {name} | {value * 1e6:.2f} | {extra} |")
    print(f"\nours / theirs (metrics cost): {ours / theirs:.2f}x")


if __name__ == "__main__":
    print(describe())
    run()
