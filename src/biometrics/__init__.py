"""biometrics: cheap, algebraic, crash-safe metrics for Python programs.

Sensors (:class:`Counter`, :class:`Gauge`, :class:`Moments`, :class:`Histogram`) are read by a
:class:`Collector` and written by an :class:`Emitter`.  Everything here is pure standard
library; exporters live in subpackages.
"""

from ._version import __version__
from .collector import Collector, default_collector
from .emitter import Emitter, PlainTextEmitter
from .errors import BiometricsError, DuplicateSensorError, InvalidLabelError, InvalidValueError
from .family import Family
from .histogram import (
    DEFAULT_BUCKETS,
    Histogram,
    HistogramReading,
    sig_fig_boundaries,
    sig_fig_boundary,
)
from .moments import Moments, MomentsReading
from .sensors import Counter, Gauge, Sensor
from .system import RuntimeSensors, SystemSensors

__all__ = [
    "DEFAULT_BUCKETS",
    "BiometricsError",
    "Collector",
    "Counter",
    "DuplicateSensorError",
    "Emitter",
    "Family",
    "Gauge",
    "Histogram",
    "HistogramReading",
    "InvalidLabelError",
    "InvalidValueError",
    "Moments",
    "MomentsReading",
    "PlainTextEmitter",
    "RuntimeSensors",
    "Sensor",
    "SystemSensors",
    "__version__",
    "default_collector",
    "sig_fig_boundaries",
    "sig_fig_boundary",
]
