"""`biometrics backfill` output is accepted by the real promtool, samples at their timestamps."""

import io
import re
import subprocess
from pathlib import Path

from biometrics import DEFAULT_BUCKETS, Collector, Counter, Histogram
from biometrics.cli import run
from biometrics.prometheus import Options, SegmentEmitter

from ._prometheus import PROMTOOL, needs_prometheus

T0 = 1_700_000_000_000  # Nov 2023: far from any head block
STEPS = 5


@needs_prometheus
def test_promtool_creates_blocks_holding_our_samples(tmp_path: Path) -> None:
    """Backfill output of two sources over several segments becomes TSDB blocks in promtool, each
    counter and histogram count at its own timestamp with its source label, and every bucket
    of the default layout present, empty ones included.
    """
    spool = tmp_path / "spool"
    spool.mkdir()
    expected: dict[tuple[str, str, int], float] = {}
    for name, n in (("web.1", 2), ("web.2", 3)):
        c = Collector()
        jobs = c.register(Counter("jobs.done_total", help="Jobs done."))
        lat = c.register(Histogram("lat.seconds", help="Latency."))
        with SegmentEmitter(Options(prefix=spool / f"{name}.", flush_interval=2.0)) as e:
            for step in range(STEPS):
                jobs.count(n)
                lat.observe(0.25)
                ts = T0 + step * 1500
                c.emit(e, ts)
                expected[("jobs_done_total", name, ts)] = n * (step + 1)
                expected[("lat_seconds_count", name, ts)] = step + 1
    assert len(list(spool.glob("*.prom"))) > 2, "several segments per source"
    out = tmp_path / "backfill.om"
    assert run(["backfill", str(spool), "--out", str(out), "--source-label", "source"],
               io.StringIO()) == 0  # fmt: skip
    assert PROMTOOL is not None
    data = tmp_path / "tsdb"
    create = [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(out), str(data)]
    made = subprocess.run(create, check=False, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr + made.stdout
    (data / "wal").mkdir()  # promtool 2.42's dump opens the WAL even when there is none
    dump = subprocess.run([PROMTOOL, "tsdb", "dump", str(data)], check=False,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert dump.returncode == 0, dump.stderr
    got: dict[tuple[str, str, int], float] = {}
    buckets: set[tuple[str, str, int]] = set()
    for line in dump.stdout.splitlines():
        match = re.fullmatch(r"\{(.*)\} (\S+) (\d+)", line)
        assert match is not None, line
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match[1]))
        key = (labels["__name__"], labels.get("source", ""), int(match[3]))
        got[key] = float(match[2])
        if "le" in labels:
            buckets.add((labels["le"], key[1], key[2]))
    for key, value in expected.items():
        assert got.get(key) == value, key
    les = {*map(repr, DEFAULT_BUCKETS), "+Inf"}  # every bucket of the layout, empty ones too
    assert {le for le, _, _ in buckets} == les
    assert len(buckets) == len(les) * 2 * STEPS  # every bound, per source and step


RUST = (
    "# TYPE http_requests counter\nhttp_requests 5 {t}\n# TYPE h histogram\n"
    '# TYPE h_count counter\nh_bucket{{le="1.0000"}} 1 {t}\nh_sum 1 {t}\nh_count 1 {t}\n'
    "# TYPE h_exceeds_max gauge\nh_exceeds_max 2 {t}\n"
    "# TYPE m_count counter\n# TYPE m_mean gauge\nm_count 3 {t}\nm_mean 2 {t}\n"
)


@needs_prometheus
def test_promtool_takes_rust_counters_as_x_total(tmp_path: Path) -> None:
    """A Rust file's counter ``x`` is backfilled as ``x_total``, its moments count under a
    summary: the OpenMetrics promtool reads is valid and stores those names."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / f"rust.{T0}.prom").write_text(RUST.format(t=T0))
    out = tmp_path / "backfill.om"
    assert run(["backfill", str(spool), "--out", str(out)], io.StringIO()) == 0
    assert PROMTOOL is not None
    data = tmp_path / "tsdb"
    create = [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(out), str(data)]
    made = subprocess.run(create, check=False, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr + made.stdout
    (data / "wal").mkdir()
    dump = subprocess.run([PROMTOOL, "tsdb", "dump", str(data)], check=False,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert dump.returncode == 0, dump.stderr
    names = {re.findall(r'__name__="([^"]*)"', line)[0]: line.split()[-2]
             for line in dump.stdout.splitlines()}  # fmt: skip
    assert names == {"http_requests_total": "5", "h_bucket": "1", "h_sum": "1", "h_count": "1",
                     "h_exceeds_max_total": "2", "m_count": "3", "m_mean": "2"}  # fmt: skip
