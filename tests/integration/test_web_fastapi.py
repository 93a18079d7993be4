"""README's FastAPI recipe as written: uvicorn, one process, its own /metrics (no spool).

Every kind of request (templated route, an HTTPException, an unhandled exception, no route)
is counted exactly by route template and status on the page the app itself serves, which the
strict parser reads; the only request in flight is the scrape itself.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from biometrics.prometheus import Sample, parse

from ..helpers import scrape
from ._prometheus import free_port
from .apps.recipe import Recipe, get_status

ITEMS = 50
NOT_FOUND = 7
BOOMS = 4
MISSES = 3


def test_fastapi_recipe_counts_every_request_by_route_template(tmp_path: Path) -> None:
    port = free_port()
    recipe = Recipe("fastapi", tmp_path, {"PORT": str(port)})
    base = f"http://127.0.0.1:{port}"
    try:
        recipe.start()
        recipe.wait_up(f"{base}/metrics")
        scrape(port)  # uvicorn answered: the scrapes before this one were refused or counted
        with ThreadPoolExecutor(8) as pool:
            items = list(pool.map(lambda i: get_status(f"{base}/items/{i}"), range(1, ITEMS + 1)))
            absent = list(pool.map(lambda _: get_status(f"{base}/items/0"), range(NOT_FOUND)))
            booms = list(pool.map(lambda _: get_status(f"{base}/boom"), range(BOOMS)))
            misses = list(pool.map(lambda i: get_status(f"{base}/nope/{i}"), range(MISSES)))
        assert (set(items), set(absent), set(booms), set(misses)) == ({200}, {404}, {500}, {404})
        page = scrape(port)
        samples = {
            (s.name, s.labels): s.value
            for s in parse(page.encode().splitlines(keepends=True), strict=True)
            if isinstance(s, Sample)
        }

        def value(name: str, **labels: str) -> float | None:
            return samples.get((name, tuple(sorted(labels.items()))))

        item = {"method": "GET", "route": "/items/{item_id}"}
        assert value("http_requests_total", **item, status="200") == ITEMS
        assert value("http_requests_total", **item, status="404") == NOT_FOUND
        assert value("http_requests_total", method="GET", route="/boom", status="500") == BOOMS
        unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
        assert value("http_requests_total", **unmatched) == MISSES
        assert value("http_request_duration_seconds_count", **item, status="200") == ITEMS
        assert value("http_request_duration_seconds_bucket", **item, status="200", le="+Inf") == (
            ITEMS
        )
        scrapes = value("http_requests_total", method="GET", route="/metrics", status="200")
        assert scrapes is not None and scrapes >= 2
        assert value("http_requests_in_progress", method="GET") == 1.0  # this scrape
        memory = value("process_resident_memory_bytes")
        assert memory is not None and memory > 0
    finally:
        recipe.stop()
