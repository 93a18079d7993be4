"""The real promtool (Debian's prometheus package) accepts what we write."""

import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from biometrics import Collector, Counter, Family, Gauge, Histogram, Moments
from biometrics.prometheus import Options, SegmentEmitter, SlashMetrics

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("BIOMETRICS_REQUIRE_PROMTOOL"),
    reason="promtool missing: scripts/test installs Debian's prometheus",
)


def busy_collector() -> Collector:
    c = Collector()
    c.register(Counter("app.requests.total", help="Requests.")).count(7)
    c.register(Gauge("app.temperature.celsius", help='A "quoted"\nhelp \\ text.')).set(-3.25)
    moments = c.register(Moments("app.response.size.bytes", help="Response sizes."))
    for x in (10.0, 20.0, 70.0):
        moments.add(x)
    hist = c.register(Histogram("app.latency.seconds", help="Latency."))
    for x in (0.0042, 0.3, 0.3, 12.0, math.inf, -1.0):
        hist.observe(x)
    routes = Family(Counter, "app.routes.total", ["route"], help="Per route.", collector=c)
    routes.labels('/a"b\\c\nd').click()
    routes.labels("/").count(2)
    return c


def check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def test_slash_metrics_page_has_no_parse_error() -> None:
    """promtool's strict parser (plus lint) finds no parse error in a page of every sensor kind."""
    page = SlashMetrics()
    busy_collector().emit(page, 1_726_547_192_000)
    result = check_metrics(page.render())
    assert result.returncode in (0, 3), result.stderr
    assert "error while linting" not in result.stderr
    assert "parsing error" not in result.stderr


def test_a_parse_error_would_be_caught() -> None:
    """The check is able to fail: a duplicate TYPE line is a parse error for promtool."""
    result = check_metrics("# TYPE x counter\nx 1\n# TYPE x counter\n")
    assert result.returncode == 1
    assert "parsing error" in result.stderr or "error while linting" in result.stderr


def test_a_timestamped_segment_has_no_parse_error(tmp_path: Path) -> None:
    """Segments (with ms timestamps, HELP/TYPE once) pass the strict parser too."""
    collector = busy_collector()
    with SegmentEmitter(Options(prefix=tmp_path / "s.")) as e:
        collector.emit(e, 1_726_547_192_000)
        collector.emit(e, 1_726_547_193_000)
    (segment,) = tmp_path.glob("s.*.prom")
    result = check_metrics(segment.read_text())
    assert result.returncode in (0, 3), result.stderr
    assert "error while linting" not in result.stderr


def test_names_two_kinds_claim_still_give_a_valid_page(tmp_path: Path) -> None:
    """Histogram ``h`` and moments ``m`` in one file, plain ``h_count``/``m_count``/``h_bucket``
    counters in another: the merged page keeps the first kind and promtool accepts it."""
    from biometrics.files import merged_page

    collector = busy_collector()
    collector.register(Histogram("h")).observe(0.5)
    collector.register(Moments("m")).add(2.0)
    with SegmentEmitter(Options(prefix=tmp_path / "a.")) as e:
        collector.emit(e, 1_726_547_192_000)
    (tmp_path / "b.1726547192001.prom").write_text(
        "# TYPE h_count counter\nh_count 5 1726547192001\n# TYPE h_bucket counter\n"
        "h_bucket 1 1726547192001\n# TYPE m_count counter\nm_count 9 1726547192001\n"
    )
    page, problems = merged_page([tmp_path])
    assert sorted(str(p).split(": ", 1)[1][:30] for p in problems) == [
        "h_bucket_total is a counter he",
        "h_count_total is a counter her",
        "moments m reading is incomplet",
    ]
    assert "h_count 5" not in page and "m_count 9" not in page and "_count_total" not in page
    result = check_metrics(page)
    assert result.returncode in (0, 3), result.stderr
    assert "error while linting" not in result.stderr


SUFFIX_LINTS = ('should have "_total" suffix', 'should not have "_count" suffix')


def test_our_counters_and_moments_draw_no_suffix_lint(tmp_path: Path) -> None:
    """promtool's lint has no ``_total``/``_count`` remark on our pages, in any writer's names.

    Counters named without ``_total`` (ours, the system and runtime sensors', the collector's
    own, a Rust file's) and moments: the SlashMetrics page and the merged page both.
    """
    from biometrics.files import merged_page
    from biometrics.system import RuntimeSensors, SystemSensors

    collector = busy_collector()
    collector.register(Counter("jobs.done", help="Jobs.")).count(3)
    system, runtime = SystemSensors().register(collector), RuntimeSensors().register(collector)
    system.poll()
    runtime.poll()
    page = SlashMetrics()
    collector.emit(page, 1_726_547_192_000)
    with SegmentEmitter(Options(prefix=tmp_path / "a.")) as e:
        collector.emit(e, 1_726_547_192_000)
    rust = Path(__file__).parent.parent / "fixtures" / "rust" / "head"
    merged, _ = merged_page([tmp_path, *sorted(rust.glob("*.prom"))])
    for text in (page.render(), merged):
        assert "# TYPE jobs_done_total counter\n" in text
        assert "# TYPE app_response_size_bytes summary\n" in text
        result = check_metrics(text)
        assert result.returncode in (0, 3), result.stderr
        complaints = [ln for ln in result.stderr.splitlines() if ln.endswith(SUFFIX_LINTS)]
        assert complaints == []
    assert "# TYPE http_requests_total counter\n" in merged  # the Rust crate's http.requests
