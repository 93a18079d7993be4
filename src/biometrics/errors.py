"""The exceptions biometrics raises, all rooted at :class:`BiometricsError`.

::

    BiometricsError
    ├── InvalidValueError (also ValueError)     a sensor was given a value it cannot hold
    ├── InvalidLabelError (also ValueError)     a sensor label or label name breaks the rules
    ├── DuplicateSensorError (also ValueError)  two sensors claim one series in a Collector
    ├── SegmentError (also OSError)             a segment file could not be created or written
    │   └── UnsafeFileError                     a link or special file where a daemon writes
    ├── ParseError (also ValueError)            a segment line is malformed; says file:line
    ├── StateError (also OSError)               a daemon's durable state is unusable
    ├── SpoolError (also OSError)               a directory a daemon was given is not usable
    ├── SecretFileError (also OSError)          a remote-write credentials or CA file is unusable
    └── DeadlineError (also TimeoutError)       ``ship --once`` did not finish in time

Errors that also subclass a builtin let callers keep catching what they already catch
(``except ValueError``) while ``except BiometricsError`` catches everything of ours.
The hot-path methods (``click``, ``observe``, ``add``, ``set``) never raise these for any float.
"""

from __future__ import annotations

__all__ = [
    "BiometricsError",
    "DeadlineError",
    "DuplicateSensorError",
    "InvalidLabelError",
    "InvalidValueError",
    "ParseError",
    "SecretFileError",
    "SegmentError",
    "SpoolError",
    "StateError",
    "UnsafeFileError",
]


class BiometricsError(Exception):
    """Root of every error biometrics raises on purpose."""


class InvalidValueError(BiometricsError, ValueError):
    """A sensor was asked to record a value outside its domain (e.g. a negative count)."""


class InvalidLabelError(BiometricsError, ValueError):
    """A sensor label, label name or label value cannot be exported to Prometheus."""


class DuplicateSensorError(BiometricsError, ValueError):
    """Two different sensor objects were registered under the same label and labels."""


class SegmentError(BiometricsError, OSError):
    """A segment file could not be created, locked or written; ``filename`` names it."""


class ParseError(BiometricsError, ValueError):
    """A line of a segment could not be parsed.  ``str()`` is ``path:line: message``."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


class StateError(BiometricsError, OSError):
    """The exporter's state file or journal cannot be read, written or locked."""


class UnsafeFileError(SegmentError):
    """A link or a special file stands where a daemon would write; it is refused, not followed.

    ``filename`` is the path refused; the message says what it is and what to do.
    """


class SpoolError(BiometricsError, OSError):
    """A directory a daemon was given is missing, not a directory, or not usable."""


class SecretFileError(BiometricsError, OSError):
    """A credentials or CA file given for remote write cannot be used; ``filename`` names it."""


class DeadlineError(BiometricsError, TimeoutError):
    """``ship(once=True)`` could not deliver everything before its deadline."""
