"""The gunicorn hooks in-process: settings from the environment, the spool, the master's
exporter thread and emission, and that no failure reaches gunicorn."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import biometrics.gunicorn as config_module
from biometrics import Collector, Counter
from biometrics.errors import InvalidValueError, SpoolError
from biometrics.integrations.gunicorn import (
    DRAIN_SECONDS,
    SPOOL_MODE,
    GunicornMetrics,
    MasterExporter,
    Settings,
)
from biometrics.prometheus import Options, SegmentEmitter
from biometrics.runtime import emit_every, ensure_spool

from ..helpers import answers_ready, page_value, scrape, series_value, wait_for

LOG = logging.getLogger("tests.gunicorn")


def server() -> Any:
    """What the hooks use of gunicorn's arbiter: its log and the workers' user and group."""
    return SimpleNamespace(log=LOG, cfg=SimpleNamespace(uid=os.geteuid(), gid=os.getegid()))


def test_settings_defaults() -> None:
    """Nothing set: a private spool, loopback 9464, 10 s, forget after an hour."""
    assert Settings.from_env({}, job="gunicorn") == Settings(
        spool=None, job="gunicorn", interval=10.0, listen=("127.0.0.1", 9464),
        forget_after_ms=3_600_000,
    )  # fmt: skip


def test_settings_read_every_variable(tmp_path: Path) -> None:
    """Each variable in each documented form."""
    env = {"BIOMETRICS_SPOOL": str(tmp_path / "s"), "BIOMETRICS_JOB": "web",
           "BIOMETRICS_INTERVAL": "500ms", "BIOMETRICS_LISTEN": "[::1]:9000",
           "BIOMETRICS_FORGET_AFTER": "30m"}  # fmt: skip
    assert Settings.from_env(env, job="gunicorn") == Settings(
        spool=str(tmp_path / "s"), job="web", interval=0.5, listen=("::1", 9000),
        forget_after_ms=1_800_000,
    )  # fmt: skip
    other = Settings.from_env({"BIOMETRICS_LISTEN": ":9464", "BIOMETRICS_FORGET_AFTER": "off",
                               "BIOMETRICS_INTERVAL": "2"}, job="j")  # fmt: skip
    assert (other.listen, other.forget_after_ms, other.interval) == (("", 9464), None, 2.0)
    assert Settings.from_env({"BIOMETRICS_LISTEN": "off"}, job="j").listen is None


@pytest.mark.parametrize(
    ("name", "value"),
    [("BIOMETRICS_LISTEN", "9464"), ("BIOMETRICS_LISTEN", "localhost:99999"),
     ("BIOMETRICS_LISTEN", "::1:9464"), ("BIOMETRICS_INTERVAL", "0"),
     ("BIOMETRICS_INTERVAL", "ten"), ("BIOMETRICS_FORGET_AFTER", "-1h"),
     # shorter than the interval's margin: live workers forgotten, then counted again
     ("BIOMETRICS_FORGET_AFTER", "0"), ("BIOMETRICS_FORGET_AFTER", "15s")],
)  # fmt: skip
def test_settings_refuse_bad_values_naming_the_variable(name: str, value: str) -> None:
    """A value that cannot be used is an InvalidValueError naming the variable and the value."""
    with pytest.raises(InvalidValueError, match=f"{name}=") as caught:
        Settings.from_env({name: value}, job="j")
    assert value in str(caught.value)


def test_ensure_spool_creates_a_private_directory_and_leaves_an_existing_one(
    tmp_path: Path,
) -> None:
    """Created 0700 whatever the umask; an existing directory keeps its mode; a file is refused."""
    old = os.umask(0)
    try:
        assert ensure_spool(str(tmp_path / "a" / "spool"), SPOOL_MODE) is True
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "spool").stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    assert ensure_spool(str(shared), SPOOL_MODE) is False
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    (tmp_path / "file").write_text("x")
    with pytest.raises(SpoolError, match="not a directory"):
        ensure_spool(str(tmp_path / "file"), SPOOL_MODE)


def test_config_module_defines_only_hooks_gunicorn_accepts() -> None:
    """gunicorn applies every setting name a config module defines: ours defines the four hooks
    and nothing else it knows, each with the arity gunicorn checks."""
    cfg = importlib.import_module("gunicorn.config").Config()
    taken = {name for name in vars(config_module) if name in cfg.settings}
    assert taken == {"when_ready", "post_worker_init", "worker_exit", "on_exit"}
    for name in taken:
        cfg.set(name, getattr(config_module, name))  # raises on a wrong arity
        assert cfg.settings[name].get() == getattr(config_module, name)


def test_master_exporter_drains_final_segments_before_its_snapshot(tmp_path: Path) -> None:
    """A finished segment is consumed before the stop: the state holds its count."""
    spool = tmp_path / "spool"
    exporter = MasterExporter(str(spool), "127.0.0.1", 0)
    assert exporter.start() and exporter.port != 0
    collector = Collector()
    done = collector.register(Counter("done"))
    done.count(42)
    with SegmentEmitter(Options.per_process(spool, "web")) as segments:
        collector.emit(segments)
    assert exporter.drain("web.", timeout=10)
    assert page_value(scrape(exporter.port), "done_total") == 42
    assert exporter.stop() and exporter.error is None
    assert '"done_total"' in (spool / ".biometrics" / "state.json").read_text()


def test_master_exporter_reports_a_taken_port(tmp_path: Path) -> None:
    """A port in use: start says False and keeps the error; nothing raises."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        exporter = MasterExporter(str(tmp_path / "spool"), "127.0.0.1", taken.getsockname()[1])
        assert exporter.start() is False
    assert isinstance(exporter.error, OSError)
    assert exporter.stop()


