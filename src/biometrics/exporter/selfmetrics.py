"""``biometrics_exporter_*``: the exporter's own health, shown on its page after the merged series.

Each ingest pass brings them up to date from one state of the store (:meth:`.Store.health`):
the store's counts only grow, so each counter adds the difference since the last pass.
"""

from __future__ import annotations

from .._daemon.selfmetrics import SensorSet
from .store import Store

__all__ = ["ExporterMetrics"]


class ExporterMetrics(SensorSet):
    """``biometrics_exporter_*``: the daemon's own health, rendered after the merged series."""

    def __init__(self) -> None:
        super().__init__("biometrics.exporter")
        counter, gauge = self.counter, self.gauge
        self.segments = counter("segments_consumed", "Segments consumed from the spool.")
        self.bytes = counter("ingested_bytes", "Bytes of segments ingested.")
        self.samples = counter("ingested_samples", "Sample lines ingested.")
        self.parse_errors = counter("parse_errors", "Malformed lines skipped.")
        self.quarantined = counter("quarantined_segments", "Segments moved to quarantine.")
        self.dropped = counter(
            "dropped_series", "New series refused by --max-series or --max-series-per-source."
        )
        self.dropped_share = counter(
            "dropped_series_source_limit",
            "New series refused by --max-series-per-source (also in dropped_series_total).",
        )
        self.conflicts = counter(
            "type_conflicts", "Readings dropped: their name has another kind (or layout)."
        )
        self.layout_conflicts = counter(
            "histogram_layout_conflicts", "Histogram readings that do not fit the family layout."
        )
        self.checkpoints = counter("checkpoints", "State snapshots written.")
        self.failures = counter(
            "ingest_failures", "Failed ingest attempts (I/O): segment, journal or pass."
        )
        self.lag = gauge("ingest_lag_seconds", "Age of the oldest finished unconsumed segment.")
        self.series = gauge("series", "Merged series in the store.")
        self.entries = gauge("source_series", "Per-source series held (see --max-series).")
        self.sources = gauge("sources", "Sources in the store.")
        self.scrape = self.histogram("scrape_duration_seconds", "Time to render a page.")

    def sync_store(self, store: Store) -> None:
        """Bring the store's figures up to date (its counters only ever grow: add the rest)."""
        health = store.health()
        # (int(): these are only ever count()ed, so their reads are whole)
        self.dropped.count(health.dropped_series - int(self.dropped.read()))
        self.dropped_share.count(health.dropped_source_limit - int(self.dropped_share.read()))
        self.conflicts.count(health.conflicts - int(self.conflicts.read()))
        self.layout_conflicts.count(health.layout_conflicts - int(self.layout_conflicts.read()))
        self.series.set(health.series)
        self.entries.set(health.entries)
        self.sources.set(health.sources)
