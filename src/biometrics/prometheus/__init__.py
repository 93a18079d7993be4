"""The segment format, both ways, in the standard library only.

Writing: :class:`SegmentEmitter` (files), :class:`SlashMetrics` (an in-memory page), both
rendered by :mod:`.exposition`.  Reading: :class:`Reader` and :class:`Watcher` (locks and
claims), :func:`parse` (lines), :func:`readings` (whole readings), :func:`source_of` (file
names) and :class:`SeriesNames` (series names).  Running an emitter inside a process is
:mod:`biometrics.runtime`'s.
"""

from ..errors import ParseError, SegmentError
from .exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, prometheus_name
from .kinds import SeriesNames
from .parser import Metadata, Parse, Sample, parse
from .reader import Reader
from .segment_emitter import Options, SegmentEmitter, child_prefix
from .segments import HistogramValue, Reading, readings, source_of
from .slash import SlashMetrics
from .watcher import Watcher

__all__ = [
    "OPENMETRICS_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "HistogramValue",
    "Metadata",
    "Options",
    "Parse",
    "ParseError",
    "Reader",
    "Reading",
    "Sample",
    "SegmentEmitter",
    "SegmentError",
    "SeriesNames",
    "SlashMetrics",
    "Watcher",
    "child_prefix",
    "parse",
    "prometheus_name",
    "readings",
    "source_of",
]
