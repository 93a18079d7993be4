"""README's Django recipe as written: gunicorn, 4 workers, the app config emitting, `serve`.

The middleware labels by URL pattern; a view's exception is the 500 Django answers; serve's
merged page counts every request exactly, the histogram's count equals the requests, and the
in-flight gauge, summed over the workers, is back to 0.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..helpers import wait_for
from ._prometheus import free_port
from .apps.recipe import Recipe, get_status, page_values

ITEMS = 40
BOOMS = 6
MISSES = 4


def test_django_recipe_counts_every_request_by_url_pattern(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    recipe = Recipe("django", tmp_path, {
        "BIOMETRICS_SPOOL": str(tmp_path / "spool"), "BIOMETRICS_INTERVAL": "0.2",
        "PORT": str(port), "METRICS_PORT": str(metrics_port),
    })  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        recipe.start()
        recipe.wait_up(f"http://127.0.0.1:{metrics_port}/-/ready")
        recipe.wait_up(f"{base}/items/0/")  # one counted request: the poll that got through
        with ThreadPoolExecutor(8) as pool:
            items = list(pool.map(lambda i: get_status(f"{base}/items/{i}/"), range(1, ITEMS + 1)))
            booms = list(pool.map(lambda _: get_status(f"{base}/boom/"), range(BOOMS)))
            misses = list(pool.map(lambda i: get_status(f"{base}/nope/{i}"), range(MISSES)))
        assert (set(items), set(booms), set(misses)) == ({200}, {500}, {404})
        item = 'method="GET",route="/items/<int:pk>/",status="200"'
        expected: dict[str, float | None] = {
            f"http_requests_total{{{item}}}": ITEMS + 1,
            f"http_request_duration_seconds_count{{{item}}}": ITEMS + 1,
            f'http_request_duration_seconds_bucket{{{item},le="+Inf"}}': ITEMS + 1,
            'http_requests_total{method="GET",route="/boom/",status="500"}': BOOMS,
            'http_requests_total{method="GET",route="<unmatched>",status="404"}': MISSES,
            'http_requests_in_progress{method="GET"}': 0.0,
        }

        def page() -> dict[str, float | None]:
            recipe.alive()
            return page_values(metrics_port, list(expected))

        wait_for(page, "serve to count every request", accept=expected.__eq__, timeout=30)
    finally:
        recipe.stop()
