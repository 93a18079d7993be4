"""``biometrics.files``, the offline tools' library: segments read as ``serve`` reads them."""

from pathlib import Path

import pytest

from biometrics import BiometricsError, Collector, Counter, Histogram
from biometrics.files import check, merged_page, segment_files, timeline
from biometrics.prometheus import Options, SegmentEmitter

T0 = 1_700_000_000_000


def write_sources(spool: Path, sources: dict[str, int], emits: int = 3) -> None:
    """Each source counts ``clicks`` per emit and observes 0.5 once per emit."""
    spool.mkdir(exist_ok=True)
    for name, clicks in sources.items():
        c = Collector()
        jobs = c.register(Counter("jobs.done_total", help="Jobs done."))
        lat = c.register(Histogram("lat.seconds"))
        with SegmentEmitter(Options(prefix=spool / f"{name}.")) as e:
            for step in range(emits):
                jobs.count(clicks)
                lat.observe(0.5)
                c.emit(e, T0 + step * 1000)


def test_segment_files_expands_directories_and_names_a_missing_path(tmp_path: Path) -> None:
    """A directory stands for its segments in name order; a missing path is an error naming it."""
    write_sources(tmp_path, {"a": 1, "b": 2})
    (tmp_path / "notes.txt").write_text("x")
    assert [Path(p).name for p in segment_files([tmp_path])] == [
        f"a.{T0}.prom",
        f"b.{T0}.prom",
    ]
    with pytest.raises(BiometricsError, match="nope: no such file"):
        segment_files([tmp_path / "nope"])


def test_merged_page_sums_sources_like_serve(tmp_path: Path) -> None:
    """The merged page sums the sources as serve's does, in both formats, HELP kept."""
    write_sources(tmp_path, {"a": 1, "b": 2})
    page, problems = merged_page([tmp_path])
    assert problems == []
    assert "jobs_done_total 9\n" in page  # 3 + 6
    assert "lat_seconds_count 6\n" in page
    assert "# HELP jobs_done_total Jobs done.\n" in page
    om, _ = merged_page([tmp_path], openmetrics=True)
    assert om.endswith("# EOF\n") and "# TYPE jobs_done counter\n" in om


def test_timeline_keeps_every_sample_in_time_order_per_series(tmp_path: Path) -> None:
    """The timeline holds every sample of a series with its time, oldest first."""
    write_sources(tmp_path, {"a": 1})
    lines = timeline([tmp_path])
    text = lines.render()
    jobs = [ln for ln in text.splitlines() if ln.startswith("jobs_done_total")]
    assert jobs == [f"jobs_done_total {n} {T0 + (n - 1) * 1000}" for n in (1, 2, 3)]
    om = timeline([tmp_path]).render(openmetrics=True)
    assert f"jobs_done_total 3 {(T0 + 2000) // 1000}\n" in om
    assert om.endswith("# EOF\n")
    assert lines.shared == set()


def test_two_sources_of_one_series_are_flagged_or_labelled_apart(tmp_path: Path) -> None:
    """Two writers of one series are reported, or kept apart by a source label."""
    write_sources(tmp_path, {"a": 1, "b": 2})
    assert "jobs_done_total" in timeline([tmp_path]).shared
    labelled = timeline([tmp_path], source_label="src")
    assert labelled.shared == set()
    text = labelled.render()
    assert f'jobs_done_total{{src="a"}} 3 {T0 + 2000}' in text
    assert f'jobs_done_total{{src="b"}} 6 {T0 + 2000}' in text


def test_check_reports_file_and_line_and_spares_a_live_segments_tail(tmp_path: Path) -> None:
    """Problems read file:line; a torn last line counts only once its writer is done."""
    write_sources(tmp_path, {"a": 1})
    bad = tmp_path / f"bad.{T0}.prom"
    bad.write_text("ok_metric 1\nnot a sample line\nlast_torn 1")
    (tmp_path / "noname.prom").write_text("x 1\n")
    files, problems = check([tmp_path])
    assert files == 3
    assert any(p.startswith(f"{bad}:2: ") for p in problems)
    assert any(p.startswith(f"{bad}:3: ") for p in problems), "a finished file's torn tail"
    assert any(p.startswith(f"{tmp_path / 'noname.prom'}:0: name") for p in problems)
    c = Collector()
    with SegmentEmitter(Options(prefix=tmp_path / "live.")) as e:
        c.emit(e, T0)
        assert e.path is not None
        with open(e.path, "a") as f:
            f.write("half_writ")
        _, live = check([e.path])
        assert live == [], "a locked segment's tail is the line being written"


def test_check_reports_a_name_two_kinds_claim(tmp_path: Path) -> None:
    """A histogram ``h`` in one file and a plain counter ``h_count`` in another: reported."""
    (tmp_path / "a.1000.prom").write_text(
        '# TYPE h histogram\nh_bucket{le="1.0"} 1 1000\nh_sum 1 1000\nh_count 1 1000\n'
    )
    (tmp_path / "b.1000.prom").write_text("# TYPE h_count counter\nh_count 5 1000\n")
    files, problems = check([tmp_path])
    assert files == 2
    assert problems == [
        f"{tmp_path / 'b.1000.prom'}:2: h_count_total is a counter here but the histogram h "
        "already holds that name on the page; this segment's readings of it are dropped"
    ]
    page, _ = merged_page([tmp_path])
    assert "h_count 1\n" in page and "h_count 5" not in page


