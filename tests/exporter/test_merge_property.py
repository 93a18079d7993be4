"""Property: whatever mix of complete, torn and duplicate segments several sources leave, the
merged counters equal each source's newest complete reading, summed, and the page is valid.

Segments are built as our writer lays them out (TYPE once per segment; a histogram's buckets,
``+Inf``, ``_sum``, ``_count``); a torn segment is cut at any byte of its last emission (a
killed writer or a full disk); a duplicate is an earlier segment read again (a journal replay).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from biometrics.exporter import Store
from biometrics.prometheus import parse

BOUNDS = (1.0, 2.0)
PAGES: list[str] = []


@dataclass(frozen=True, slots=True)
class Emission:
    ts: int
    counter: int
    buckets: tuple[int, int, int]
    """Cumulative counts at le=1.0, le=2.0 and +Inf."""
    total: float


@dataclass(frozen=True, slots=True)
class Segment:
    source: str
    text: bytes
    complete_counter: Emission | None
    complete_histogram: Emission | None
    """The newest emission whose counter (or histogram) reading is whole in this text."""


def emission_lines(e: Emission) -> list[bytes]:
    t = e.ts
    lines = [b"c_total %d %d\n" % (e.counter, t)]
    for le, n in zip(("1.0", "2.0", "+Inf"), e.buckets, strict=True):
        lines.append(b'h_bucket{le="%s"} %d %d\n' % (le.encode(), n, t))
    lines.append(b"h_sum %r %d\n" % (e.total, t))
    lines.append(b"h_count %d %d\n" % (e.buckets[2], t))
    return lines


def build_segment(source: str, emissions: list[Emission], cut: int | None) -> Segment:
    """``cut``: keep only this many bytes of the last emission (None: keep it whole)."""
    head = b"# TYPE c_total counter\n# TYPE h histogram\n"
    text = head + b"".join(b"".join(emission_lines(e)) for e in emissions[:-1])
    done_c = done_h = emissions[-2] if len(emissions) > 1 else None
    last = emission_lines(emissions[-1])
    whole = b"".join(last)
    kept = whole if cut is None else whole[: cut % (len(whole) + 1)]
    if kept.startswith(last[0]):
        done_c = emissions[-1]
    if kept.startswith(b"".join(last[:5])):  # through _sum: +Inf and _sum make it whole
        done_h = emissions[-1]
    return Segment(source, text + kept, done_c, done_h)


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Segment], dict[str, tuple[int, int, tuple[int, ...]]]]:
    """Segments in one read order, and per source the newest whole counter/histogram values."""
    sources = draw(st.integers(1, 3))
    per_source: list[list[Segment]] = []
    for s in range(sources):
        name = f"web.h.{s}"
        ts, counter, buckets, total = 1_000 * (s + 1), 0, [0, 0, 0], 0.0
        segments: list[Segment] = []
        for _ in range(draw(st.integers(1, 4))):
            emissions = []
            for _ in range(draw(st.integers(1, 3))):
                ts += draw(st.integers(1, 5_000))
                counter += draw(st.integers(0, 50))
                small, mid, big = (draw(st.integers(0, 9)) for _ in range(3))
                buckets = [buckets[0] + small, buckets[1] + small + mid,
                           buckets[2] + small + mid + big]  # fmt: skip
                total += 0.5 * small + 1.5 * mid + 7.0 * big
                emissions.append(Emission(ts, counter, (buckets[0], buckets[1], buckets[2]),
                                          total))  # fmt: skip
            cut = draw(st.none() | st.integers(0, 400))
            segments.append(build_segment(name, emissions, cut))
        per_source.append(segments)
    # Interleave the sources keeping each one's order; replay some earlier segments again.
    order: list[Segment] = []
    queues = [list(q) for q in per_source]
    seen: list[Segment] = []
    while any(queues):
        pick = draw(st.sampled_from([q for q in queues if q]))
        order.append(pick.pop(0))
        seen.append(order[-1])
        if draw(st.booleans()) and draw(st.booleans()):
            order.append(draw(st.sampled_from(seen)))
    want: dict[str, tuple[int, int, tuple[int, ...]]] = {}
    for segments in per_source:
        counters = [s.complete_counter for s in segments if s.complete_counter is not None]
        hists = [s.complete_histogram for s in segments if s.complete_histogram is not None]
        c = max(counters, key=lambda e: e.ts).counter if counters else 0
        h = max(hists, key=lambda e: e.ts) if hists else None
        want[segments[0].source] = (c, 0 if h is None else h.buckets[2],
                                    (0, 0, 0) if h is None else h.buckets)  # fmt: skip
    return order, want


def page_values(page: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in page.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            assert series not in out, f"{series} twice"
            out[series] = float(value)
    return out


@settings(max_examples=150, deadline=2_000)
@given(fleets())
def test_merged_counters_are_the_newest_whole_readings_summed(
    fleet: tuple[list[Segment], dict[str, tuple[int, int, tuple[int, ...]]]],
) -> None:
    """Torn tails never count as resets, duplicates never count twice, nothing is lost."""
    order, want = fleet
    store = Store()
    for segment in order:
        parsed = parse([segment.text], path=f"{segment.source}.prom")
        store.ingest_segment(segment.source, parsed, 0)
        assert parsed.malformed == [], parsed.malformed
    page = store.render()
    got = page_values(page)
    counters = sum(c for c, _, _ in want.values())
    assert got.get("c_total", 0) == counters
    count = sum(n for _, n, _ in want.values())
    if count or "h_count" in got:
        assert got["h_count"] == count
        assert got['h_bucket{le="+Inf"}'] == count
        for i, le in enumerate(BOUNDS):
            expected = sum(b[i] for _, _, b in want.values())
            assert got.get(f'h_bucket{{le="{le}"}}', expected) == expected
    if len(PAGES) < 25 and page not in PAGES:
        PAGES.append(page)


def test_the_property_pages_pass_promtool() -> None:
    """The real promtool finds no parse error in the pages the property produced."""
    promtool = shutil.which("promtool")
    if promtool is None:
        assert not os.environ.get("BIOMETRICS_REQUIRE_PROMTOOL"), "promtool is required"
        return
    if not PAGES:
        test_merged_counters_are_the_newest_whole_readings_summed()
    assert PAGES
    for page in PAGES:
        result = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True,
                                text=True, timeout=60, check=False)  # fmt: skip
        assert result.returncode in (0, 3), (page, result.stderr)
