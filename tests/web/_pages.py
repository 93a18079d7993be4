"""Reading a collector the way a scrape would: every sample by name and labels."""

from __future__ import annotations

from biometrics import Collector
from biometrics.prometheus import Sample, SlashMetrics, parse

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(collector: Collector) -> Samples:
    """Every sample of ``collector``'s page, by (name, sorted label pairs)."""
    page = SlashMetrics()
    collector.emit(page)
    lines = page.render().encode().splitlines(keepends=True)
    return {(s.name, s.labels): s.value for s in parse(lines, strict=True) if isinstance(s, Sample)}


def requests(values: Samples, method: str, route: str, status: str) -> float | None:
    """``http_requests_total`` of these labels (None when absent)."""
    labels = (("method", method), ("route", route), ("status", status))
    return values.get(("http_requests_total", labels))


def duration_count(values: Samples, method: str, route: str, status: str) -> float | None:
    """``http_request_duration_seconds_count`` of these labels (None when absent)."""
    labels = (("method", method), ("route", route), ("status", status))
    return values.get(("http_request_duration_seconds_count", labels))


def in_progress(values: Samples, method: str) -> float | None:
    """``http_requests_in_progress`` of this method (None when absent)."""
    return values.get(("http_requests_in_progress", (("method", method),)))