def test_tools_read_a_source_in_time_order_not_name_order(tmp_path: Path) -> None:
    """``x.999.prom`` comes before ``x.1000.prom``: a string sort would take it for a restart."""
    (tmp_path / "x.999.prom").write_text("# TYPE c_total counter\nc_total 5 999\n")
    (tmp_path / "x.1000.prom").write_text("# TYPE c_total counter\nc_total 7 1000\n")
    page, problems = merged_page([tmp_path])
    assert "c_total 7\n" in page and problems == []


RUST_SEGMENT = (
    "# HELP http_requests Requests.\n# TYPE http_requests counter\nhttp_requests 5 1000\n"
    '# TYPE h histogram\n# TYPE h_count counter\nh_bucket{le="1.0000"} 1 1000\n'
    "h_sum 1 1000\nh_count 1 1000\n# TYPE h_exceeds_max gauge\nh_exceeds_max 2 1000\n"
    "# TYPE m_count counter\n# TYPE m_mean gauge\nm_count 3 1000\nm_mean 2 1000\n"
)


def test_backfill_names_families_as_the_page_does(tmp_path: Path) -> None:
    """A Rust counter ``x`` is the counter ``x_total`` (OpenMetrics: family ``x``), a side
    counter too, a moments count is a summary's; no family is ``unknown``."""
    (tmp_path / "rust.1000.prom").write_text(RUST_SEGMENT)
    (tmp_path / "rust.2000.prom").write_text("http_requests 6 2000\n")  # rotated: no TYPE yet
    lines = timeline([tmp_path])
    assert lines.problems == []
    text = lines.render()
    assert "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n" in text
    assert "http_requests_total 5 1000\nhttp_requests_total 6 2000\n" in text
    assert "# TYPE h_exceeds_max_total counter\nh_exceeds_max_total 2 1000\n" in text
    assert "# TYPE h histogram\n" in text and "# TYPE m summary\nm_count 3 1000\n" in text
    om = lines.render(openmetrics=True)
    assert "# TYPE http_requests counter\nhttp_requests_total 5 1\nhttp_requests_total 6 2\n" in om
    assert "# TYPE h_exceeds_max counter\nh_exceeds_max_total 2 1\n" in om
    assert "unknown" not in om and "\nhttp_requests " not in om


def test_backfill_leaves_out_a_family_whose_name_another_holds(tmp_path: Path) -> None:
    """A gauge ``x_total`` beside the counter ``x`` (renamed ``x_total``) is reported and left
    out; a TYPE contradicting an earlier file's is reported and ignored."""
    (tmp_path / "a.1000.prom").write_text("# TYPE x counter\nx 1 1000\n")
    (tmp_path / "b.1000.prom").write_text(
        "# TYPE x_total gauge\nx_total 2 1000\n# TYPE x gauge\nx 3 1000\n"
    )
    lines = timeline([tmp_path])
    assert [(p.line, p.message) for p in lines.problems] == [
        (2, "x_total would be the gauge x_total, but the counter x_total holds that name; its "
            "samples are left out"),
        (3, "x is a counter in an earlier file; this TYPE gauge is ignored"),
    ]  # fmt: skip
    rows = [ln for ln in lines.render().splitlines() if not ln.startswith("#")]
    assert rows == ["x_total 1 1000", "x_total 3 1000"]


def test_two_exporters_pages_sum_by_le_exactly(tmp_path: Path) -> None:
    """Two hosts, two ``serve``s: their pages list one le set, so ``sum by (le)`` is exact.

    Host a saw three 0.08 s requests, host b one 0.4 s and one 30 s request; before fixed
    layouts each page listed only its own non-empty buckets and the sum was wrong.
    """
    for host, values in (("a", (0.08, 0.08, 0.08)), ("b", (0.4, 30.0))):
        (tmp_path / host).mkdir()
        c = Collector()
        lat = c.register(Histogram("http.seconds"))
        for x in values:
            lat.observe(x)
        with SegmentEmitter(Options(prefix=tmp_path / host / "web.")) as e:
            c.emit(e, T0)
    sums: dict[str, float] = {}
    le_sets = []
    for host in ("a", "b"):
        page, problems = merged_page([tmp_path / host])
        assert problems == []
        les = []
        for line in page.splitlines():
            if line.startswith("http_seconds_bucket"):
                le, value = line.split('le="')[1].split('"} ')
                les.append(le)
                sums[le] = sums.get(le, 0.0) + float(value)
        le_sets.append(les)
    assert le_sets[0] == le_sets[1] and len(le_sets[0]) == 16
    assert (sums["0.1"], sums["0.25"], sums["0.5"], sums["30.0"], sums["+Inf"]) == (3, 3, 4, 5, 5)
    assert sums["0.5"] / sums["+Inf"] == 0.8  # the share of requests <= 0.5 s, exactly
