"""README's Flask recipe as written: gunicorn, 4 forked workers, segments, `biometrics serve`.

Requests of every kind (a templated route, a raising view, no route, a wrong method) are
sent from 8 threads; serve's merged page must count each exactly, by route template and
status, with the histogram's count equal to the requests and nothing left in flight.
"""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..helpers import wait_for
from ._prometheus import free_port
from .apps.recipe import Recipe, get_status, page_values

ITEMS = 60
BOOMS = 10
MISSES = 5
POSTS = 5


def post_status(url: str) -> int:
    request = urllib.request.Request(url, data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_flask_recipe_counts_every_request_by_route_template(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    spool = tmp_path / "spool"
    recipe = Recipe("flask", tmp_path, {
        "BIOMETRICS_SPOOL": str(spool), "BIOMETRICS_INTERVAL": "0.2",
        "PORT": str(port), "METRICS_PORT": str(metrics_port),
    })  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        recipe.start()
        recipe.wait_up(f"http://127.0.0.1:{metrics_port}/-/ready")
        recipe.wait_up(f"{base}/items/0")  # counts one request when it answers
        with ThreadPoolExecutor(8) as pool:
            items = list(pool.map(lambda i: get_status(f"{base}/items/{i}"), range(1, ITEMS + 1)))
            booms = list(pool.map(lambda _: get_status(f"{base}/boom"), range(BOOMS)))
            misses = list(pool.map(lambda i: get_status(f"{base}/nope/{i}"), range(MISSES)))
            posts = list(pool.map(lambda _: post_status(f"{base}/items/1"), range(POSTS)))
        assert (set(items), set(booms), set(misses), set(posts)) == ({200}, {500}, {404}, {405})
        item = 'method="GET",route="/items/<int:item_id>",status="200"'
        expected = {
            f"http_requests_total{{{item}}}": None,  # filled below: the warm-ups count too
            'http_requests_total{method="GET",route="/boom",status="500"}': BOOMS,
            'http_requests_total{method="GET",route="<unmatched>",status="404"}': MISSES,
            'http_requests_total{method="POST",route="<unmatched>",status="405"}': POSTS,
            'http_request_duration_seconds_count{method="GET",route="/boom",status="500"}': BOOMS,
            'http_requests_in_progress{method="GET"}': 0.0,
            'http_requests_in_progress{method="POST"}': 0.0,
        }
        series = [*expected, f"http_request_duration_seconds_count{{{item}}}",
                  f'http_request_duration_seconds_bucket{{{item},le="+Inf"}}']  # fmt: skip

        def settled() -> dict[str, float | None]:
            recipe.alive()
            return page_values(metrics_port, series)

        def complete(values: dict[str, float | None]) -> bool:
            counted = values[f"http_requests_total{{{item}}}"]
            return (
                counted is not None
                and counted >= ITEMS + 1
                and all(values[s] == v for s, v in expected.items() if v is not None)
                and values[f"http_request_duration_seconds_count{{{item}}}"] == counted
            )

        values = wait_for(settled, "serve to show every request", accept=complete, timeout=30)
        # /items/0 answered once per wait_up poll that got through: exactly one of them did
        assert values[f"http_requests_total{{{item}}}"] == ITEMS + 1
        assert values[f'http_request_duration_seconds_bucket{{{item},le="+Inf"}}'] == ITEMS + 1
    finally:
        recipe.stop()
