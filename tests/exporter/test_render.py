"""The page: lines kept per series between scrapes, built in chunks, cached per store version."""

import threading
from pathlib import Path

import pytest

from biometrics import MomentsReading
from biometrics.exporter import Exporter, ExporterOptions, Store, render
from biometrics.prometheus import Reading

from .readings import counter, histogram, lines


def test_unchanged_series_keep_their_rendered_lines() -> None:
    """A scrape re-renders only what changed: other series' lines are the very same objects."""
    store = Store()
    store.ingest("a", [counter("x_total", 1, 1, k="1"), counter("x_total", 1, 1, k="2")])
    store.render()
    family = store._families["x_total"]
    before = {labels: s.text for labels, s in family.series.items()}
    store.ingest("a", [counter("x_total", 2, 2, k="2")])
    assert family.series['{k="2"}'].text is None
    assert lines(store) == ['x_total{k="1"} 1', 'x_total{k="2"} 2']
    assert family.series['{k="1"}'].text is before['{k="1"}']


def test_a_page_is_built_in_chunks_and_ingest_goes_on_between_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between chunks of series the lock is free: another thread ingests mid-page."""
    monkeypatch.setattr(render, "CHUNK", 2)
    store = Store()
    store.ingest("a", [counter("x_total", 1, 1, k=str(i)) for i in range(6)])
    done: list[int] = []

    def ingest_elsewhere() -> None:
        if not done:
            t = threading.Thread(
                target=lambda: done.append(
                    store.ingest("b", [counter("x_total", 7, 1, k="5"), counter("new_total", 1, 1)])
                )
            )
            t.start()
            t.join(timeout=10)
            assert done == [2], "ingest could not take the lock between chunks"

    monkeypatch.setattr(render, "let_others_in", ingest_elsewhere)
    version = store.version
    page = [x for x in store.render().splitlines() if not x.startswith("#")]
    assert done == [2] and store.version > version
    # Each series whole, from one state or the other; the new family comes next time.
    assert page[:5] == [f'x_total{{k="{i}"}} 1' for i in range(5)]
    assert page[5] == 'x_total{k="5"} 8'  # its chunk came after the ingest
    assert lines(store) == ["new_total 1", *page[:5], 'x_total{k="5"} 8']


def test_histogram_labels_with_escapes_render_as_written() -> None:
    """Quotes, backslashes and line feeds in label values survive into every bucket line."""
    store = Store()
    tricky = 'a"b\\c\nd'
    store.ingest("a", [histogram("h", (0.5,), (2.0,), (0.7, 2.0), 1, path=tricky)])
    escaped = 'path="a\\"b\\\\c\\nd"'
    assert lines(store) == [
        f'h_bucket{{{escaped},le="0.5"}} 2',
        f'h_bucket{{{escaped},le="+Inf"}} 2',
        f"h_sum{{{escaped}}} 0.7",
        f"h_count{{{escaped}}} 2",
    ]


def test_moments_with_sums_beyond_a_power_still_render() -> None:
    """m2 = 1e300 (finite) overflows ``m2**1.5``: the page is still served, skewness ~0."""
    store = Store()
    store.ingest("a", [Reading("moments", "m", (), MomentsReading(3, 1.0, 1e300, 1e10, 1.0), 1)])
    page = dict(x.split(" ") for x in lines(store))
    assert page["m_count"] == "3" and page["m_sum"] == "3.0" and "m_m2" not in page
    assert float(page["m_skewness"]) == pytest.approx(0.0)


def test_the_page_cache_is_per_store_version(tmp_path: Path) -> None:
    """Exporter.page() renders once per version and format; any change shows next scrape."""
    exporter = Exporter(ExporterOptions(spool=str(tmp_path), max_series=100))
    store = exporter.store
    assert store.max_series_per_source == 10  # a tenth by default
    store.ingest("a", [counter("x_total", 1, 1)])
    first = exporter.page()
    calls: list[bool] = []
    real = store.render

    def counting(**kw: bool) -> str:
        calls.append(kw["openmetrics"])
        return real(**kw)

    store.render = counting  # type: ignore[method-assign]
    assert exporter.page().split("\n# HELP biometrics")[0] == first.split("\n# HELP biometrics")[0]
    assert calls == []
    exporter.page(openmetrics=True)
    store.ingest("a", [counter("x_total", 2, 2)])
    assert "x_total 2\n" in exporter.page()
    assert calls == [True, False]


def test_many_small_families_take_one_turn_per_chunk_not_one_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A turn costs ~75 µs: 650 one-series families once cost a scrape 50 ms in turns alone."""
    monkeypatch.setattr(render, "CHUNK", 100)
    turns: list[int] = []
    monkeypatch.setattr(render, "let_others_in", lambda: turns.append(1))
    store = Store()
    store.ingest("a", [counter(f"x{i}_total", 1, 1) for i in range(650)])
    assert len(store.render().splitlines()) == 650 * 2  # a TYPE line and a sample each
    assert len(turns) == 6