def test_hooks_run_exporter_and_emission_in_the_master(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """when_ready: the spool is made, /metrics answers with the collector's counts; on_exit:
    the last emission is on the page and in the state, and the spool holds no segment of ours."""
    spool = tmp_path / "spool"
    monkeypatch.setenv("BIOMETRICS_SPOOL", str(spool))
    monkeypatch.setenv("BIOMETRICS_LISTEN", "127.0.0.1:0")
    monkeypatch.setenv("BIOMETRICS_INTERVAL", "0.05")
    collector = Collector()
    hits = collector.register(Counter("hits"))
    hooks = GunicornMetrics(collector)
    hooks.when_ready(server())
    try:
        assert hooks.exporter is not None and hooks.emission is not None
        assert stat.S_IMODE(spool.stat().st_mode) == 0o700
        port = hooks.exporter.port
        hits.count(5)
        wait_for(lambda: series_value(scrape(port), "hits_total"), "a periodic emission",
                 accept=lambda value: value == 5)  # fmt: skip
        hits.count(2)  # only the final emission carries these
    finally:
        hooks.on_exit(server())
    assert not hooks.exporter and not list(spool.glob("gunicorn.*.prom"))
    assert '"hits_total"' in (spool / ".biometrics" / "state.json").read_text()
    exporter = MasterExporter(str(spool), "127.0.0.1", 0)  # the state, loaded afresh
    assert exporter.start()
    try:
        wait_for(lambda: answers_ready(f"http://127.0.0.1:{exporter.port}/-/ready"), "the state")
        assert page_value(scrape(exporter.port), "hits_total") == 7
    finally:
        assert exporter.stop()


def test_without_a_spool_a_private_one_is_made_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No BIOMETRICS_SPOOL: a 0700 temporary directory, removed at on_exit."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("BIOMETRICS_SPOOL", raising=False)
    monkeypatch.setenv("BIOMETRICS_LISTEN", "off")
    hooks = GunicornMetrics(Collector(), job="web")
    hooks.when_ready(server())
    assert hooks.spool is not None and hooks.temporary and hooks.exporter is None
    spool = Path(hooks.spool)
    assert spool.parent == tmp_path and stat.S_IMODE(spool.stat().st_mode) == 0o700
    hooks.on_exit(server())
    assert not spool.exists()


def test_failures_are_logged_never_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad setting: nothing starts, one error line.  A taken port: the workers still emit."""
    monkeypatch.setenv("BIOMETRICS_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("BIOMETRICS_LISTEN", "nowhere")
    hooks = GunicornMetrics(Collector())
    with caplog.at_level(logging.INFO, logger=LOG.name):
        hooks.when_ready(server())
        hooks.on_exit(server())
    assert hooks.emission is None and hooks.exporter is None
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "biometrics: not started (BIOMETRICS_LISTEN='nowhere': give HOST:PORT, e.g. "
        "127.0.0.1:9464, :9464 (all interfaces), [::1]:9464, or off); serving without metrics"
    ]
    caplog.clear()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("BIOMETRICS_LISTEN", f"127.0.0.1:{taken.getsockname()[1]}")
        hooks = GunicornMetrics(Collector())
        with caplog.at_level(logging.INFO, logger=LOG.name):
            hooks.when_ready(server())
    try:
        assert hooks.exporter is None and hooks.emission is not None
        assert any("exporter not started" in r.getMessage() for r in caplog.records)
    finally:
        hooks.on_exit(server())
    assert list((tmp_path / "spool").glob("gunicorn.*.prom")), "the emission went on"


def test_an_app_emission_makes_ours_step_aside(tmp_path: Path) -> None:
    """post_worker_init: when the app started emit_every on the same collector, ours stops."""
    hooks = GunicornMetrics(Collector())
    hooks.emission = emit_every(60, collector=hooks.collector,
                                options=Options.per_process(tmp_path, "ours"))  # fmt: skip
    theirs = emit_every(60, collector=hooks.collector,
                        options=Options.per_process(tmp_path, "theirs"))  # fmt: skip
    try:
        hooks.post_worker_init(SimpleNamespace(log=LOG))
        assert [p.name.split(".")[0] for p in tmp_path.glob("*.prom")] == ["ours"]
        assert (next(tmp_path.glob("ours.*.prom")).read_text()).endswith("# END\n")
    finally:
        theirs.stop()


def test_on_exit_does_not_wait_for_another_live_masters_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A USR2 upgrade: the old master exits while the new one's processes (same job, same host,
    same spool) keep their segments open.  on_exit drains its own segments only: no wait of
    DRAIN_SECONDS, no false "segments left" warning (before: both, at every upgrade)."""
    spool = tmp_path / "spool"
    monkeypatch.setenv("BIOMETRICS_SPOOL", str(spool))
    monkeypatch.setenv("BIOMETRICS_LISTEN", "127.0.0.1:0")
    monkeypatch.setenv("BIOMETRICS_INTERVAL", "60")
    hooks = GunicornMetrics(Collector())
    hooks.when_ready(server())
    assert hooks.exporter is not None
    other = subprocess.Popen(
        [sys.executable, "-c", "import sys\n"
         "from biometrics import Collector, Counter\n"
         "from biometrics.prometheus import Options, SegmentEmitter\n"
         "c = Collector(); c.register(Counter('other')).click()\n"
         f"e = SegmentEmitter(Options.per_process({str(spool)!r}, 'gunicorn'))\n"
         "c.emit(e); e.flush(); print('open', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert other.stdout is not None and other.stdout.readline() == "open\n"
        assert list(spool.glob(f"gunicorn.*.{other.pid}.*.prom")), "the other writer's segment"
        with caplog.at_level(logging.INFO, logger=LOG.name):
            began = time.monotonic()
            hooks.on_exit(server())
            took = time.monotonic() - began
    finally:
        other.communicate("", timeout=30)
    assert not [r for r in caplog.records if "segments left" in r.getMessage()]
    assert took < DRAIN_SECONDS, took
    assert not list(spool.glob(f"gunicorn.*.{os.getpid()}.*.prom")), "ours were drained"
