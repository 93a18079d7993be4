"""The Celery hooks in-process: Celery's own signals sent as a worker sends them, eager tasks.

The real prefork worker (billiard children leaving by ``os._exit``) is in
``tests/integration/test_celery.py``; here each receiver's contract, one at a time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, signals

from biometrics import Collector, Counter, Gauge, InvalidValueError
from biometrics.files import merged_page
from biometrics.integrations import celery as hooks
from biometrics.integrations.celery import instrument, uninstrument
from biometrics.prometheus import Options
from biometrics.runtime import emit_every

from ..helpers import page_value, series_value

HOST = "celery@test"


@pytest.fixture(autouse=True)
def _disconnected() -> Iterator[None]:
    """Celery's signals are process-wide: leave none of our receivers to the next test."""
    try:
        yield
    finally:
        uninstrument()


def eager_app(collector: Collector) -> tuple[Celery, Any, Any]:
    """An app whose tasks run in the caller (task signals sent as a worker sends them)."""
    app = Celery("unit", set_as_current=False)
    app.conf.task_always_eager = True
    clicks = collector.register(Counter("app.clicks", help="Clicks."))

    @app.task(name="click")
    def click(n: int) -> int:
        clicks.click()
        return n

    @app.task(name="boom")
    def boom() -> None:
        raise RuntimeError("task failed on purpose")

    return app, click, boom


def page(spool: Path) -> str:
    text, problems = merged_page([spool])
    assert problems == []
    return text


def counter_values(collector: Collector, label: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        s.label_pairs: s.read()
        for s in collector.sensors()
        if isinstance(s, Counter) and s.label == label
    }


def test_a_pool_child_emits_from_init_and_ends_at_its_shutdown(tmp_path: Path) -> None:
    collector = Collector()
    instrumentation = instrument(spool=tmp_path, job="celery", interval=3600, collector=collector)
    _, click, boom = eager_app(collector)
    assert instrumentation.emission is None, "nothing starts until a worker does"
    signals.worker_process_init.send(sender=HOST)
    emission = instrumentation.emission
    assert emission is not None
    prefix = os.path.basename(emission.options.prefix)
    assert prefix.startswith("celery.") and prefix.endswith(f".{os.getpid()}.")
    assert [click.delay(i).get() for i in range(5)] == list(range(5))
    assert boom.delay().failed()
    assert list(tmp_path.glob("*.prom")) == [], "an hour-long interval: nothing written yet"

    signals.worker_process_shutdown.send(sender=HOST, pid=os.getpid(), exitcode=0)

    assert instrumentation.emission is None
    text = page(tmp_path)
    assert page_value(text, "app_clicks_total") == 5
    assert page_value(text, 'celery_tasks_total{state="SUCCESS",task="click"}') == 5
    assert page_value(text, 'celery_tasks_total{state="FAILURE",task="boom"}') == 1
    assert page_value(text, 'celery_task_runtime_seconds_count{task="click"}') == 5
    assert page_value(text, 'celery_task_runtime_seconds_count{task="boom"}') == 1
    assert 0 < page_value(text, 'celery_task_runtime_seconds_sum{task="click"}') < 5
    segments = sorted(tmp_path.glob(f"{prefix}*.prom"))
    assert len(segments) == 1
    assert segments[-1].read_text().rstrip().endswith("# END")


def test_the_main_process_emits_from_worker_init_to_worker_shutdown(tmp_path: Path) -> None:
    """The solo and threads pools run tasks in the main process, which also sends
    ``worker_process_init`` (solo): it must not start a second emission.
    """
    collector = Collector()
    instrumentation = instrument(spool=tmp_path, interval=3600, collector=collector)
    _, click, _ = eager_app(collector)
    signals.worker_init.send(sender=object())
    first = instrumentation.emission
    signals.worker_process_init.send(sender=HOST)
    assert first is not None and instrumentation.emission is first
    click.delay(1).get()
    signals.worker_shutdown.send(sender=object())
    assert instrumentation.emission is None
    text = page(tmp_path)
    assert page_value(text, 'celery_tasks_total{state="SUCCESS",task="click"}') == 1
    assert len(list(tmp_path.glob("*.prom"))) == 1


def test_instrument_again_replaces_the_receivers_and_keeps_the_emission(tmp_path: Path) -> None:
    """An app module imported twice (``proj.celery`` and ``celery``) must not count twice."""
    collector = Collector()
    first = instrument(spool=tmp_path, interval=3600, collector=collector)
    signals.worker_process_init.send(sender=HOST)
    second = instrument(spool=tmp_path, interval=3600, collector=collector)
    assert second.emission is not None and second.emission is first.emission
    _, click, _ = eager_app(collector)
    for i in range(3):
        click.delay(i).get()
    assert counter_values(collector, "celery.tasks") == {
        (("state", "SUCCESS"), ("task", "click")): 3
    }
    signals.worker_process_shutdown.send(sender=HOST, pid=os.getpid(), exitcode=0)
    assert page_value(page(tmp_path), 'celery_tasks_total{state="SUCCESS",task="click"}') == 3


