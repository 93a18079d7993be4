from pathlib import Path
from typing import Any

import pytest

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from biometrics import Collector  # noqa: E402
from biometrics.files import merged_page  # noqa: E402
from biometrics.prometheus import Options, SegmentEmitter  # noqa: E402
from biometrics.runtime import Emission, PrometheusClientBridge, emit_every  # noqa: E402

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
    with SegmentEmitter(Options(prefix=prefix)) as e:
        PrometheusClientBridge(registry).emit(e, now_ms)


def test_one_process_reads_the_same_as_prometheus_client(tmp_path: Path) -> None:
    """One bridged registry, emitted and merged, gives the same samples as prometheus_client's
    own exposition, except the +Inf bucket a summary gains as a one-bucket histogram.
    """
    registry = instrumented(1)
    emit(registry, tmp_path / "app.")
    page, problems = merged_page([tmp_path])
    assert problems == []
    ours, theirs = samples(page), samples(generate_latest(registry).decode())
    extra_bucket = ("payload_bytes_bucket", (("le", "+Inf"),))
    assert ours.pop(extra_bucket) == 1  # a summary becomes a one-bucket histogram
    assert ours == theirs


def test_many_processes_merge(tmp_path: Path) -> None:
    """Three processes' bridged registries merge like native sensors: counters, buckets, counts
    and sums add up; gauges keep the latest reading; info and enum series stay at 1.
    """
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
    """Bridging the default registry leaves out its process_/python_gc_/python_info collectors
    (our runtime sensors replace them); skip=() keeps them.
    """
    names = {f.name for f in PrometheusClientBridge().families()}
    assert not any(n.startswith(("process_", "python_gc_", "python_info")) for n in names)
    everything = PrometheusClientBridge(skip=()).families()
    assert any(f.name.startswith("python_gc_") for f in everything)


def test_a_failing_registry_never_reaches_the_host(tmp_path: Path) -> None:
    """A registry whose collect() raises makes emit() return False and counts a RuntimeError
    failure, while the native collector's readings are still written.
    """

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
    assert 'biometrics_emit_failure_total{kind="RuntimeError"} ' in text
    assert "biometrics_collector_emit_counter" in text, "the collector still emitted"


def test_emit_every_writes_bridged_and_native_readings_at_one_time(tmp_path: Path) -> None:
    """emit_every with a bridge writes the bridged samples and the native self-metrics with one
    and the same timestamp, the clock's.
    """
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
    assert f"biometrics_prometheus_emit_segments_total 1 {T0}\n" in text


def test_declared_buckets_survive_to_the_merged_page_empty_ones_included(tmp_path: Path) -> None:
    """The SLO bucket ``le="0.25"`` stays on the page even when nothing fell in it.

    Two processes, one of which observed nothing below 1 s: both list every declared bucket,
    so ``sum by (le)`` sees one le set; a bound of 1e6 is written as we write it.
    """
    for i, values in ((1, (0.05, 0.5, 2.0)), (2, (3.0,))):
        r = CollectorRegistry()
        h = prometheus_client.Histogram("slo_seconds", "SLO.", buckets=(0.1, 0.25, 1.0, 1e6),
                                        registry=r)  # fmt: skip
        for x in values:
            h.observe(x)
        emit(r, tmp_path / f"w{i}.", T0 + i)
    page, problems = merged_page([tmp_path])
    assert problems == []
    buckets = [line for line in page.splitlines() if line.startswith("slo_seconds_bucket")]
    assert buckets == [
        'slo_seconds_bucket{le="0.1"} 1',
        'slo_seconds_bucket{le="0.25"} 1',
        'slo_seconds_bucket{le="1.0"} 2',
        'slo_seconds_bucket{le="1000000.0"} 4',
        'slo_seconds_bucket{le="+Inf"} 4',
    ]
    text = "".join(p.read_text() for p in tmp_path.glob("w2.*.prom"))
    assert 'slo_seconds_bucket{le="0.25"} 0.0' in text  # the idle process's empty bucket too


def test_multiprocess_mode_becomes_the_gauges_merge_declaration(tmp_path: Path) -> None:
    """livesum sums, and an ended worker's value leaves; 'all', the default, declares nothing."""
    for worker, value in ((1, 2), (2, 5)):
        r = CollectorRegistry()
        prometheus_client.Gauge("in_flight", "In flight.", registry=r,
                                multiprocess_mode="livesum").set(value)  # fmt: skip
        prometheus_client.Gauge("plain", "Plain.", registry=r).set(value)
        with SegmentEmitter(Options(prefix=tmp_path / f"w{worker}.")) as e:
            PrometheusClientBridge(r).emit(e, T0 + worker)
            if worker == 1:
                e.end()
    text = (tmp_path / f"w1.{T0 + 1}.prom").read_text()
    assert "# HELP in_flight In flight.\n# MERGE in_flight sum live\n# TYPE in_flight" in text
    assert "MERGE plain" not in text
    page, problems = merged_page([tmp_path])
    assert problems == []
    got = samples(page)
    assert got[("in_flight", ())] == 5  # worker 1 ended: only the live worker's value
    assert got[("plain", ())] == 5  # undeclared: the latest reading
