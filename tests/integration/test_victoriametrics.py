"""VictoriaMetrics (Debian 1.79.5), the second real backend: ``ship`` writes to it, it scrapes
``serve``, and the README recipe runs as written.

What it does unlike Prometheus is asserted here, so an upgrade that changes it fails a test:
it stores a re-sent sample twice unless ``-dedup.minScrapeInterval`` is set, takes samples out
of order with no window to configure, answers 204 to samples outside its retention and drops
them, rounds some values (1/3 to 12 digits), keeps no HELP/TYPE metadata, and asks
scrape targets for the 0.0.4 text format only.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from functools import partial
from operator import eq
from pathlib import Path

import pytest

from biometrics import Collector, Counter, Family, Gauge, Histogram
from biometrics.exporter import wants_openmetrics
from biometrics.prometheus import Options, SegmentEmitter
from biometrics.prometheus.exposition import OPENMETRICS_CONTENT_TYPE
from biometrics.ship import RemoteWriteOptions, ShipMetrics, ShipOptions, Shipper

from ..helpers import answers_ready, api_data, readme_recipe, wait_for
from ._prometheus import free_port
from ._serve import Serve, start_workers
from ._victoriametrics import Recorder, Samples, VictoriaMetrics, needs_victoriametrics
from .test_ship_prometheus import expected

pytestmark = needs_victoriametrics

ODD = 'a"b\\c\nd ünï 🙂'
"""A label value with a quote, a backslash, a newline and UTF-8 beyond the BMP."""
SOURCES, STEPS = ("w0", "w1", "w2"), 12  # 2 minutes of history per process, 10 s apart


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def write_history(spool: Path, sources: Sequence[str], start_ms: int, steps: int = STEPS) -> None:
    """Each source's readings ``steps`` times, 10 s apart from ``start_ms``, as segments.

    Values are multiples of 0.25 (exact in binary and in few decimal digits: see
    :func:`test_some_values_come_back_rounded` for why that matters).
    """
    for source in sources:
        c = Collector()
        jobs = c.register(Counter("jobs.done", help="Jobs done."))
        queue = c.register(Gauge("queue.depth", help="Queued."))
        work = c.register(Histogram("work.seconds", buckets=[0.25, 0.5, 1.0, 2.0]))
        routes = Family(Counter, "http.requests", ["route"], collector=c)
        with SegmentEmitter(Options(prefix=spool / f"{source}.", flush_interval=60)) as e:
            for step in range(steps):
                jobs.count(step % 7 + 1)
                queue.set(step * 0.5)
                work.observe(0.25 * (step % 10 + 1))  # up to 2.5: every bucket and +Inf
                routes.labels(ODD).click()
                routes.labels("/").count(2)
                c.emit(e, start_ms + step * 10_000)


def ship_all(spool: Path, url: str, state: Path | None = None) -> ShipMetrics:
    """One pass of the real shipper over ``spool``, which must leave it empty."""
    options = ShipOptions(
        spool=str(spool), remote=RemoteWriteOptions(url, timeout=10),
        state=None if state is None else str(state), external_labels={"site": "lab"},
        max_samples_per_request=100, min_backoff=0.05, max_backoff=0.2,
    )  # fmt: skip
    with Shipper(options) as shipper:
        assert shipper.ship_pass(deadline=time.monotonic() + 60), shipper.last_failure
        assert shipper.last_failure is None
        assert not list(spool.glob("*.prom"))
        assert not (spool / "quarantine").exists()
        return shipper.metrics


def stored(vm: VictoriaMetrics, at_ms: int, want: Samples) -> Samples:
    """What VictoriaMetrics holds for the shipped series, once it holds ``want`` (or at 30 s)."""
    return wait_for(lambda: vm.raw('{site="lab"}', at_ms), "the samples shipped",
                    accept=partial(eq, want), timeout=30)  # fmt: skip


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path / "vm")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


def test_ship_delivers_every_sample_exactly(spool: Path, vm: VictoriaMetrics) -> None:
    """Three processes' history: every series, timestamp (ms) and value arrives, named as on a
    page (counters ``_total``), with its source; histogram buckets add up across sources."""
    start = now_ms() - 20 * 60_000
    write_history(spool, SOURCES, start)
    want = expected(spool)
    samples = sum(len(v) for v in want.values())
    assert len(want) >= 3 * 12 and samples > len(want)
    assert ship_all(spool, vm.write_url).sent.read() == samples
    got = stored(vm, start + 20 * 60_000, want)
    names = {dict(key)["__name__"] for key in got}
    assert {"jobs_done_total", "http_requests_total", "queue_depth", "work_seconds_bucket",
            "work_seconds_exceeds_max_total"} <= names  # fmt: skip
    assert not names & {"jobs_done", "http_requests", "work_seconds_exceeds_max"}
    odd = {dict(key)["source"] for key in got if dict(key).get("route") == ODD}
    assert odd == set(SOURCES)
    last = start + (STEPS - 1) * 10_000
    by_le: dict[str, float] = {}
    for key, series in want.items():
        labels = dict(key)
        if labels["__name__"] == "work_seconds_bucket":
            by_le[labels["le"]] = by_le.get(labels["le"], 0.0) + series[-1][1]
    assert by_le == {"0.25": 6.0, "0.5": 12.0, "1.0": 18.0, "2.0": 30.0, "+Inf": 36.0}
    assert vm.by_label('sum by (le) (work_seconds_bucket{site="lab"})', "le", last) == by_le
    assert vm.query('sum(work_seconds_count{site="lab"})', last) == 36.0
    assert vm.query('sum(jobs_done_total{site="lab"})', last) == 3 * sum(
        step % 7 + 1 for step in range(STEPS)
    )


def test_a_resent_sample_is_stored_twice_unless_dedup_is_on(tmp_path: Path, spool: Path) -> None:
    """A shipper killed between the 2xx and saving its progress sends the segments again.
    Prometheus keeps one sample per series and ms; VictoriaMetrics stores both copies (a
    doubled ``count_over_time``) unless ``-dedup.minScrapeInterval`` is set: 1ms keeps one."""
    plain = VictoriaMetrics(tmp_path / "plain")
    dedup = VictoriaMetrics(tmp_path / "dedup", "-dedup.minScrapeInterval=1ms")
    try:
        plain.start()
        dedup.start()
        start = now_ms() - 10 * 60_000
        write_history(spool, ["w0"], start, steps=6)
        want = expected(spool)
        aside = tmp_path / "aside"
        shutil.copytree(spool, aside)
        for run in range(2):  # the second run is the restart: a fresh progress file
            for server in (plain, dedup):
                shutil.copytree(aside, spool, dirs_exist_ok=True)
                ship_all(spool, server.write_url, tmp_path / f"ship-{server.port}-{run}.json")
        at = start + 10 * 60_000
        assert stored(dedup, at, want) == want
        assert dedup.export('{site="lab"}') == want
        twice = {key: sorted(series * 2) for key, series in want.items()}
        assert wait_for(lambda: plain.export('{site="lab"}'), "both copies",
                        accept=partial(eq, twice), timeout=30) == twice  # fmt: skip
        count = 'count_over_time(jobs_done_total{site="lab"}[1h])'
        assert plain.query(count, at) == 12 and dedup.query(count, at) == 6
        top = 'max_over_time(jobs_done_total{site="lab"}[1h])'
        assert plain.query(top, at) == dedup.query(top, at) == 21  # equal copies: same values
    finally:
        plain.stop()
        dedup.stop()


def test_older_samples_after_newer_ones_are_kept(
    tmp_path: Path, spool: Path, vm: VictoriaMetrics
) -> None:
    """The second half of a history shipped first, then the first: VictoriaMetrics keeps both
    with no out-of-order window to configure (Prometheus needs ``out_of_order_time_window``)."""
    start = now_ms() - 30 * 60_000
    write_history(tmp_path, ["w0"], start)  # two segments of 6 emissions each
    first, second = sorted(tmp_path.glob("w0.*.prom"))
    want = expected(tmp_path)
    for segment in (second, first):
        segment.rename(spool / segment.name)
        ship_all(spool, vm.write_url)
    assert stored(vm, start + 30 * 60_000, want) == want


def test_samples_outside_the_retention_are_dropped_with_a_2xx(tmp_path: Path, spool: Path) -> None:
    """Prometheus 2.42 answers a sample older than its head with an error (``ship`` retries,
    then quarantines its segment); with ``-retentionPeriod=1d`` VictoriaMetrics answers 204 to
    a 3-day-old one, so its segment is deleted, stores nothing, and counts it only in its own
    ``vm_rows_ignored_total{reason="small_timestamp"}``."""
    vm = VictoriaMetrics(tmp_path / "vm", "-retentionPeriod=1d")
    try:
        vm.start()
        start = now_ms() - 3 * 86_400_000
        write_history(spool, ["w0"], start, steps=3)
        samples = sum(len(v) for v in expected(spool).values())
        assert ship_all(spool, vm.write_url).sent.read() == samples  # acknowledged, deleted
        ignored = 'vm_rows_ignored_total{reason="small_timestamp"}'
        wait_for(partial(vm.own_metric, ignored), f"{ignored} == {samples}",
                 accept=partial(eq, samples))  # fmt: skip
        assert vm.export('{site="lab"}') == {}
    finally:
        vm.stop()


def test_some_values_come_back_rounded(spool: Path, vm: VictoriaMetrics) -> None:
    """VictoriaMetrics stores a value as a decimal (an int64 and a power of ten): 1/3 comes back
    with 12 digits, 0.1 + 0.2 as 0.3, the smallest double as 0; integers to 2**53 and short
    decimals are exact (so the other tests use multiples of 0.25)."""
    c = Collector()
    values = {"third": 1 / 3, "tenths": 0.1 + 0.2, "tiny": 5e-324, "big": 2.0**53, "half": 0.5}
    for name, value in values.items():
        c.register(Gauge(f"precision.{name}")).set(value)
    at = now_ms() - 60_000
    with SegmentEmitter(Options(prefix=spool / "p.")) as e:
        c.emit(e, at)
    ship_all(spool, vm.write_url)
    got = {name: wait_for(partial(vm.query, f"precision_{name}", at), f"precision_{name}",
                          accept=lambda v: v is not None) for name in values}  # fmt: skip
    assert got == {"third": 0.333333333333, "tenths": 0.3, "tiny": 0.0, "big": 2.0**53,
                   "half": 0.5}  # fmt: skip


@pytest.fixture
def serve(spool: Path, tmp_path: Path) -> Iterator[Serve]:
    server = Serve(spool, tmp_path / "state.json").start()
    yield server
    assert server.stop() == 0


@pytest.fixture
def recorder(serve: Serve) -> Iterator[Recorder]:
    server = Recorder(f"http://127.0.0.1:{serve.port}/metrics")
    yield server
    server.close()


@pytest.fixture
def scraper(tmp_path: Path, serve: Serve, recorder: Recorder) -> Iterator[VictoriaMetrics]:
    """VictoriaMetrics scraping ``serve`` every second: job ``serve`` directly (the format it
    negotiates), job ``openmetrics`` through the recorder."""
    config = "global:\n  scrape_interval: 1s\nscrape_configs:\n" + "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        for job, port in (("serve", serve.port), ("openmetrics", recorder.port))
    )
    server = VictoriaMetrics(tmp_path / "vm", scrape_config=config)
    try:
        yield server.start()
    finally:
        server.stop()


def test_victoriametrics_scrapes_exact_merged_values(
    serve: Serve, recorder: Recorder, scraper: VictoriaMetrics
) -> None:
    """Three processes emit; VictoriaMetrics's queries show serve's exact merged counters,
    histogram and moments, the same whether the page was 0.0.4 (what it asks for) or
    OpenMetrics; it keeps no TYPE, so a counter is a counter by its ``_total`` name only."""
    workers, per_step, steps = 3, 5, 20
    for w in start_workers(serve.spool, workers, per_step, steps):
        assert w.wait(60) == 0
    total = workers * per_step * steps
    jobs = ("serve", "openmetrics")
    for job in jobs:
        promql = f'jobs_done_total{{job="{job}"}}'
        wait_for(partial(scraper.query, promql), f"{promql} == {total}",
                 accept=partial(eq, total), timeout=60)  # fmt: skip
        assert scraper.query(f'work_seconds_count{{job="{job}"}}') == total
        assert scraper.query(f'work_seconds_sum{{job="{job}"}}') == total * 0.5
        assert scraper.query(f'work_size_count{{job="{job}"}}') == total
        assert scraper.query(f'work_size_sum{{job="{job}"}}') == total * 2.0
        assert scraper.query(f'work_size_mean{{job="{job}"}}') == 2.0
        buckets = scraper.by_label(f'sum by (le) (work_seconds_bucket{{job="{job}"}})', "le")
        assert len(buckets) == 16 and buckets["+Inf"] == total  # the default layout
        assert {le: n for le, n in buckets.items() if n} == {
            le: total for le in buckets if le == "+Inf" or float(le) >= 0.5
        }
        assert scraper.query(f'jobs_done{{job="{job}"}}') is None  # OpenMetrics family name
        assert scraper.query(f'count({{__name__=~".+_created", job="{job}"}})') is None
        assert scraper.query(f'work_size_m2{{job="{job}"}}') is None
    wait_for(partial(scraper.query, 'min(count_over_time(up{job=~"serve|openmetrics"}[5m]))'),
             "three scrapes of each", accept=lambda n: n is not None and n >= 3)  # fmt: skip
    assert scraper.query("min(up)") == 1
    accepts = set(recorder.accepts)
    assert accepts == {"text/plain;version=0.0.4;q=1,*/*;q=0.1"}
    assert not wants_openmetrics(accepts.pop())  # so serve answers 0.0.4 to VictoriaMetrics
    assert set(recorder.answered) == {OPENMETRICS_CONTENT_TYPE}
    assert api_data(f"{scraper.url}/api/v1/metadata") == {}  # HELP and TYPE are not kept


def test_victoriametrics_marks_series_stale_when_serve_stops(
    serve: Serve, scraper: VictoriaMetrics
) -> None:
    """As Prometheus does: the first failed scrape writes ``up`` 0 and a staleness marker
    (a NaN sample) for each series of the target, so queries stop showing it at once."""
    assert start_workers(serve.spool, 1, 1, 1)[0].wait(60) == 0
    wait_for(partial(scraper.query, 'jobs_done_total{job="serve"}'), "first scrape",
             accept=partial(eq, 1), timeout=60)  # fmt: skip
    assert serve.stop() == 0
    wait_for(partial(scraper.query, 'up{job="serve"}'), "up == 0", accept=partial(eq, 0),
             timeout=30)  # fmt: skip
    [samples] = scraper.export('jobs_done_total{job="serve"}').values()
    assert [v for _, v in samples[:-1]] == [1.0] * (len(samples) - 1)
    assert math.isnan(samples[-1][1])  # the staleness marker
    assert scraper.query('jobs_done_total{job="serve"}') is None


def test_readme_recipe_runs_as_written(tmp_path: Path) -> None:
    """The ``victoriametrics`` recipe: VictoriaMetrics started by its command scrapes ``serve``
    over one spool and takes ``ship``'s remote write from another; both show the app's counts."""
    blocks = readme_recipe("victoriametrics")
    (tmp_path / "app.py").write_text(blocks["app.py"])
    vm_port, port = free_port(), free_port()
    pull, push = tmp_path / "pull", tmp_path / "push"
    pull.mkdir()
    push.mkdir()
    path = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"  # biometrics
    env = os.environ | {"PATH": path, "VM_PORT": str(vm_port), "VM_DATA": str(tmp_path / "vm"),
                        "PORT": str(port), "SCRAPE_INTERVAL": "1s"}  # fmt: skip
    started: list[subprocess.Popen[bytes]] = []

    def start(block: str, spool: Path | None = None) -> None:
        with (tmp_path / f"{block}.log").open("ab") as log:
            started.append(subprocess.Popen(
                ["sh", "-c", blocks[block]], cwd=tmp_path, stdout=log, stderr=log,
                env=env | ({} if spool is None else {"BIOMETRICS_SPOOL": str(spool)}),
                start_new_session=True,
            ))  # fmt: skip

    def app(spool: Path) -> None:
        run = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, timeout=60,
                             env=env | {"BIOMETRICS_SPOOL": str(spool)}, check=False)  # fmt: skip
        assert run.returncode == 0

    vm = f"http://127.0.0.1:{vm_port}"
    try:
        start("victoria-metrics")
        wait_for(lambda: answers_ready(f"{vm}/health"), "victoria-metrics up", timeout=60)
        start("serve", pull)
        app(pull)
        app(push)
        start("ship", push)
        wait_for(lambda: not list(push.glob("*.prom")), "push spool shipped", timeout=60)
        # Queries lag 30 s (its default -search.latencyOffset); the export API does not.
        server = VictoriaMetrics(tmp_path, port=vm_port)
        for selector in ('jobs_done_total{job="biometrics"}', 'jobs_done_total{source!=""}',
                         'job_seconds_count{job="biometrics"}',
                         'job_seconds_count{source!=""}'):  # fmt: skip
            wait_for(partial(server.latest, selector), f"{selector} == 5", accept=partial(eq, 5),
                     timeout=60)  # fmt: skip
    finally:
        for proc in started:  # each block's session: its shell and what the shell started
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(30)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
