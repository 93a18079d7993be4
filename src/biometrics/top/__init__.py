"""``biometrics top``: a live view of what a spool's writers, or a ``serve`` endpoint, report.

:mod:`.model` turns pages into snapshots and two snapshots into a :class:`Frame` (rates,
histogram quantiles, sources' ages, problems); :mod:`.read` reads a spool without touching
it, or GETs a ``/metrics`` page; :mod:`.view` renders a frame for a screen size and runs the
curses loop; :func:`top` puts them together.  Standard library only.
"""

from .model import (
    Buckets,
    CounterRow,
    Frame,
    GaugeRow,
    HistogramRow,
    History,
    SeriesKey,
    Snapshot,
    SourceInfo,
    SourceRow,
    SourceState,
    compare,
    histogram_quantile,
    snapshot_from_page,
)
from .read import SpoolReader, fetch_snapshot
from .run import Top, TopOptions, top
from .view import render, run_curses

__all__ = [
    "Buckets",
    "CounterRow",
    "Frame",
    "GaugeRow",
    "HistogramRow",
    "History",
    "SeriesKey",
    "Snapshot",
    "SourceInfo",
    "SourceRow",
    "SourceState",
    "SpoolReader",
    "Top",
    "TopOptions",
    "compare",
    "fetch_snapshot",
    "histogram_quantile",
    "render",
    "run_curses",
    "snapshot_from_page",
    "top",
]
