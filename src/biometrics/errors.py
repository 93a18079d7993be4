"""The exceptions biometrics raises, all rooted at :class:`BiometricsError`.

::

    BiometricsError
    ├── InvalidValueError (also ValueError)     a sensor was given a value it cannot hold
    ├── InvalidLabelError (also ValueError)     a sensor label or label name breaks the rules
    └── DuplicateSensorError (also ValueError)  two sensors claim one series in a Collector

Errors that also subclass a builtin let callers keep catching what they already catch
(``except ValueError``) while ``except BiometricsError`` catches everything of ours.
The hot-path methods (``click``, ``observe``, ``add``, ``set``) never raise these for any float.
"""

from __future__ import annotations

__all__ = [
    "BiometricsError",
    "DuplicateSensorError",
    "InvalidLabelError",
    "InvalidValueError",
]


class BiometricsError(Exception):
    """Root of every error biometrics raises on purpose."""


class InvalidValueError(BiometricsError, ValueError):
    """A sensor was asked to record a value outside its domain (e.g. a negative count)."""


class InvalidLabelError(BiometricsError, ValueError):
    """A sensor label, label name or label value cannot be exported to Prometheus."""


class DuplicateSensorError(BiometricsError, ValueError):
    """Two different sensor objects were registered under the same label and labels."""
