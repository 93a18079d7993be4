from pathlib import Path
from typing import Any

import pytest

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from biometrics import Collector  # noqa: E402
from biometrics.exporter.tools import merged_page  # noqa: E402
from biometrics.prometheus import Emission, Emitter, Options, emit_every  # noqa: E402
from biometrics.prometheus.bridge import PrometheusClientBridge  # noqa: E402

T0 = 1_700_000_000_000


def instrumented(scale: int) -> CollectorRegistry:
    """An app's registry with one of each prometheus_client type."""
    r = CollectorRegistry()
    p = prometheus_client
    p.Counter("http_requests", "Requests.", ["path"], registry=r).labels("/a").inc(3 * scale)
    p.Gauge("queue_depth", "Queued jobs.", registry=r).set(5 * scale)
    h = p.Histogram("latency_seconds", "Latency.", buckets=(0.1, 1.0), registry=r)
    for _ in range(scale):
        h.observe(0.05)
        h.observe(0.5)
    s = p.Summary("payload_bytes", "Payload size.", registry=r)
    s.observe(100 * scale)
    p.Info("build", "Build.", registry=r).info({"version": "1.2"})
    p.Enum("mode", "Mode.", states=["idle", "busy"], registry=r).state("busy")
    return r


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def emit(registry: CollectorRegistry, prefix: Path, now_ms: int = T0) -> None:
    with Emitter(Options(prefix=prefix)) as e:
        PrometheusClientBridge(registry).emit(e, now_ms)


def test_one_process_reads_the_same_as_prometheus_client(tmp_path: Path) -> None:
    registry = instrumented(1)
    emit(registry, tmp_path / "app.")
    page, problems = merged_page([tmp_path])
    assert problems == []
    ours, theirs = samples(page), samples(generate_latest(registry).decode())
    extra_bucket = ("payload_bytes_bucket", (("le", "+Inf"),))
    assert ours.pop(extra_bucket) == 1  # a summary becomes a one-bucket histogram
    assert ours == theirs


def test_many_processes_merge(tmp_path: Path) -> None:
    for i in (1, 2, 3):
        emit(instrumented(i), tmp_path / f"w{i}.", T0 + i)
    page, _ = merged_page([tmp_path])
    got = samples(page)
    assert got[("http_requests_total", (("path", "/a"),))] == 3 * 6
    assert got[("latency_seconds_bucket", (("le", "0.1"),))] == 6
    assert got[("latency_seconds_bucket", (("le", "+Inf"),))] == 12
    assert got[("latency_seconds_count", ())] == 12
    assert got[("payload_bytes_sum", ())] == 600
    assert got[("payload_bytes_count", ())] == 3
    assert got[("queue_depth", ())] == 15  # gauges: the latest reading, by default
    assert got[("mode", (("mode", "busy"),))] == 1
    assert got[("build_info", (("version", "1.2"),))] == 1


def test_default_registry_skips_the_runtime_collectors_we_replace() -> None:
    names = {f.name for f in PrometheusClientBridge().families()}
    assert not any(n.startswith(("process_", "python_gc_", "python_info")) for n in names)
    everything = PrometheusClientBridge(skip=()).families()
    assert any(f.name.startswith("python_gc_") for f in everything)


def test_a_failing_registry_never_reaches_the_host(tmp_path: Path) -> None:
    class Broken:
        def collect(self) -> Any:
            raise RuntimeError("collector exploded")

    collector = Collector()
    emission = Emission(
        3600,
        collector=collector,
        options=Options(prefix=tmp_path / "a."),
        system=False,
        bridges=[PrometheusClientBridge(Broken())],
    )
    assert emission.emit() is False
    emission.stop()
    text = "".join(p.read_text() for p in tmp_path.glob("*.prom"))
    assert 'biometrics_emit_failure{kind="RuntimeError"} ' in text
    assert "biometrics_collector_emit_counter" in text, "the collector still emitted"


def test_emit_every_writes_bridged_and_native_readings_at_one_time(tmp_path: Path) -> None:
    collector = Collector()
    bridge = PrometheusClientBridge(instrumented(1))
    with emit_every(
        3600,
        collector=collector,
        options=Options(prefix=tmp_path / "a."),
        system=False,
        bridges=[bridge],
        clock=lambda: T0,
    ):
        pass
    text = "".join(p.read_text() for p in tmp_path.glob("*.prom"))
    assert f'http_requests_total{{path="/a"}} 3.0 {T0}\n' in text
    assert f"biometrics_prometheus_emit_segments 1 {T0}\n" in text
