"""Prometheus segment files: the file Emitter (and its thread), SlashMetrics, Reader, Watcher."""

from ..errors import ParseError, SegmentError
from ._text import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, prometheus_name
from .background import Bridge, Emission, emit_every
from .emitter import Emitter, Options, child_prefix
from .parser import Metadata, Parse, Sample, parse
from .reader import Reader
from .slash import SlashMetrics
from .watcher import Watcher

__all__ = [
    "OPENMETRICS_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "Bridge",
    "Emission",
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
    "child_prefix",
    "emit_every",
    "parse",
    "prometheus_name",
]
