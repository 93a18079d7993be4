"""The ASGI lifespan glue, driven as a server drives it: emission from startup to shutdown,
the app's own lifespan kept, one given to an app without, and no failure reaching the app."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from biometrics import Collector, Counter
from biometrics.integrations.uvicorn import EmittingApp, emitting
from biometrics.prometheus import Options
from biometrics.runtime import emit_every
from biometrics.web.asgi import Message, Receive, Scope, Send

from ..helpers import spool_values

LIFESPAN: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}}


async def plain(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that knows only HTTP (and fails on anything else, as many do)."""
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def drive(app: Any, scope: Scope, incoming: list[Message]) -> list[Message]:
    """Run ``app`` on ``scope`` with ``incoming`` as the server's messages; what it sent."""
    sent: list[Message] = []

    async def main() -> None:
        queue: asyncio.Queue[Message] = asyncio.Queue()
        for message in incoming:
            queue.put_nowait(message)

        async def send(message: Message) -> None:
            sent.append(message)

        await asyncio.wait_for(app(scope, queue.get, send), timeout=10)

    asyncio.run(main())
    return sent


def lifespan(app: Any) -> list[Message]:
    """A server's whole lifespan conversation: startup, then shutdown."""
    return drive(app, LIFESPAN, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment a worker is started with: a spool (not made yet), a long interval."""
    monkeypatch.setenv("BIOMETRICS_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("BIOMETRICS_INTERVAL", "60")
    return tmp_path / "spool"


def test_an_app_without_lifespan_gets_one_and_emits_until_shutdown(spool: Path) -> None:
    """Startup starts the emission (spool made), shutdown writes the final counts and # END."""
    collector = Collector()
    hits = collector.register(Counter("hits"))
    app = EmittingApp(plain, collector=collector)
    hits.count(3)
    assert [m["type"] for m in lifespan(app)] == [
        "lifespan.startup.complete", "lifespan.shutdown.complete"]  # fmt: skip
    assert app.emission is None and spool_values(spool, "hits_total") == [3]
    (segment,) = spool.glob("uvicorn.*.prom")
    assert segment.read_text().endswith("# END\n")


def test_the_apps_own_lifespan_runs_and_emission_ends_before_the_server_hears(
    spool: Path,
) -> None:
    """The app's startup and shutdown run as before; by the time the server is told shutdown is
    complete, the final emission is on disk."""
    seen: list[str] = []

    async def own(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    app = emitting(own, collector=Collector(), job="web")
    sent = drive(app, LIFESPAN, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    assert seen == ["lifespan.startup", "lifespan.shutdown"]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert next(spool.glob("web.*.prom")).read_text().endswith("# END\n")


def test_http_with_lifespan_off_starts_at_the_first_request(spool: Path) -> None:
    """No lifespan from the server: the first request starts the emission, once."""
    app = EmittingApp(plain, collector=Collector())
    sent = drive(app, {"type": "http"}, [])
    assert sent[0]["status"] == 200
    first = app.emission
    assert first is not None
    drive(app, {"type": "http"}, [])
    assert app.emission is first
    app.stop()
    assert list(spool.glob("uvicorn.*.prom"))


def test_no_spool_is_logged_and_the_app_still_answers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """BIOMETRICS_SPOOL unset: one error naming it, no emission, every request answered."""
    monkeypatch.delenv("BIOMETRICS_SPOOL", raising=False)
    app = EmittingApp(plain, collector=Collector())
    with caplog.at_level(logging.ERROR, logger="biometrics"):
        assert [m["type"] for m in lifespan(app)][-1] == "lifespan.shutdown.complete"
        assert drive(app, {"type": "http"}, [])[0]["status"] == 200
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "BIOMETRICS_SPOOL is not set" in errors[0]
    assert app.emission is None


def test_an_app_failing_its_startup_still_ends_the_emission(spool: Path) -> None:
    """The app says its startup failed and raises: the server exits, so the emission has ended
    (final emission written) before the error reaches it."""

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
        raise RuntimeError("no database")

    app = EmittingApp(broken, collector=Collector())
    with pytest.raises(RuntimeError, match="no database"):
        lifespan(app)
    assert app.emission is None
    assert next(spool.glob("uvicorn.*.prom")).read_text().endswith("# END\n")


def test_an_app_without_lifespan_that_reads_first_is_served_with_metrics(spool: Path) -> None:
    """A raw ASGI app that reads before it looks at the scope takes the startup message and
    raises without a lifespan answer; uvicorn's default ``--lifespan auto`` takes that as "no
    lifespan" and serves the app, so its emission must go on (before: stopped, no metrics)."""
    from uvicorn.config import Config  # the real server's lifespan
    from uvicorn.lifespan.on import LifespanOn

    async def reads_first(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = EmittingApp(reads_first, collector=Collector())
    config = Config(app, lifespan="auto", log_level="critical")
    config.load()
    server_lifespan = LifespanOn(config)

    async def start() -> bool:
        await server_lifespan.startup()
        return server_lifespan.should_exit

    assert asyncio.run(start()) is False, "uvicorn serves the app"
    try:
        assert app.emission is not None and app.emission.emit()
        assert list(spool.glob("uvicorn.*.prom"))
    finally:
        app.stop()


def test_an_emission_the_app_started_is_adopted_not_doubled(spool: Path) -> None:
    """An app module that calls emit_every itself and is wrapped: the process is one source,
    every count once, ended with # END at lifespan shutdown (before: two sources, 2x)."""
    collector = Collector()
    hits = collector.register(Counter("hits"))
    theirs = emit_every(3600, collector=collector, options=Options.per_process(spool, "app"))
    try:
        app = EmittingApp(plain, collector=collector)
        hits.count(3)
        lifespan(app)
    finally:
        theirs.stop()
    assert spool_values(spool, "hits_total") == [3]
    (segment,) = spool.glob("*.prom")
    assert segment.name.startswith("app.") and segment.read_text().endswith("# END\n")
