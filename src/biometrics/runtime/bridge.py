"""Emit a ``prometheus_client`` registry through our segment emitter: adoption without a rewrite.

An app (or a framework instrumentator) already instrumented with ``prometheus_client`` keeps
its metrics objects; the bridge reads the registry at each emission and writes its families
into our segments, so many processes merge in ``biometrics serve`` without
``PROMETHEUS_MULTIPROC_DIR``.  How each type is written (so that it merges):

==================  ===================================================================
prometheus_client   in the segment
==================  ===================================================================
Counter             ``<name>_total`` counter (``_created`` dropped: a time, not a count)
Gauge               gauge, with ``multiprocess_mode`` as its merge declaration
                    (:data:`MULTIPROCESS_MODES`)
Histogram           histogram, every declared bucket (``_bucket``/``_sum``/``_count``;
                    ``_created`` dropped)
Summary             histogram with the single bucket ``le="+Inf"``, same ``_sum``/``_count``:
                    it then merges and survives restarts; quantiles cannot be merged and
                    are dropped
Info                ``<name>_info`` gauge of 1
Enum (stateset)     gauge per state, 1 for the current one
unknown, other      gauge per sample name
==================  ===================================================================

``prometheus_client`` is imported lazily: it is the optional extra ``biometrics[bridge]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import BiometricsError
from ..prometheus.exposition import (
    ExpositionFamily,
    FamilyEmitter,
    RenderedSample,
    format_le,
    format_value,
    render_labels,
)

__all__ = ["MULTIPROCESS_MODES", "RUNTIME_PREFIXES", "PrometheusClientBridge"]

MULTIPROCESS_MODES = {
    "livesum": "sum live",
    "livemax": "max live",
    "livemin": "min live",
    "liveall": "all live",
    "livemostrecent": "latest live",
    "sum": "sum",
    "max": "max",
    "min": "min",
    "mostrecent": "latest",
}
"""A prometheus_client Gauge's ``multiprocess_mode`` as our merge declaration (``# MERGE``).

``all`` is its default, so it cannot be told from no choice at all: it declares nothing, and
serve's ``--gauge-mode`` (or a ``--gauge`` pattern, ``=all`` for one series per process)
applies."""

RUNTIME_PREFIXES = ("process_", "python_gc_", "python_info")
"""prometheus_client's default process/platform/GC collectors; our runtime sensors replace
them (same names), so the bridge skips them unless told otherwise."""


def _default_registry() -> Any:
    try:
        import prometheus_client  # noqa: PLC0415 - the optional extra, only when bridged
    except ImportError as e:
        raise BiometricsError(
            "the prometheus_client bridge needs prometheus_client: pip install 'biometrics[bridge]'"
        ) from e
    return prometheus_client.REGISTRY


def _sample(name: str, labels: dict[str, str], value: float, extra: str = "") -> RenderedSample:
    return name, render_labels(tuple(sorted(labels.items())), extra), format_value(float(value))


def _histogram(
    name: str, samples: Iterable[Any], help: str | None, *, summary: bool
) -> ExpositionFamily:
    """Every declared bucket, ``_sum``, ``_count``; a summary's ``_count`` also as ``+Inf``.

    prometheus_client lists every bucket of its layout, empty ones included, which is our rule
    too, so the layout survives as declared.  Its ``le`` text is re-rendered by
    :func:`format_le`, so the same bound has one text whoever wrote it (prometheus_client
    writes ``1e+06`` where we write ``1000000.0``).
    """
    out = ExpositionFamily(name, "histogram", help)
    bucket = f"{name}_bucket"
    for s in samples:
        if summary and s.name == f"{name}_count":
            out.samples.append(_sample(bucket, s.labels, s.value, 'le="+Inf"'))
        if s.name == bucket and "le" in s.labels:
            labels = {k: v for k, v in s.labels.items() if k != "le"}
            le = f'le="{format_le(float(s.labels["le"]))}"'
            out.samples.append(_sample(bucket, labels, s.value, le))
        elif s.name in (bucket, f"{name}_sum", f"{name}_count"):
            out.samples.append(_sample(s.name, s.labels, s.value))
    return out


def declared_merges(registry: Any) -> dict[str, str]:
    """Gauge name -> merge declaration, from the registry's Gauge objects' ``multiprocess_mode``.

    ``collect()`` does not carry the mode, so this reads the registry's collector table, a
    private attribute stable across prometheus_client releases; read defensively: without it
    nothing is declared and serve's rules apply, as before.
    """
    try:
        collectors = list(getattr(registry, "_collector_to_names", {}).items())
    except Exception:  # changed under us by a registering thread, or not a dict: skip once
        return {}
    out: dict[str, str] = {}
    for collector, names in collectors:
        declared = MULTIPROCESS_MODES.get(str(getattr(collector, "_multiprocess_mode", "")))
        if declared is not None and getattr(collector, "_type", None) == "gauge":
            out.update(dict.fromkeys(names, declared))
    return out


def families_of(metric: Any) -> list[ExpositionFamily]:
    """Our families for one ``prometheus_client`` metric family (see the module's table)."""
    name, kind, help = metric.name, metric.type, metric.documentation or None
    samples = metric.samples
    if kind == "counter":
        total = f"{name}_total"
        rows = [_sample(total, s.labels, s.value) for s in samples if s.name == total]
        return [ExpositionFamily(total, "counter", help, rows)]
    if kind in ("histogram", "summary"):
        return [_histogram(name, samples, help, summary=kind == "summary")]
    if kind == "info":
        info = f"{name}_info"
        return [
            ExpositionFamily(
                info, "gauge", help, [_sample(info, s.labels, s.value) for s in samples]
            )
        ]
    by_name: dict[str, ExpositionFamily] = {}
    for s in samples:
        if s.name.endswith("_created"):
            continue
        family = by_name.setdefault(s.name, ExpositionFamily(s.name, "gauge", help))
        family.samples.append(_sample(s.name, s.labels, s.value))
    return list(by_name.values())


class PrometheusClientBridge:
    """Reads a ``prometheus_client`` registry (the default one) and emits it as our families.

    Pass it to :func:`~biometrics.runtime.emit_every` (``bridges=[...]``), or call
    ``emit(emitter, now_ms)`` yourself.  Names starting with ``skip`` are left out (by default
    prometheus_client's own process and GC collectors, which our runtime sensors replace).
    """

    def __init__(
        self, registry: Any | None = None, *, skip: Iterable[str] = RUNTIME_PREFIXES
    ) -> None:
        self.registry = registry if registry is not None else _default_registry()
        self.skip = tuple(skip)

    def families(self) -> list[ExpositionFamily]:
        """The registry's current readings, as our families."""
        out: list[ExpositionFamily] = []
        merges = declared_merges(self.registry)
        for metric in self.registry.collect():
            if self.skip and str(metric.name).startswith(self.skip):
                continue
            merge = merges.get(metric.name, "") if metric.type == "gauge" else ""
            for family in families_of(metric):
                if family.samples:
                    family.merge = merge
                    out.append(family)
        return out

    def emit(self, emitter: FamilyEmitter, now_ms: int) -> None:
        """Write every family at ``now_ms`` (the same time as the collector's emission)."""
        families = self.families()
        if families:
            emitter.emit_families(families, now_ms)