def test_the_spool_is_read_from_the_environment_when_the_worker_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BIOMETRICS_SPOOL", raising=False)
    instrumentation = instrument(interval=3600, collector=Collector())
    monkeypatch.setenv("BIOMETRICS_SPOOL", str(tmp_path))
    signals.worker_process_init.send(sender=HOST)
    emission = instrumentation.emission
    assert emission is not None
    assert os.path.dirname(emission.options.prefix) == str(tmp_path)


def test_no_spool_is_logged_once_and_tasks_still_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("BIOMETRICS_SPOOL", raising=False)
    collector = Collector()
    instrumentation = instrument(collector=collector)
    _, click, _ = eager_app(collector)
    with caplog.at_level(logging.ERROR, logger="biometrics"):
        for _ in range(3):
            signals.worker_process_init.send(sender=HOST)
    assert instrumentation.emission is None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "BIOMETRICS_SPOOL" in errors[0].getMessage()
    assert click.delay(7).get() == 7
    signals.worker_process_shutdown.send(sender=HOST, pid=os.getpid(), exitcode=0)


def test_a_failing_hook_is_counted_and_logged_and_the_task_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    collector = Collector()
    # A gauge already holds the series the task counter needs: registering it fails.
    collector.register(Gauge("celery.tasks", labels={"task": "click", "state": "SUCCESS"}))
    instrument(spool=tmp_path, interval=3600, collector=collector)
    _, click, _ = eager_app(collector)
    with caplog.at_level(logging.WARNING, logger="biometrics"):
        assert [click.delay(i).get() for i in range(4)] == [0, 1, 2, 3]
    assert counter_values(collector, "app.clicks") == {(): 4}
    assert counter_values(collector, "biometrics.celery.hook.failure") == {
        (("hook", "task_postrun"),): 4
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "rate-limited: the first failure is logged, the rest counted"
    assert "task_postrun" in warnings[0] and "DuplicateSensorError" in warnings[0]


def test_tasks_false_counts_no_tasks(tmp_path: Path) -> None:
    collector = Collector()
    instrumentation = instrument(spool=tmp_path, interval=3600, tasks=False, collector=collector)
    _, click, _ = eager_app(collector)
    signals.worker_process_init.send(sender=HOST)
    click.delay(1).get()
    signals.worker_process_shutdown.send(sender=HOST, pid=os.getpid(), exitcode=0)
    assert instrumentation.emission is None
    text = page(tmp_path)
    assert page_value(text, "app_clicks_total") == 1
    assert "celery_task" not in text


def test_start_times_of_tasks_that_never_end_are_bounded() -> None:
    collector = Collector()
    instrument(collector=collector)
    limit = hooks._MAX_IN_FLIGHT
    for i in range(limit + 5):
        signals.task_prerun.send(sender=None, task_id=f"t{i}", task=None)
    started = hooks._metrics_for(collector).started
    assert 0 < len(started) <= limit


def test_uninstrument_stops_the_emission_and_disconnects(tmp_path: Path) -> None:
    collector = Collector()
    instrumentation = instrument(spool=tmp_path, interval=3600, collector=collector)
    signals.worker_process_init.send(sender=HOST)
    assert instrumentation.emission is not None
    uninstrument()
    assert instrumentation.emission is None
    assert next(tmp_path.glob("*.prom")).read_text().rstrip().endswith("# END")
    signals.worker_process_init.send(sender=HOST)
    assert instrumentation.emission is None, "no receiver left"
    assert series_value(page(tmp_path), "celery_tasks_total") is None


@pytest.mark.parametrize(
    "arguments", [{"interval": 0}, {"interval": -1.0}, {"interval": "10"}, {"job": ""}]
)
def test_bad_arguments_are_refused_at_instrument(arguments: dict[str, Any]) -> None:
    with pytest.raises(InvalidValueError):
        instrument(**arguments)


def test_an_emission_the_app_started_is_adopted_not_doubled(tmp_path: Path) -> None:
    """An app module that calls emit_every itself (as the README's emit_every recipe does) and
    instrument(): one source for the process, so every task is counted once, and the worker's
    shutdown still writes its final emission and # END."""
    collector = Collector()
    theirs = emit_every(3600, collector=collector, options=Options.per_process(tmp_path, "app"))
    try:
        instrumentation = instrument(spool=tmp_path, interval=3600, collector=collector)
        _, click, _ = eager_app(collector)
        signals.worker_init.send(sender=object())
        assert instrumentation.emission is theirs
        click.delay(1).get()
        signals.worker_shutdown.send(sender=object())
    finally:
        theirs.stop()
    text = page(tmp_path)
    assert page_value(text, "app_clicks_total") == 1
    assert page_value(text, 'celery_tasks_total{state="SUCCESS",task="click"}') == 1
    (segment,) = tmp_path.glob("*.prom")
    assert segment.name.startswith("app.") and segment.read_text().endswith("# END\n")
