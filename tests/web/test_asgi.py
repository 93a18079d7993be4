import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from biometrics import Collector
from biometrics.web import UNMATCHED, BiometricsASGIMiddleware
from biometrics.web.asgi import Message, Receive, Scope, Send

from ._pages import duration_count, in_progress, requests, samples


def run(app: Any, scope: Scope, sent: list[Message]) -> None:
    """Run one request through ``app``: an empty body, then a client that waits (bounded)."""
    bodies = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        if bodies:
            return bodies.pop()
        await asyncio.sleep(10)  # cancelled when the response is done; never a disconnect
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), 20))


def call(app: Any, method: str, path: str) -> tuple[int, bytes]:
    """Status and body of one request to ``app`` (an exception out of it propagates)."""
    sent: list[Message] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [], "server": ("127.0.0.1", 80)}  # fmt: skip
    run(app, scope, sent)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return int(status), b"".join(
        m.get("body", b"") for m in sent if m["type"] != "http.response.start"
    )


def test_starlette_routes_are_labelled_by_their_template() -> None:
    async def item(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(request.path_params["item_id"]))

    async def boom(request: Request) -> PlainTextResponse:
        raise RuntimeError("boom")

    c = Collector()
    app = Starlette(routes=[Route("/items/{item_id:int}", item), Route("/boom", boom)])
    app.add_middleware(BiometricsASGIMiddleware, collector=c)
    for i in range(4):
        assert call(app, "GET", f"/items/{i}")[0] == 200
    assert call(app, "POST", "/items/1")[0] == 405
    assert call(app, "GET", "/nope")[0] == 404
    with pytest.raises(RuntimeError):  # after the 500 is sent, Starlette re-raises to the server
        call(app, "GET", "/boom")
    values = samples(c)
    assert requests(values, "GET", "/items/{item_id}", "200") == 4
    assert duration_count(values, "GET", "/items/{item_id}", "200") == 4
    assert requests(values, "POST", "/items/{item_id}", "405") == 1
    assert requests(values, "GET", UNMATCHED, "404") == 1
    assert requests(values, "GET", "/boom", "500") == 1
    assert in_progress(values, "GET") == 0.0


def test_a_streamed_response_is_done_at_its_last_body_message() -> None:
    c = Collector()
    seen: list[float | None] = []

    async def chunks() -> Any:
        for part in (b"a", b"b"):
            seen.append(in_progress(samples(c), "GET"))
            yield part

    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(chunks())

    app = Starlette(routes=[Route("/s", stream)])
    app.add_middleware(BiometricsASGIMiddleware, collector=c)
    assert call(app, "GET", "/s") == (200, b"ab")
    assert seen == [1.0, 1.0]
    values = samples(c)
    assert requests(values, "GET", "/s", "200") == 1
    assert in_progress(values, "GET") == 0.0


def test_other_scopes_pass_through_and_no_response_is_a_500() -> None:
    c = Collector()
    scopes: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope["type"])

    wrapped = BiometricsASGIMiddleware(app, collector=c, route=lambda scope: "/r")
    run(wrapped, {"type": "lifespan"}, [])
    run(wrapped, {"type": "http", "method": "GET", "path": "/"}, [])
    assert scopes == ["lifespan", "http"]
    assert requests(samples(c), "GET", "/r", "500") == 1


def test_an_exception_after_the_start_counts_as_500() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        raise ConnectionResetError("peer gone")

    c = Collector()
    sent: list[Message] = []
    with pytest.raises(ConnectionResetError):
        run(BiometricsASGIMiddleware(app, collector=c), {"type": "http", "method": "GET"}, sent)
    assert len(sent) == 2
    values = samples(c)
    assert requests(values, "GET", UNMATCHED, "500") == 1
    assert in_progress(values, "GET") == 0.0


def test_pathsend_ends_the_response_and_a_later_error_is_not_counted_again() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["biometrics.route"] = "/file"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": "/etc/hostname"})
        raise RuntimeError("a background task failed")

    c = Collector()
    with pytest.raises(RuntimeError):
        run(BiometricsASGIMiddleware(app, collector=c), {"type": "http", "method": "GET"}, [])
    values = samples(c)
    assert requests(values, "GET", "/file", "200") == 1
    assert requests(values, "GET", "/file", "500") is None


def test_statuses_a_proxy_passes_on_are_bounded() -> None:
    async def proxy(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": scope["upstream"], "headers": []})
        await send({"type": "http.response.body", "body": b""})

    c = Collector()
    app = BiometricsASGIMiddleware(proxy, collector=c, route=lambda scope: "/up")
    for status in (*range(1000, 1050), "200", None, 200):
        run(app, {"type": "http", "method": "GET", "upstream": status}, [])
    values = samples(c)
    assert requests(values, "GET", "/up", "_OTHER") == 50
    assert requests(values, "GET", "/up", "500") == 2  # not an int: no status the app gave
    assert requests(values, "GET", "/up", "200") == 1
    assert in_progress(values, "GET") == 0.0
