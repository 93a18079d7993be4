"""What a frame looks like as text, at a terminal's size and as plain text."""

import math

from biometrics.top import (
    CounterRow,
    Frame,
    GaugeRow,
    HistogramRow,
    SeriesKey,
    SourceRow,
    SourceState,
    render,
)

T0 = 1_700_000_000_000


def _frame(counters: int = 3, problems: tuple[str, ...] = ()) -> Frame:
    return Frame(
        taken_ms=T0,
        window_s=2.0,
        counters=tuple(
            CounterRow(
                SeriesKey(f"c{i}_total", (("route", "/a/very/long/path"),)),
                1000.0 * i,
                12.5 / (i + 1),
            )
            for i in range(counters)
        ),
        histograms=(
            HistogramRow(SeriesKey("lat"), 40, 7.5, (0.3, 0.8, 0.98), True),
            HistogramRow(SeriesKey("idle"), 0, None, (math.nan,) * 3, False),
        ),
        gauges=(GaugeRow(SeriesKey("depth"), 7.5),),
        sources=(
            SourceRow("web.host.12", 1.25, 2, SourceState.LIVE),
            SourceRow("cron.host.9", 4000, 0, SourceState.STOPPED),
        ),
        problems=problems,
    )


def test_plain_text_has_every_row_aligned() -> None:
    """No size: nothing cut, numbers in right-aligned columns, quantiles marked by where they
    come from."""
    lines = render(_frame(), None, None, title="/spool")
    assert lines[0] == "biometrics top /spool  22:13:20 UTC  rates over 2s"
    text = "\n".join(lines)
    assert lines[1:5] == [
        "SOURCES (2)",
        "  source            age  files    state",
        "  web.host.12      1.2s      2     live",
        "  cron.host.9     1h06m      0  stopped",
    ]
    assert lines[lines.index("COUNTERS, busiest first (3)") + 2] == (
        '  c0_total{route="/a/very/long/path"}         12.5              0'
    )
    assert '  c2_total{route="/a/very/long/path"}        4.167           2000' in lines
    assert "  lat             7.5        0.3        0.8       0.98" in lines
    assert "  idle              -       NaN*       NaN*       NaN*" in lines
    assert lines[-1] == "  depth             7.5"
    assert "PROBLEMS" not in text


def test_a_small_screen_shares_rows_and_cuts_names_not_numbers() -> None:
    """Every line fits the width; each section gets rows in turn; problems are never crowded
    out by a thousand counters; a cut section says how many it shows."""
    frame = _frame(counters=1000, problems=("source x is stale: no emission for 99 s",))
    lines = render(frame, 50, 16, title="http://127.0.0.1:9464/metrics")
    assert len(lines) == 16 and all(len(line) <= 50 for line in lines)
    assert "COUNTERS, busiest first (2 of 1000 shown)" in lines
    assert lines[-2:] == ["PROBLEMS (1)", "  source x is stale: no emission for 99 s"]
    assert '  c0_total{route="/a…         12.5              0' in lines
    assert lines[0].endswith("…") and "  lat               7.5        0.3        0.8    …" in lines


def test_a_section_without_room_for_a_row_leaves_its_lines_to_others() -> None:
    """Height for only a few rows: the least urgent sections leave, counters stay whole."""
    lines = render(_frame(), 80, 6, title="s")
    assert len(lines) == 6
    assert lines[1] == "COUNTERS, busiest first (3)"
    assert not any(line.startswith(("SOURCES", "GAUGES", "HISTOGRAMS")) for line in lines)


def test_first_frame_says_it_waits_for_rates() -> None:
    """Without a window there are no rates yet: the title says so and rates show '-'."""
    frame = Frame(T0, None, (CounterRow(SeriesKey("x_total"), 3, None),), (), (), (), ())
    lines = render(frame, None, None, title="s")
    assert "rates: waiting for a second reading" in lines[0]
    assert lines[-1] == "  x_total            -              3"
