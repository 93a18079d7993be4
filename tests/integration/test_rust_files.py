"""Files written by the real Rust crates (tests/fixtures/rust, see its README) read exactly.

The oracle is written independently of our parser: per source (file-name prefix), the last
value of each line's series in file order over the source's files in time order (every fixture
reading is complete), summed over sources.  Every counter-like series on the merged page, a
histogram's buckets, ``_sum`` and ``_count`` included, must equal it, and the page must pass
the real promtool.  Names as Prometheus wants them: a counter is ``x_total`` on the page, so
the oracle renames what the files declare a counter (and the histogram side counters, which
Rust declares ``gauge``), but not a ``_count`` (a histogram's or moments' count).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from biometrics.exporter import Exporter, ExporterOptions
from biometrics.files import merged_page

from ._prometheus import PROMTOOL, needs_prometheus

RUST = Path(__file__).parent.parent / "fixtures" / "rust"
FOLDERS = ["head", "v0.5.0"]
_LINE = re.compile(r"([^ {]+)(?:\{([^}]*)\})? (\S+)(?: (\d+))?")
_PAGE = re.compile(r"([^ {#]+)(\{[^}]*\})? (\S+)")


def _name(raw: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_:]", "_", raw)
    return "_" + name if name[:1].isdigit() else name


def _labels(raw: str | None) -> str:
    if not raw:
        return ""
    pairs = []
    for key, value in re.findall(r'(\w+)="([^"]*)"', raw):
        pairs.append((key, repr(float(value)) if key == "le" else value))
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(pairs)) + "}"


def counters(files: list[Path]) -> set[str]:
    """Names the files declare ``counter``, sanitised."""
    return {
        _name(line.split()[2])
        for path in files
        for line in path.read_text().splitlines()
        if line.startswith("# TYPE ") and line.split()[3] == "counter"
    }


def page_name(name: str, declared: set[str]) -> str:
    """The name a sample has on the page: ``_total`` for counters, side counters included."""
    side = name.endswith(("_exceeds_max", "_is_negative"))
    counter = name in declared and not name.endswith(("_count", "_total"))
    return name + "_total" if side or counter else name


def oracle(folder: Path) -> dict[str, float]:
    """``series -> value`` summed over sources of each source's last value."""
    last: dict[str, dict[str, float]] = defaultdict(dict)
    files = sorted(folder.glob("*.prom"), key=lambda p: int(p.name.split(".")[-2]))
    declared = counters(files)
    for path in files:
        source = path.name.rsplit(".", 2)[0]
        for line in path.read_text().splitlines():
            match = _LINE.fullmatch(line)
            if line.startswith("#") or match is None:
                continue
            raw, labels, value, _ = match.groups()
            last[source][page_name(_name(raw), declared) + _labels(labels)] = float(value)
    total: dict[str, float] = defaultdict(float)
    for values in last.values():
        for series, value in values.items():
            total[series] += value
    return total


def page_values(page: str) -> tuple[dict[str, float], dict[str, str]]:
    """``(series -> value, family -> type)`` of a 0.0.4 page."""
    values: dict[str, float] = {}
    types: dict[str, str] = {}
    for line in page.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif not line.startswith("#") and line:
            match = _PAGE.fullmatch(line)
            assert match is not None, line
            name, labels, value = match.groups()
            series = name + _labels(labels)
            assert series not in values, f"{series} twice on the page"
            values[series] = float(value)
    return values, types


def counter_like(series: str, types: dict[str, str]) -> bool:
    name = series.split("{", maxsplit=1)[0]
    if types.get(name) == "counter":
        return True
    if name.endswith("_count") and types.get(name[:-6]) == "summary":  # moments
        return True
    return any(name.endswith(s) and types.get(name[: -len(s)]) == "histogram"
               for s in ("_bucket", "_sum", "_count"))  # fmt: skip


def check_exact(page: str, folder: Path) -> int:
    values, types = page_values(page)
    want = oracle(folder)
    checked = 0
    for series, value in values.items():
        if not counter_like(series, types):
            continue
        if 'le="inf"' in series:  # the Rust crate writes no +Inf bucket: it is the _count
            assert value == values[series.split("{")[0].replace("_bucket", "_count")]
            continue
        assert value == pytest.approx(want[series], rel=1e-12), series
        checked += 1
    for side in ("rpc_time_exceeds_max_total", "rpc_time_is_negative_total",
                 "small_hist_exceeds_max_total"):  # fmt: skip
        assert types[side] == "counter"
        assert values[side] == want[side]
    return checked


def served_page(folder: Path, tmp_path: Path) -> str:
    spool = tmp_path / "spool"
    shutil.copytree(folder, spool)
    for path in spool.iterdir():
        path.chmod(0o644)
    exporter = Exporter(ExporterOptions(spool=str(spool), state=str(tmp_path / "state.json")))
    exporter.open()
    try:
        for _ in range(10):
            exporter.ingest_pass()
            if not list(spool.glob("*.prom")):
                break
        assert not list(spool.glob("*.prom"))
        assert not (spool / "quarantine").exists(), "a Rust file was quarantined"
        return exporter.store.render()
    finally:
        exporter.close()


@pytest.mark.parametrize("folder", FOLDERS)
def test_serve_merges_rust_files_exactly(folder: str, tmp_path: Path) -> None:
    """serve's ingest: every counter-like series equals the per-source newest value summed."""
    page = served_page(RUST / folder, tmp_path)
    assert check_exact(page, RUST / folder) > 40
    values, types = page_values(page)
    assert values["rpc_time_sum"] == pytest.approx(1362.3)
    assert types["http_requests_total"] == "counter"
    assert types["biometrics_collector_register_counter_total"] == "counter"
    assert types["errors_total_plain_total"] == "counter"
    assert types["response_bytes"] == "summary"
    assert "http_requests" not in types and "response_bytes_m2" not in values
    assert values["weird_name_x_total"] == 7 and values["_9lives"] == 9


@pytest.mark.parametrize("folder", FOLDERS)
def test_cat_merges_rust_files_exactly_without_problems(folder: str) -> None:
    """cat's merged page agrees with serve and reports nothing wrong with real Rust files."""
    page, problems = merged_page([RUST / folder])
    assert problems == []
    assert check_exact(page, RUST / folder) > 40


@needs_prometheus
@pytest.mark.parametrize("folder", FOLDERS)
def test_promtool_accepts_the_merged_rust_page(folder: str, tmp_path: Path) -> None:
    """The real promtool finds no parse error (lint findings only) in the merged page."""
    assert PROMTOOL is not None
    page = served_page(RUST / folder, tmp_path)
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=page, capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode in (0, 3), result.stderr
    assert "error while linting" not in result.stderr
