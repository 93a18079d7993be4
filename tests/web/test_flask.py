from typing import Any

import flask

from biometrics import Collector
from biometrics.web import UNMATCHED
from biometrics.web.flask import instrument

from ._pages import duration_count, in_progress, requests, samples


def make_app(collector: Collector) -> flask.Flask:
    app = flask.Flask(__name__)
    api = flask.Blueprint("api", __name__, url_prefix="/api")

    @api.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/stream")
    def stream() -> flask.Response:
        return flask.Response(iter([b"a", b"b"]))

    @app.before_request
    def refuse() -> tuple[str, int] | None:  # registered after instrument(): the route is known
        return ("no", 403) if flask.request.path == "/api/items/403" else None

    instrument(app, collector=collector)
    app.register_blueprint(api)
    return app


def status(client: Any, path: str, method: str = "GET") -> tuple[int, bytes]:
    """Status and body; the response closed, as a server closes it once the body is sent."""
    with client.open(path, method=method) as response:
        return int(response.status_code), bytes(response.data)


def test_requests_are_labelled_by_rule_with_blueprint_prefix() -> None:
    c = Collector()
    client = make_app(c).test_client()
    for i in range(3):
        assert status(client, f"/api/items/{i}")[0] == 200
    assert status(client, "/api/items/403")[0] == 403
    assert status(client, "/api/items/1", "POST")[0] == 405
    assert status(client, "/nope")[0] == 404
    assert status(client, "/boom")[0] == 500
    assert status(client, "/stream") == (200, b"ab")
    values = samples(c)
    assert requests(values, "GET", "/api/items/<int:item_id>", "200") == 3
    assert duration_count(values, "GET", "/api/items/<int:item_id>", "200") == 3
    assert requests(values, "GET", "/api/items/<int:item_id>", "403") == 1
    assert requests(values, "POST", UNMATCHED, "405") == 1
    assert requests(values, "GET", UNMATCHED, "404") == 1
    assert requests(values, "GET", "/boom", "500") == 1
    assert requests(values, "GET", "/stream", "200") == 1
    assert in_progress(values, "GET") == 0.0
