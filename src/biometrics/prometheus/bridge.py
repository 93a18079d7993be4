"""Emit a ``prometheus_client`` registry through our file Emitter: adoption without a rewrite.

An app (or a framework instrumentator) already instrumented with ``prometheus_client`` keeps
its metrics objects; the bridge reads the registry at each emission and writes its families
into our segments, so many processes merge in ``biometrics serve`` without
``PROMETHEUS_MULTIPROC_DIR``.  How each type is written (so that it merges):

==================  ===================================================================
prometheus_client   in the segment
==================  ===================================================================
Counter             ``<name>_total`` counter (``_created`` dropped: a time, not a count)
Gauge               gauge
Histogram           histogram (``_bucket``/``_sum``/``_count``; ``_created`` dropped)
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
from ._text import Family, FamilyEmitter, Sample, format_value, render_labels

__all__ = ["RUNTIME_PREFIXES", "PrometheusClientBridge"]

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


def _sample(name: str, labels: dict[str, str], value: float, extra: str = "") -> Sample:
    return name, render_labels(tuple(sorted(labels.items())), extra), format_value(float(value))


def _histogram(name: str, samples: Iterable[Any], help: str | None, *, summary: bool) -> Family:
    """A histogram's lines as they are; a summary's ``_count`` also as the ``+Inf`` bucket."""
    out = Family(name, "histogram", help)
    for s in samples:
        if summary and s.name == f"{name}_count":
            out.samples.append(_sample(f"{name}_bucket", s.labels, s.value, 'le="+Inf"'))
        if s.name in (f"{name}_bucket", f"{name}_sum", f"{name}_count"):
            out.samples.append(_sample(s.name, s.labels, s.value))
    return out


def families_of(metric: Any) -> list[Family]:
    """Our families for one ``prometheus_client`` metric family (see the module's table)."""
    name, kind, help = metric.name, metric.type, metric.documentation or None
    samples = metric.samples
    if kind == "counter":
        total = f"{name}_total"
        rows = [_sample(total, s.labels, s.value) for s in samples if s.name == total]
        return [Family(total, "counter", help, rows)]
    if kind in ("histogram", "summary"):
        return [_histogram(name, samples, help, summary=kind == "summary")]
    if kind == "info":
        info = f"{name}_info"
        return [Family(info, "gauge", help, [_sample(info, s.labels, s.value) for s in samples])]
    by_name: dict[str, Family] = {}
    for s in samples:
        if s.name.endswith("_created"):
            continue
        family = by_name.setdefault(s.name, Family(s.name, "gauge", help))
        family.samples.append(_sample(s.name, s.labels, s.value))
    return list(by_name.values())


class PrometheusClientBridge:
    """Reads a ``prometheus_client`` registry (the default one) and emits it as our families.

    Pass it to :func:`~biometrics.prometheus.emit_every` (``bridges=[...]``), or call
    ``emit(emitter, now_ms)`` yourself.  Names starting with ``skip`` are left out (by default
    prometheus_client's own process and GC collectors, which our runtime sensors replace).
    """

    def __init__(
        self, registry: Any | None = None, *, skip: Iterable[str] = RUNTIME_PREFIXES
    ) -> None:
        self.registry = registry if registry is not None else _default_registry()
        self.skip = tuple(skip)

    def families(self) -> list[Family]:
        """The registry's current readings, as our families."""
        out: list[Family] = []
        for metric in self.registry.collect():
            if self.skip and str(metric.name).startswith(self.skip):
                continue
            out.extend(f for f in families_of(metric) if f.samples)
        return out

    def emit(self, emitter: FamilyEmitter, now_ms: int) -> None:
        """Write every family at ``now_ms`` (the same time as the collector's emission)."""
        families = self.families()
        if families:
            emitter._take(families, now_ms)  # the bridge is part of this package
