"""`biometrics backfill` output is accepted by the real promtool, samples at their timestamps."""

import io
import re
import subprocess
from pathlib import Path

from biometrics import Collector, Counter, Histogram
from biometrics.cli import run
from biometrics.prometheus import Emitter, Options

from ._prometheus import PROMTOOL, needs_prometheus

T0 = 1_700_000_000_000  # Nov 2023: far from any head block
STEPS = 5


@needs_prometheus
def test_promtool_creates_blocks_holding_our_samples(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    expected: dict[tuple[str, str, int], float] = {}
    for name, n in (("web.1", 2), ("web.2", 3)):
        c = Collector()
        jobs = c.register(Counter("jobs.done_total", help="Jobs done."))
        lat = c.register(Histogram("lat.seconds", help="Latency."))
        with Emitter(Options(prefix=spool / f"{name}.", flush_interval=2.0)) as e:
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
    assert {le for le, _, _ in buckets} == {"0.25", "+Inf"}
    assert len(buckets) == 2 * 2 * STEPS  # both bounds, per source and step
