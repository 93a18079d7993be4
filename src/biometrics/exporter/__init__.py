"""The exporter daemon: merges many processes' segments and serves them to Prometheus.

Needs the ``exporter`` extra (``pip install 'biometrics[exporter]'``) for its HTTP server.
"""

from ..errors import StateError
from .daemon import Exporter, ExporterOptions
from .durable import DurableState
from .merge import GAUGE_MODES
from .segments import Reading, readings, source_of
from .store import MergeRules, Store

__all__ = [
    "GAUGE_MODES",
    "DurableState",
    "Exporter",
    "ExporterOptions",
    "MergeRules",
    "Reading",
    "StateError",
    "Store",
    "readings",
    "source_of",
]
