"""``biometrics_ship_*``: the shipper's own health, for ``serve`` pages and segment files."""

from __future__ import annotations

from .._daemon.selfmetrics import SensorSet

__all__ = ["ShipMetrics"]


class ShipMetrics(SensorSet):
    """``biometrics_ship_*``: what the shipper did, for ``serve`` pages and segment files."""

    def __init__(self) -> None:
        super().__init__("biometrics.ship")
        counter, gauge = self.counter, self.gauge
        self.sent = counter("samples_sent", "Samples acknowledged by the remote.")
        self.failed = counter("samples_failed", "Samples rejected for good (quarantined).")
        self.retried = counter("samples_retried", "Samples in requests sent again.")
        self.invalid = counter("samples_invalid", "Sample lines refused before sending.")
        self.duplicates = counter("samples_duplicate", "Samples dropped: same series and ms.")
        self.requests = counter("requests", "Requests sent, retries included.")
        self.retries = counter("retries", "Requests sent again after a failure.")
        self.bytes = counter("sent_bytes", "Compressed bytes of acknowledged requests.")
        self.segments = counter("segments_shipped", "Segments fully acknowledged.")
        self.quarantined = counter("segments_quarantined", "Segments moved to quarantine.")
        self.failures = counter("segment_failures", "Segments that could not be read or moved.")
        self.last_success = gauge("last_success_timestamp_seconds", "Last acknowledgement.")
        self.backlog = gauge("backlog_segments", "Segments waiting in the spool.")
        self.backlog_bytes = gauge("backlog_bytes", "Bytes of segments waiting in the spool.")
        self.blocked = gauge("blocked", "1 while the remote refuses the URL or the credentials.")
        self.blocked_status = gauge(
            "blocked_status", "The HTTP status that blocks shipping (401, 403, 404...); 0 if none."
        )
        self.concurrency = gauge(
            "concurrency", "Requests the shipper may have in flight now (halved under pressure)."
        )
        self.request_seconds = self.histogram("request_duration_seconds", "Time per request.")
