import math
from pathlib import Path

from biometrics import DEFAULT_BUCKETS, Counter, Gauge, Histogram, Moments
from biometrics.prometheus import Options, SegmentEmitter, SlashMetrics, prometheus_name
from biometrics.prometheus.exposition import (
    counter_name,
    escape_help,
    escape_label_value,
    format_le,
    format_value,
)


def test_names_are_sanitised() -> None:
    """Dots and other invalid characters become _, a leading digit gets a _ prefix."""
    assert prometheus_name("biometrics.collector.emit.counter") == (
        "biometrics_collector_emit_counter"
    )
    assert prometheus_name("a-b/c d:e") == "a_b_c_d:e"
    assert prometheus_name("9lives") == "_9lives"
    assert prometheus_name("héllo") == "h_llo"


def test_values_render_one_way() -> None:
    """ints bare, floats by repr, specials spelled as Prometheus wants."""
    assert format_value(3) == "3"
    assert format_value(2.0) == "2.0"
    assert format_value(0.1) == "0.1"
    assert format_value(1e-9) == "1e-09"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"
    assert format_le(1e12) == "1000000000000.0"
    assert format_le(math.inf) == "+Inf"


def test_escaping() -> None:
    """Label values escape backslash, quote and newline; HELP escapes backslash and newline."""
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert escape_help('a\\b"c\nd') == 'a\\\\b"c\\nd'
    assert escape_help('"', openmetrics=True) == '\\"'


def test_every_sensor_kind_renders_as_the_contract_says() -> None:
    """The whole page, byte for byte, for one sensor of each kind."""
    page = SlashMetrics()
    c = Counter("app.requests", help="Requests.\nAll of them.", labels={"path": '/a"b'})
    c.count(3)
    g = Gauge("app.temp")
    g.set(-1.5)
    m = Moments("app.size")
    for x in (1.0, 2.0, 3.0):
        m.add(x)
    h = Histogram("app.latency", help="Latency.", buckets=[0.5, 2.0])
    for x in (0.5, 0.5, 2.0, -1.0, math.nan):
        h.observe(x)
    page.emit_counter(c, 1)
    page.emit_gauge(g, 1)
    page.emit_moments(m, 1)
    page.emit_histogram(h, 1)
    assert page.render() == (
        "# HELP app_requests_total Requests.\\nAll of them.\n"
        "# TYPE app_requests_total counter\n"
        'app_requests_total{path="/a\\"b"} 3\n'
        "# TYPE app_temp gauge\n"
        "app_temp -1.5\n"
        "# TYPE app_size summary\n"
        "app_size_count 3\n"
        "app_size_sum 6.0\n"
        "# TYPE app_size_mean gauge\n"
        "app_size_mean 2.0\n"
        "# TYPE app_size_variance gauge\n"
        "app_size_variance 1.0\n"
        "# TYPE app_size_skewness gauge\n"
        "app_size_skewness 0.0\n"
        "# TYPE app_size_kurtosis gauge\n"
        "app_size_kurtosis 1.5\n"
        "# HELP app_latency Latency.\n"
        "# TYPE app_latency histogram\n"
        'app_latency_bucket{le="0.5"} 3\n'
        'app_latency_bucket{le="2.0"} 4\n'
        'app_latency_bucket{le="+Inf"} 5\n'
        "app_latency_sum 2.0\n"
        "app_latency_count 5\n"
        "# HELP app_latency_exceeds_max_total Observations above the last finite bucket bound, "
        "+Inf or NaN (also counted in +Inf).\n"
        "# TYPE app_latency_exceeds_max_total counter\n"
        "app_latency_exceeds_max_total 1\n"
        "# HELP app_latency_is_negative_total Observations below zero (also counted in the "
        "first bucket).\n"
        "# TYPE app_latency_is_negative_total counter\n"
        "app_latency_is_negative_total 1\n"
    )


def test_histogram_lines_are_every_bucket_of_the_layout() -> None:
    """Two histograms, one busy and one nearly idle: the same le set, empty buckets included.

    That is what lets Prometheus sum them by le; the line count is the layout's, never what
    was observed (16 with the default layout).
    """
    busy, idle = Histogram("h", labels={"host": "a"}), Histogram("h", labels={"host": "b"})
    for i in range(10_000):
        busy.observe(0.0005 * (1 + i % 200))
    idle.observe(0.3)
    page = SlashMetrics()
    page.emit_histogram(busy, 1)
    page.emit_histogram(idle, 1)
    les: dict[str, list[str]] = {"a": [], "b": []}
    values: dict[str, list[int]] = {"a": [], "b": []}
    for line in page.render().splitlines():
        if line.startswith("h_bucket"):
            host, le = line.split('host="')[1][0], line.split('le="')[1].split('"')[0]
            les[host].append(le)
            values[host].append(int(line.rsplit(" ", 1)[1]))
    assert les["a"] == les["b"] == [format_le(b) for b in (*DEFAULT_BUCKETS, math.inf)]
    assert values["b"] == [0] * 8 + [1] * 8  # 0.3 s: first counted at le="0.5"
    assert values["a"] == sorted(values["a"]) and values["a"][-1] == 10_000


