"""The Django middleware and app config in this process, with Django's own test client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, Client
from django.urls import path

from biometrics import Collector
from biometrics.web import UNMATCHED
from biometrics.web import django as web_django
from biometrics.web.metrics import HttpMetrics

from ._pages import duration_count, in_progress, requests, samples


def item(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(str(pk))


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[bytes]:
        yield b"a"
        yield b"b"

    return StreamingHttpResponse(chunks())


def astream(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"

    return StreamingHttpResponse(chunks())


urlpatterns = [
    path("items/<int:pk>/", item),
    path("boom/", boom),
    path("stream/", stream),
    path("astream/", astream),
]


@pytest.fixture(scope="module", autouse=True)
def django_settings() -> None:
    if not settings.configured:
        settings.configure(
            DEBUG=False, ALLOWED_HOSTS=["testserver"], ROOT_URLCONF=__name__,
            MIDDLEWARE=["biometrics.web.django.BiometricsMiddleware"], INSTALLED_APPS=[],
        )  # fmt: skip
        django.setup()


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Collector:
    """The middleware's families in a collector of this test's own."""
    c = Collector()
    monkeypatch.setattr(web_django, "http_metrics", lambda: HttpMetrics(c))
    return c


def test_sync_requests_are_labelled_by_url_pattern(collector: Collector) -> None:
    client = Client(raise_request_exception=False)
    for i in range(3):
        assert client.get(f"/items/{i}/").status_code == 200
    assert client.get("/nope/").status_code == 404
    assert client.get("/boom/").status_code == 500
    response: Any = client.get("/stream/")
    assert in_progress(samples(collector), "GET") == 1.0  # the body is not read yet
    assert b"".join(response.streaming_content) == b"ab"
    response.close()
    values = samples(collector)
    assert requests(values, "GET", "/items/<int:pk>/", "200") == 3
    assert duration_count(values, "GET", "/items/<int:pk>/", "200") == 3
    assert requests(values, "GET", UNMATCHED, "404") == 1
    assert requests(values, "GET", "/boom/", "500") == 1
    assert requests(values, "GET", "/stream/", "200") == 1
    assert in_progress(values, "GET") == 0.0


def test_async_requests_are_counted_too(collector: Collector) -> None:
    async def go() -> list[int]:
        client = AsyncClient(raise_request_exception=False)
        statuses = [(await client.get(f"/items/{i}/")).status_code for i in range(2)]
        response: Any = await client.get("/astream/")
        assert b"".join([part async for part in response.streaming_content]) == b"a"
        return [*statuses, (await client.post("/boom/")).status_code]

    assert asyncio.run(go()) == [200, 200, 500]
    values = samples(collector)
    assert requests(values, "GET", "/items/<int:pk>/", "200") == 2
    assert requests(values, "GET", "/astream/", "200") == 1
    assert requests(values, "POST", "/boom/", "500") == 1
    assert in_progress(values, "GET") == 0.0


def test_the_app_config_starts_one_emission_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_django, "_emission", None)
    monkeypatch.delenv("BIOMETRICS_SPOOL", raising=False)
    assert web_django.start_emission() is None  # no spool: nothing started
    monkeypatch.setenv("BIOMETRICS_SPOOL", str(tmp_path))
    monkeypatch.setenv("BIOMETRICS_JOB", "site")
    config = web_django.BiometricsConfig("biometrics.web.django", web_django)
    config.ready()
    emission = web_django.start_emission()
    assert emission is not None
    try:
        assert web_django.start_emission() is emission
        assert emission.interval == 10.0
        assert emission.emit()
        assert [p.name.split(".")[0] for p in tmp_path.glob("*.prom")] == ["site"]
    finally:
        emission.stop()
