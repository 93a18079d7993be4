"""Prometheus segment files: the file Emitter, SlashMetrics, Reader, Watcher and parser."""

from ..errors import ParseError, SegmentError
from ._text import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, prometheus_name
from .emitter import Emitter, Options
from .parser import Metadata, Parse, Sample, parse
from .reader import Reader
from .slash import SlashMetrics
from .watcher import Watcher

__all__ = [
    "OPENMETRICS_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "Emitter",
    "Metadata",
    "Options",
    "Parse",
    "ParseError",
    "Reader",
    "Sample",
    "SegmentError",
    "SlashMetrics",
    "Watcher",
    "parse",
    "prometheus_name",
]
