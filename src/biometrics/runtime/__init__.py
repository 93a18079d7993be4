"""Getting metrics out of a running process: a background emission, a bridge, a supervisor.

:func:`emit_every` writes a collector to segment files from a daemon thread (fork-safe, never
raising into the host); :class:`PrometheusClientBridge` adds a ``prometheus_client`` registry to
each emission; :func:`supervise` runs a command and emits its resource usage.  Built on
:mod:`biometrics.prometheus`, which knows the files but not the process around them.
"""

from .background import Bridge, Emission, emit_every
from .bridge import PrometheusClientBridge
from .supervise import supervise

__all__ = ["Bridge", "Emission", "PrometheusClientBridge", "emit_every", "supervise"]
