import math

from biometrics import Counter, Gauge, Histogram, Moments
from biometrics.prometheus import SlashMetrics, prometheus_name
from biometrics.prometheus._text import escape_help, escape_label_value, format_le, format_value


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
    h = Histogram("app.latency", help="Latency.")
    for x in (0.5, 0.5, 2.0, -1.0, math.nan):
        h.observe(x)
    page.emit_counter(c, 1)
    page.emit_gauge(g, 1)
    page.emit_moments(m, 1)
    page.emit_histogram(h, 1)
    assert page.render() == (
        "# HELP app_requests Requests.\\nAll of them.\n"
        "# TYPE app_requests counter\n"
        'app_requests{path="/a\\"b"} 3\n'
        "# TYPE app_temp gauge\n"
        "app_temp -1.5\n"
        "# TYPE app_size_count counter\n"
        "app_size_count 3\n"
        "# TYPE app_size_mean gauge\n"
        "app_size_mean 2.0\n"
        "# TYPE app_size_variance gauge\n"
        "app_size_variance 1.0\n"
        "# TYPE app_size_skewness gauge\n"
        "app_size_skewness 0.0\n"
        "# TYPE app_size_kurtosis gauge\n"
        "app_size_kurtosis 1.5\n"
        "# TYPE app_size_m2 gauge\n"
        "app_size_m2 2.0\n"
        "# TYPE app_size_m3 gauge\n"
        "app_size_m3 0.0\n"
        "# TYPE app_size_m4 gauge\n"
        "app_size_m4 2.0\n"
        "# HELP app_latency Latency.\n"
        "# TYPE app_latency histogram\n"
        'app_latency_bucket{le="0.5"} 2\n'
        'app_latency_bucket{le="2.0"} 3\n'
        'app_latency_bucket{le="+Inf"} 3\n'
        "app_latency_sum 3.0\n"
        "app_latency_count 3\n"
        "# HELP app_latency_exceeds_max Observations above the histogram's range, +Inf or NaN.\n"
        "# TYPE app_latency_exceeds_max counter\n"
        "app_latency_exceeds_max 1\n"
        "# HELP app_latency_is_negative Negative observations (below the histogram's range).\n"
        "# TYPE app_latency_is_negative counter\n"
        "app_latency_is_negative 1\n"
    )


def test_histogram_lines_are_bounded_by_what_was_observed() -> None:
    """Thousands of possible buckets, but only non-empty ones get a line."""
    h = Histogram("h")
    for i in range(10_000):
        h.observe(1.0 + (i % 7))
    page = SlashMetrics()
    page.emit_histogram(h, 1)
    buckets = [line for line in page.render().splitlines() if line.startswith("h_bucket")]
    assert len(buckets) == 8
    cumulative = [int(line.rsplit(" ", 1)[1]) for line in buckets]
    assert cumulative == sorted(cumulative)
    assert cumulative[-1] == 10_000


def test_openmetrics_rendering() -> None:
    """``*_total`` counters as OM counters, others ``unknown`` (same series name); seconds; EOF."""
    page = SlashMetrics(timestamps=True)
    c = Counter("jobs.total", help='Jobs "done".')
    c.click()
    page.emit_counter(c, 1_726_547_192_250)
    page.emit_counter(Counter("other"), 5_000)
    assert page.render_openmetrics() == (
        '# HELP jobs Jobs \\"done\\".\n'
        "# TYPE jobs counter\n"
        "jobs_total 1 1726547192.250\n"
        "# TYPE other unknown\n"
        "other 0 5\n"
        "# EOF\n"
    )
    assert page.render().splitlines()[2] == "jobs_total 1 1726547192250"


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
        "# TYPE a counter",
        'a{k="1"} 2',
        'a{k="2"} 0',
        "# TYPE b counter",
        "b 0",
    ]
    page.clear()
    assert page.render() == ""
