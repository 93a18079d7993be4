"""biometrics: cheap, algebraic, crash-safe metrics for Python programs.

Sensors (:class:`Counter`, :class:`Gauge`, :class:`Moments`, :class:`Histogram`) are read by a
:class:`Collector` and written by an :class:`Emitter`.  Everything here is pure standard
library; the segment format is :mod:`biometrics.prometheus`, running it in a process
:mod:`biometrics.runtime`, and the daemons live in further subpackages.  Every error biometrics
raises on purpose is importable from here.
"""

from ._version import __version__
from .buckets import DEFAULT_BUCKETS, sig_fig_boundaries, sig_fig_boundary
from .collector import Collector, default_collector
from .errors import (
    BiometricsError,
    DeadlineError,
    DuplicateSensorError,
    InvalidLabelError,
    InvalidValueError,
    ParseError,
    SecretFileError,
    SegmentError,
    SpoolError,
    StateError,
    UnsafeFileError,
)
from .family import Family
from .histogram import Histogram, HistogramReading
from .moments import Moments, MomentsReading
from .plaintext import PlainTextEmitter
from .sensors import Counter, Gauge, Sensor
from .system import RuntimeSensors, SystemSensors
from .typing import Emitter

__all__ = [
    "DEFAULT_BUCKETS",
    "BiometricsError",
    "Collector",
    "Counter",
    "DeadlineError",
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
    "ParseError",
    "PlainTextEmitter",
    "RuntimeSensors",
    "SecretFileError",
    "SegmentError",
    "Sensor",
    "SpoolError",
    "StateError",
    "SystemSensors",
    "UnsafeFileError",
    "__version__",
    "default_collector",
    "sig_fig_boundaries",
    "sig_fig_boundary",
]
