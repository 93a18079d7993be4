"""Getting metrics out of a running process: a background emission, a bridge, a supervisor.

:func:`emit_every` writes a collector to segment files from a daemon thread (fork-safe, never
raising into the host); :class:`PrometheusClientBridge` adds a ``prometheus_client`` registry to
each emission; :func:`supervise` runs a command and emits its resource usage.  Built on
:mod:`biometrics.prometheus`, which knows the files but not the process around them.
"""

from .background import Bridge, Emission, emit_every, running_emissions
from .bridge import PrometheusClientBridge
from .spool import PRIVATE_SPOOL_MODE, SHARED_SPOOL_MODE, ensure_spool, spool_mode_for
from .supervise import JobResult, JobRun, supervise

__all__ = [
    "PRIVATE_SPOOL_MODE",
    "SHARED_SPOOL_MODE",
    "Bridge",
    "Emission",
    "JobResult",
    "JobRun",
    "PrometheusClientBridge",
    "emit_every",
    "ensure_spool",
    "running_emissions",
    "spool_mode_for",
    "supervise",
]