def test_openmetrics_rendering() -> None:
    """Every counter an OM counter ``x`` with sample ``x_total`` (as over 0.0.4); seconds; EOF."""
    page = SlashMetrics(timestamps=True)
    c = Counter("jobs.total", help='Jobs "done".')
    c.click()
    page.emit_counter(c, 1_726_547_192_250)
    page.emit_counter(Counter("other"), 5_000)
    assert page.render_openmetrics() == (
        '# HELP jobs Jobs \\"done\\".\n'
        "# TYPE jobs counter\n"
        "jobs_total 1 1726547192.250\n"
        "# TYPE other counter\n"
        "other_total 0 5\n"
        "# EOF\n"
    )
    assert page.render().splitlines()[2] == "jobs_total 1 1726547192250"
    assert "unknown" not in page.render_openmetrics()


def test_slash_metrics_keeps_one_series_per_label_set() -> None:
    """Emitting again replaces a series; families stay together across emits."""
    page = SlashMetrics()
    a1 = Counter("a", labels={"k": "1"})
    a2 = Counter("a", labels={"k": "2"})
    b = Counter("b")
    for now in (1, 2):
        a1.click()
        page.emit_counter(a1, now)
        page.emit_counter(b, now)
        page.emit_counter(a2, now)
    lines = page.render().splitlines()
    assert lines == [
        "# TYPE a_total counter",
        'a_total{k="1"} 2',
        'a_total{k="2"} 0',
        "# TYPE b_total counter",
        "b_total 0",
    ]
    page.clear()
    assert page.render() == ""


def test_counter_names_are_canonical_total() -> None:
    """``x`` becomes ``x_total``; a name already so ends stays; labels sanitise first."""
    assert counter_name("http.requests") == "http_requests_total"
    assert counter_name("jobs_total") == "jobs_total"
    assert counter_name("jobs.total") == "jobs_total"
    assert counter_name("9lives") == "_9lives_total"
    assert counter_name("errors_total_plain") == "errors_total_plain_total"


def test_a_counter_page_names_x_total_in_both_formats() -> None:
    """0.0.4: TYPE and sample ``x_total``; OpenMetrics: family ``x``, sample ``x_total``."""
    page = SlashMetrics()
    c = Counter("http.requests", help="Requests.", labels={"code": "200"})
    c.count(5)
    page.emit_counter(c, 1)
    assert page.render() == (
        "# HELP http_requests_total Requests.\n"
        "# TYPE http_requests_total counter\n"
        'http_requests_total{code="200"} 5\n'
    )
    assert page.render_openmetrics() == (
        "# HELP http_requests Requests.\n"
        "# TYPE http_requests counter\n"
        'http_requests_total{code="200"} 5\n'
        "# EOF\n"
    )


def test_moments_page_is_a_summary_and_gauges_without_merge_state(tmp_path: Path) -> None:
    """Page: summary ``m`` (``_count``, ``_sum`` = n * mean) and four gauges, in both formats;
    an empty one has sum 0.  Segments keep ``_m2``..``_m4`` for the exporter's exact merge."""
    m = Moments("resp.bytes", help="Sizes.")
    for x in (1.0, 2.0, 6.0):
        m.add(x)
    empty = Moments("idle")
    page = SlashMetrics()
    page.emit_moments(m, 1)
    page.emit_moments(empty, 1)
    text = page.render()
    assert text.startswith(
        "# HELP resp_bytes Sizes.\n# TYPE resp_bytes summary\nresp_bytes_count 3\n"
        "resp_bytes_sum 9.0\n# HELP resp_bytes_mean Sizes.\n# TYPE resp_bytes_mean gauge\n"
        "resp_bytes_mean 3.0\n"
    )
    kinds = [line.split()[2:] for line in text.splitlines() if line.startswith("# TYPE")]
    assert kinds == [
        ["resp_bytes", "summary"], ["resp_bytes_mean", "gauge"], ["resp_bytes_variance", "gauge"],
        ["resp_bytes_skewness", "gauge"], ["resp_bytes_kurtosis", "gauge"],
        ["idle", "summary"], ["idle_mean", "gauge"], ["idle_variance", "gauge"],
        ["idle_skewness", "gauge"], ["idle_kurtosis", "gauge"],
    ]  # fmt: skip
    assert "idle_count 0\nidle_sum 0.0\n" in text and "_m2" not in text and "_m4" not in text
    om = page.render_openmetrics()
    assert "# TYPE resp_bytes summary\nresp_bytes_count 3\nresp_bytes_sum 9.0\n" in om
    assert "_m2" not in om
    with SegmentEmitter(Options(prefix=tmp_path / "s.")) as e:
        e.emit_moments(m, 1)
    segment = (tmp_path / "s.1.prom").read_text()
    assert "resp_bytes_m2 " in segment and "resp_bytes_m4 " in segment
    assert "resp_bytes_sum" not in segment
