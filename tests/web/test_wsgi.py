import io
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from biometrics import Collector
from biometrics.web import ROUTE_KEY, UNMATCHED, BiometricsWSGIMiddleware
from biometrics.web.wsgi import StartResponse

from ._pages import duration_count, in_progress, requests, samples

Environ = dict[str, Any]


def ok(environ: Environ, start_response: StartResponse) -> list[bytes]:
    environ[ROUTE_KEY] = "/items/<id>"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def boom(environ: Environ, start_response: StartResponse) -> list[bytes]:
    raise RuntimeError("boom")


def stream(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    start_response("206 Partial Content", [])  # called at the first iteration, as PEP 3333 lets
    yield b"a"
    yield b"b"


class Recorder:
    def __init__(self) -> None:
        self.statuses: list[str] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc: object = None) -> Any:
        self.statuses.append(status)
        return lambda data: None


def call(
    app: BiometricsWSGIMiddleware, method: str = "GET", extra: Environ | None = None
) -> Iterable[bytes]:
    return app({"REQUEST_METHOD": method, "PATH_INFO": "/x", **(extra or {})}, Recorder())


def test_counts_by_route_status_and_method() -> None:
    c = Collector()
    app = BiometricsWSGIMiddleware(ok, collector=c)
    for _ in range(5):
        assert list(call(app)) == [b"ok"]
    call(app, "POST")
    values = samples(c)
    assert requests(values, "GET", "/items/<id>", "200") == 5
    assert requests(values, "POST", "/items/<id>", "200") == 1
    assert duration_count(values, "GET", "/items/<id>", "200") == 5
    assert in_progress(values, "GET") == 0.0


def test_an_exception_counts_as_500_and_propagates() -> None:
    c = Collector()
    app = BiometricsWSGIMiddleware(boom, collector=c)
    with pytest.raises(RuntimeError, match="boom"):
        call(app)
    values = samples(c)
    assert requests(values, "GET", UNMATCHED, "500") == 1
    assert in_progress(values, "GET") == 0.0


def test_a_streamed_body_is_done_when_the_server_closes_it() -> None:
    c = Collector()
    app = BiometricsWSGIMiddleware(stream, collector=c, route=lambda environ: "/stream")
    body = call(app)
    chunks = iter(body)
    assert next(chunks) == b"a"
    values = samples(c)
    assert in_progress(values, "GET") == 1.0
    assert requests(values, "GET", "/stream", "206") is None
    assert list(chunks) == [b"b"]
    body.close()  # type: ignore[attr-defined]
    body.close()  # type: ignore[attr-defined]  # twice: counted once
    values = samples(c)
    assert requests(values, "GET", "/stream", "206") == 1
    assert in_progress(values, "GET") == 0.0


def test_an_exception_in_the_body_counts_as_500() -> None:
    def broken(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"a"
        raise OSError("disk gone")

    c = Collector()
    body = call(BiometricsWSGIMiddleware(broken, collector=c))
    with pytest.raises(OSError, match="disk gone"):
        list(body)
    body.close()  # type: ignore[attr-defined]
    assert requests(samples(c), "GET", UNMATCHED, "500") == 1


def test_a_file_wrapper_is_passed_through_for_sendfile() -> None:
    class FileWrapper:
        def __init__(self, f: io.BytesIO, size: int = 8192) -> None:
            self.f = f

        def __iter__(self) -> Iterator[bytes]:
            return iter([self.f.read()])

    def send_file(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        wrapper: Any = environ["wsgi.file_wrapper"](io.BytesIO(b"data"))
        return wrapper  # type: ignore[no-any-return]

    c = Collector()
    app = BiometricsWSGIMiddleware(send_file, collector=c)
    body = call(app, extra={"wsgi.file_wrapper": FileWrapper})
    assert type(body) is FileWrapper
    assert requests(samples(c), "GET", UNMATCHED, "200") == 1


def test_start_response_passes_exc_info_on() -> None:
    def retry(environ: Environ, start_response: StartResponse) -> list[bytes]:
        try:
            raise ValueError("first")
        except ValueError as e:
            start_response("503 Service Unavailable", [], (ValueError, e, e.__traceback__))
        return [b""]

    c = Collector()
    recorder = Recorder()
    BiometricsWSGIMiddleware(retry, collector=c)({"REQUEST_METHOD": "GET"}, recorder)
    assert recorder.statuses == ["503 Service Unavailable"]
    assert requests(samples(c), "GET", UNMATCHED, "503") == 1


def test_a_body_iterated_to_its_end_counts_even_if_the_server_never_closes_it() -> None:
    c = Collector()
    app = BiometricsWSGIMiddleware(stream, collector=c, route=lambda environ: "/stream")
    assert list(call(app)) == [b"a", b"b"]  # a buggy server: no close()
    values = samples(c)
    assert requests(values, "GET", "/stream", "206") == 1
    assert in_progress(values, "GET") == 0.0


def test_a_body_abandoned_midway_counts_once() -> None:
    c = Collector()
    app = BiometricsWSGIMiddleware(stream, collector=c, route=lambda environ: "/stream")
    body = call(app)
    chunks = iter(body)
    assert next(chunks) == b"a"
    chunks.close()  # type: ignore[attr-defined]  # the client went away: the server stops
    body.close()  # type: ignore[attr-defined]
    values = samples(c)
    assert requests(values, "GET", "/stream", "206") == 1
    assert in_progress(values, "GET") == 0.0


def test_a_hostile_status_line_makes_no_new_series() -> None:
    def echo(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response(environ["STATUS"], [])
        return [b""]

    c = Collector()
    app = BiometricsWSGIMiddleware(echo, collector=c)
    for status in ("999 Odd", "abc def", "2", "ééé x", "404 Not Found"):
        call(app, extra={"STATUS": status})
    values = samples(c)
    assert requests(values, "GET", UNMATCHED, "_OTHER") == 4
    assert requests(values, "GET", UNMATCHED, "404") == 1
