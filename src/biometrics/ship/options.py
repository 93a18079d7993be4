"""What ``biometrics ship`` can be told: the spool, the remote, labels, batching and patience."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .._daemon.consumer import Places
from .._daemon.spool import in_spool
from .._labels import check_label_name
from ..errors import InvalidValueError
from .remote_write import RemoteWriteOptions

__all__ = ["ShipOptions"]


@dataclass(frozen=True)
class ShipOptions:
    """Everything ``biometrics ship`` can be told; the defaults are the documented ones."""

    spool: str
    remote: RemoteWriteOptions
    state: str | None = None
    """Progress file; default ``<spool>/.biometrics/ship.json`` (and ``ship.json.lock``)."""
    archive: str | None = None
    """Move shipped segments here instead of deleting them."""
    quarantine: str | None = None
    """For rejected or malformed segments, with ``.error`` sidecars; default SPOOL/quarantine."""
    source_label: str | None = "source"
    """Add the segment's source (its file-name prefix) as this label; None: do not (then two
    processes writing one series interleave in it, and Prometheus keeps one value per ms)."""
    external_labels: Mapping[str, str] = field(default_factory=dict)
    """Added to every series that has no label of that name."""
    max_samples_per_request: int = 2000
    """Samples per request at most (per shard: each request is one shard's)."""
    concurrency: int = 4
    """Shards, each sending its requests in order: requests in flight at most.  A series always
    goes to one shard (a hash of its labels), so its samples arrive in time order; the shards
    run side by side, fewer while the receiver answers 429, 5xx or slowly (see
    :class:`~biometrics.ship.delivery.Gate`).  Changing it between runs is safe: a resumed
    segment is then sent again from its oldest unacknowledged line."""
    max_retries: int = 10
    """Re-sends of one request answered 500 (or another 5xx but 502/503/504) before giving up."""
    min_backoff: float = 0.1
    max_backoff: float = 10.0
    max_retry_after: float = 300.0
    """Longest ``Retry-After`` honoured; a longer one is cut to this."""
    poll_interval: float = 0.1
    max_open_segments: int = 256
    blocked_backoff: float = 300.0
    """Wait between tries while the remote refuses the URL or the credentials (401, 403, 404,
    405, 407, 3xx): they will not change until someone fixes them, so no tight loop."""

    def __post_init__(self) -> None:
        if self.source_label is not None:
            check_label_name(self.source_label)
        for name, value in self.external_labels.items():
            check_label_name(name)
            if not value:
                raise InvalidValueError(f"external label {name!r} has an empty value")
        for name in ("max_samples_per_request", "max_open_segments", "concurrency"):
            if getattr(self, name) < 1:
                raise InvalidValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.blocked_backoff > 0:
            raise InvalidValueError(f"blocked_backoff must be > 0, got {self.blocked_backoff!r}")
        if self.max_retries < 0 or not 0 < self.min_backoff <= self.max_backoff:
            raise InvalidValueError(
                "max_retries must be >= 0 and 0 < min_backoff <= max_backoff, got "
                f"{self.max_retries}, {self.min_backoff}, {self.max_backoff}"
            )

    @property
    def state_path(self) -> str:
        """The progress file, defaulted."""
        return in_spool(self.state, self.spool, ".biometrics", "ship.json")

    @property
    def quarantine_path(self) -> str:
        """The quarantine directory, defaulted."""
        return in_spool(self.quarantine, self.spool, "quarantine")

    @property
    def places(self) -> Places:
        """Where shipped and rejected segments go (a shipper has no outbox)."""
        return Places(self.quarantine_path, self.archive)
