"""What ``biometrics serve`` is told: the spool, where state and done segments go, the bounds.

Flat, as an operator passes them on the command line; each property resolves one default, so
the daemon and the start-up checks (which must name the same paths) agree on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._daemon.consumer import Places
from .._daemon.spool import in_spool
from .rules import MergeRules

__all__ = ["ExporterOptions"]


@dataclass(slots=True)
class ExporterOptions:
    """Everything ``biometrics serve`` can be told; the defaults are the documented ones."""

    spool: str
    state: str | None = None
    """Snapshot path; default ``<spool>/.biometrics/state.json`` (journal and lock beside it)."""
    archive: str | None = None
    """Move consumed segments here instead of deleting them."""
    outbox: str | None = None
    """Move every consumed segment here (for the shipper), malformed ones included."""
    quarantine: str | None = None
    """Where unparseable segments go, with a ``.error`` sidecar; default ``<spool>/quarantine``."""
    rules: MergeRules = field(default_factory=MergeRules)
    forget_after_ms: int | None = None
    max_series: int = 500_000
    """Source-series held at most: sized so the daemon stays within 512 MB of RSS with
    counters (see docs/ARCHITECTURE.md, "Bounds", and benchmarks/store_memory.py)."""
    max_series_per_source: int | None = None
    """Series one source may feed at most, so one runaway process cannot take every other
    source's room; None: a tenth of ``max_series``."""
    honor_timestamps: bool = False
    poll_interval: float = 0.1
    checkpoint_interval: float = 60.0
    checkpoint_bytes: int = 64 << 20
    batch_files: int = 256
    batch_bytes: int = 64 << 20

    @property
    def source_limit(self) -> int:
        """``max_series_per_source``, defaulted."""
        if self.max_series_per_source is not None:
            return self.max_series_per_source
        return max(1, self.max_series // 10)

    @property
    def state_path(self) -> str:
        """The snapshot path, defaulted."""
        return in_spool(self.state, self.spool, ".biometrics", "state.json")

    @property
    def quarantine_path(self) -> str:
        """The quarantine directory, defaulted."""
        return in_spool(self.quarantine, self.spool, "quarantine")

    @property
    def places(self) -> Places:
        """Where consumed and unparseable segments go."""
        return Places(self.quarantine_path, self.archive, self.outbox)
