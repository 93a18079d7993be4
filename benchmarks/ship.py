"""Remote write: encoding cost and end-to-end shipping to the local Prometheus, same run.

Workload: S sources x E emits x 1,000 counter series (two labels each, plus the source label),
as segments written by the real SegmentEmitter with 10 s between emits; 1,000,000 samples in all
(100,000 with --quick).
- Encoding alone: the parsed samples through ``group`` + protobuf + snappy, at our default
  2,000 samples per request and at Prometheus's own default of 500.
- prometheus_client reference: it has no remote write; the nearest cost it pays for the same
  samples is rendering them as text (``generate_latest``), so that is timed per sample.
- End to end: ``Shipper`` from spool files to a fresh local Prometheus (remote-write receiver
  on), against Prometheus's own ingestion bound: the same samples pre-encoded and POSTed
  back to back to another fresh Prometheus.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx

from biometrics import Collector, Counter
from biometrics.prometheus import Options, Sample, SegmentEmitter, parse
from biometrics.ship import Encoder, RemoteWriteOptions, ShipOptions, Shipper
from biometrics.ship.remote_write import group

SERIES = 1000


def _spool(directory: Path, sources: int, emits: int, start_ms: int) -> None:
    for s in range(sources):
        c = Collector()
        counters = [
            c.register(Counter("bench.requests", labels={"route": f"/r{i % 100}",
                                                         "code": str(200 + i // 100)}))
            for i in range(SERIES)
        ]  # fmt: skip
        with SegmentEmitter(Options(prefix=str(directory / f"src{s}."), flush_interval=120)) as e:
            for k in range(emits):
                for i, counter in enumerate(counters):
                    counter.count(i % 5 + 1)
                c.emit(e, start_ms + 10_000 * k)


def _samples(directory: Path) -> list[tuple[tuple[tuple[str, str], ...], int, float]]:
    out = []
    for path in sorted(directory.glob("*.prom")):
        source = path.name.split(".")[0]
        with path.open("rb") as f:
            for item in parse(f):
                if isinstance(item, Sample) and item.name.startswith("bench_requests"):
                    labels = tuple(sorted({**dict(item.labels), "__name__": item.name,
                                           "source": source}.items()))  # fmt: skip
                    assert item.timestamp_ms is not None
                    out.append((labels, item.timestamp_ms, item.value))
    return out


def _encode_rate(samples: list[tuple[tuple[tuple[str, str], ...], int, float]],
                 per_request: int) -> tuple[float, list[bytes]]:  # fmt: skip
    encoder = Encoder()
    bodies = []
    start = time.perf_counter()
    for i in range(0, len(samples), per_request):
        bodies.append(encoder.encode(group(samples[i : i + per_request])[0]))
    return len(samples) / (time.perf_counter() - start), bodies


def _generate_latest_rate() -> float:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client import Counter as TheirCounter

    registry = CollectorRegistry()
    counter = TheirCounter("bench_requests", "Requests.", ["route", "code", "source"],
                           registry=registry)  # fmt: skip
    for i in range(SERIES):
        counter.labels(f"/r{i % 100}", str(200 + i // 100), "src0").inc(i % 5 + 1)
    rounds, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2:
        generate_latest(registry)
        rounds += 1
    return rounds * SERIES * 2 / (time.perf_counter() - start)  # _total and _created lines


class _Prometheus:
    def __init__(self, directory: Path) -> None:
        binary = shutil.which("prometheus")
        assert binary is not None, "install Debian's prometheus (scripts/test does)"
        directory.mkdir()
        config = directory / "prometheus.yml"
        config.write_text("storage:\n  tsdb:\n    out_of_order_time_window: 2h\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-remote-write-receiver"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("prometheus did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _post_rate(directory: Path, bodies: list[bytes], samples: int) -> float:
    server = _Prometheus(directory)
    headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
               "X-Prometheus-Remote-Write-Version": "0.1.0"}  # fmt: skip
    try:
        with httpx.Client(timeout=60) as client:
            start = time.perf_counter()
            for body in bodies:
                assert client.post(server.url, content=body, headers=headers).status_code == 204
            return samples / (time.perf_counter() - start)
    finally:
        server.stop()


def _ship_rate(
    directory: Path, spool: Path, samples: int, per_request: int, concurrency: int
) -> float:
    server = _Prometheus(directory)
    options = ShipOptions(str(spool), RemoteWriteOptions(server.url), source_label="source",
                          max_samples_per_request=per_request,
                          concurrency=concurrency)  # fmt: skip
    try:
        with Shipper(options) as shipper:
            start = time.perf_counter()
            shipper.ship_pass()
            elapsed = time.perf_counter() - start
            sent = shipper.metrics.sent.read()  # also the Collector's own counters
            assert sent >= samples and not list(spool.glob("*.prom")), sent
        return sent / elapsed
    finally:
        server.stop()


def run(*, quick: bool = False) -> None:
    """Print the remote-write table."""
    sources, emits = (10, 10) if quick else (20, 50)
    default = ShipOptions("-", RemoteWriteOptions("http://127.0.0.1/")).concurrency
    with tempfile.TemporaryDirectory(prefix="biometrics-bench-ship-") as tmp:
        root = Path(tmp)
        spool = root / "spool"
        spool.mkdir()
        start_ms = time.time_ns() // 1_000_000 - emits * 10_000 - 60_000
        _spool(spool, sources, emits, start_ms)
        start = time.perf_counter()
        samples = _samples(spool)
        parse_rate = len(samples) / (time.perf_counter() - start)
        rate_2000, bodies = _encode_rate(samples, 2000)
        rate_500, _ = _encode_rate(samples, 500)
        theirs = _generate_latest_rate()
        bound = _post_rate(root / "p1", bodies, len(samples))
        shipped = _ship_rate(root / "p2", spool, len(samples), 2000, default)
        others = {}
        for concurrency in sorted({1, 4} - {default}):  # the same spool again, same timestamps
            _spool(spool, sources, emits, start_ms)
            others[concurrency] = _ship_rate(root / f"p{concurrency + 2}", spool, len(samples),
                                             2000, concurrency)  # fmt: skip
    n = len(samples)
    print(f"\n### Remote write: {n:,} samples ({sources} sources x {emits} emits x "
          f"{SERIES} series)\n")  # fmt: skip
    print("| what | samples/s | note |")
    print("|---|---:|---|")
    print(f"| encode: group + protobuf + snappy, 2,000/request | {rate_2000:,.0f} | ours |")
    print(f"| encode, 500/request (Prometheus's default) | {rate_500:,.0f} | ours |")
    print(f"| prometheus_client generate_latest (text, same series) | {theirs:,.0f} | "
          f"encode at 2,000 = {rate_2000 / theirs:.2f}x theirs |")  # fmt: skip
    print(f"| parse segments (reference) | {parse_rate:,.0f} | our parser |")
    print(f"| Prometheus ingest bound: pre-encoded bodies POSTed back to back | {bound:,.0f} "
          f"| {len(bodies)} requests |")  # fmt: skip
    print(f"| **end to end: `Shipper` spool -> Prometheus, concurrency {default} (default)** | "
          f"**{shipped:,.0f}** | {shipped / bound:.2f}x of the ingest bound |")  # fmt: skip
    for concurrency, rate in others.items():
        print(f"| end to end, concurrency {concurrency} | {rate:,.0f} | "
              f"{rate / bound:.2f}x of the ingest bound |")  # fmt: skip
