"""The Prometheus text bytes: names, label sets, values, HELP, families.  Nothing else writes them.

Public because every writer shares it: the segment emitter, the in-memory ``/metrics`` page,
the exporter's merged page and the offline tools all render through here, so one series has
one text wherever it is written.  Both exposition flavours are rendered from one structure,
:class:`ExpositionFamily`: a metric family's name, type and help, plus its samples as
:data:`RenderedSample` ``(sample name, rendered label set, rendered value)``.  The 0.0.4 and
OpenMetrics 1.0 renderers differ only where the formats do (counter ``_total`` names, HELP
escaping, timestamp units, ``# EOF``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import accumulate

from .._labels import LabelPairs
from ..histogram import Histogram, HistogramReading
from ..moments import Moments, MomentsReading
from ..sensors import Counter, Gauge, Sensor

__all__ = [
    "MOMENTS_PAGE",
    "OPENMETRICS_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "ExpositionFamily",
    "FamilyEmitter",
    "RenderedSample",
    "counter_families",
    "counter_name",
    "escape_help",
    "escape_label_value",
    "format_count",
    "format_le",
    "format_value",
    "gauge_families",
    "histogram_families",
    "histogram_samples",
    "merge_line",
    "metadata_lines",
    "moments_families",
    "moments_page_families",
    "moments_page_samples",
    "moments_values",
    "openmetrics_family_name",
    "openmetrics_timestamp",
    "openmetrics_type",
    "prometheus_name",
    "render_labels",
    "render_page",
    "sample_line",
    "segment_metadata",
]

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

_INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_:]")

RenderedSample = tuple[str, str, str]
"""(sample name, rendered label set such as ``{a="b"}`` or ``""``, rendered value)."""


@functools.lru_cache(maxsize=65536)
def prometheus_name(label: str) -> str:
    """``.`` and every other character invalid in a metric name become ``_``; no leading digit."""
    name = _INVALID_NAME_CHARS.sub("_", label)
    return "_" + name if name[:1].isdigit() else name


@functools.lru_cache(maxsize=65536)
def counter_name(label: str) -> str:
    """A counter's canonical family name: the Prometheus name, ending in ``_total``.

    Prometheus (2.42, which negotiates OpenMetrics) stores a counter whose sample is not
    ``<family>_total`` as type ``unknown``, and prometheus_client names counters so; one name
    in segments, pages, remote write and backfill lets a Rust ``http_requests`` and our
    ``http_requests_total`` be one series.  Takes a sensor label or a metric name.
    """
    name = prometheus_name(label)
    return name if name.endswith("_total") else name + "_total"


def escape_label_value(value: str) -> str:
    r"""Escape ``\\``, ``"`` and line feed, as both formats require."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def escape_help(text: str, *, openmetrics: bool = False) -> str:
    r"""Escape ``\\`` and line feed (and ``"`` for OpenMetrics)."""
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if openmetrics else text


@functools.lru_cache(maxsize=65536)
def render_labels(pairs: LabelPairs, extra: str = "") -> str:
    """``{a="x",b="y"}`` for sorted pairs, ``extra`` (already rendered) appended; "" if none."""
    parts = [f'{k}="{escape_label_value(v)}"' for k, v in pairs]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def format_value(x: float | int) -> str:
    """Integers without a decimal point, finite floats by ``repr``, ``+Inf``, ``-Inf``, ``NaN``."""
    if type(x) is int:
        return str(x)
    if math.isnan(x):
        return "NaN"
    if x in (math.inf, -math.inf):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x))


def format_le(le: float) -> str:
    """One fixed rendering per bucket bound, forever: ``repr`` of the float, or ``+Inf``."""
    return "+Inf" if le == math.inf else repr(le)


@dataclass(slots=True)
class ExpositionFamily:
    """One metric family's metadata and (some of) its samples."""

    name: str
    type: str
    help: str | None
    samples: list[RenderedSample] = field(default_factory=list)
    merge: str = ""
    """A gauge's merge declaration (``"sum"``, ``"sum live"``; "" for none): segments only."""


def _one(sensor: Sensor, kind: str, suffix: str, value: float | int) -> ExpositionFamily:
    name = prometheus_name(sensor.label) + suffix
    return ExpositionFamily(
        name, kind, sensor.help, [(name, render_labels(sensor.label_pairs), format_value(value))]
    )


def counter_families(counter: Counter, value: float | int | None = None) -> list[ExpositionFamily]:
    """A counter is one ``counter`` family, named ``x_total`` (see :func:`counter_name`).

    ``value`` is a reading already taken (the segment emitter reads first, to skip a series
    that did not change without rendering it); by default the counter is read now.
    """
    name = counter_name(counter.label)
    text = format_count(counter.read() if value is None else value)  # 2.0 (after inc) reads "2"
    return [ExpositionFamily(name, "counter", counter.help,
                   [(name, render_labels(counter.label_pairs), text)])]  # fmt: skip


def gauge_families(gauge: Gauge, value: float | None = None) -> list[ExpositionFamily]:
    """A gauge is one ``gauge`` family, carrying its merge declaration for segments."""
    family = _one(gauge, "gauge", "", gauge.read() if value is None else value)
    family.merge = gauge.merge_declaration
    return [family]


def merge_line(family: ExpositionFamily) -> str:
    """``# MERGE <name> <mode>[ live]``, written before a declared gauge's TYPE line, or "".

    Segments only: 0.0.4 readers ignore a comment, but OpenMetrics allows none, so pages
    never carry it.  ``biometrics serve`` merges the family by it (see docs/ARCHITECTURE.md).
    """
    return f"# MERGE {family.name} {family.merge}\n" if family.merge else ""


def segment_metadata(family: ExpositionFamily) -> str:
    """A family's metadata in a segment: a declared gauge's ``# MERGE`` goes right before TYPE.

    The HELP/TYPE lines are a page's (so the segment stays a valid 0.0.4 page for any reader).
    """
    lines = metadata_lines(family)
    if not family.merge:
        return lines
    head, _, type_line = lines[:-1].rpartition("\n")  # HELP (escaped: one line) and TYPE
    return f"{head}\n{merge_line(family)}{type_line}\n" if head else merge_line(family) + lines


def moments_values(r: MomentsReading) -> list[tuple[str, str, float | int]]:
    """``(suffix, type, value)`` for each family a moments reading becomes."""
    return [
        ("_count", "counter", r.n),
        ("_mean", "gauge", r.mean()),
        ("_variance", "gauge", r.variance()),
        ("_skewness", "gauge", r.skewness()),
        ("_kurtosis", "gauge", r.kurtosis()),
        ("_m2", "gauge", r.m2),
        ("_m3", "gauge", r.m3),
        ("_m4", "gauge", r.m4),
    ]


def moments_families(
    moments: Moments, reading: MomentsReading | None = None
) -> list[ExpositionFamily]:
    """The seed's count/mean/variance/skewness/kurtosis, plus the raw sums m2..m4 for merging."""
    r = moments.read() if reading is None else reading
    return [_one(moments, kind, suffix, value) for suffix, kind, value in moments_values(r)]


MOMENTS_PAGE = (("", "summary"), ("_mean", "gauge"), ("_variance", "gauge"),
                ("_skewness", "gauge"), ("_kurtosis", "gauge"))  # fmt: skip
"""The families moments ``m`` show on a page, as ``(suffix, type)``.

A ``summary`` ``m`` (``m_count``, ``m_sum``, no quantiles: they cannot be merged) so that the
usual ``rate(m_sum) / rate(m_count)`` works and Prometheus types the count; then the
statistics as gauges.  The merge state ``_m2``..``_m4`` stays in segments, never on a page."""


def moments_page_samples(name: str, labels: str, r: MomentsReading) -> list[list[RenderedSample]]:
    """One list of samples per :data:`MOMENTS_PAGE` family; ``_sum`` is ``n * mean``."""
    n = r.n
    total = n * r.mean() if n else 0.0
    return [
        [(name + "_count", labels, format_count(n)), (name + "_sum", labels, format_value(total))],
        [(name + "_mean", labels, format_value(r.mean()))],
        [(name + "_variance", labels, format_value(r.variance()))],
        [(name + "_skewness", labels, format_value(r.skewness()))],
        [(name + "_kurtosis", labels, format_value(r.kurtosis()))],
    ]


def moments_page_families(moments: Moments) -> list[ExpositionFamily]:
    """Moments as a page shows them (:data:`MOMENTS_PAGE`); segments keep the merge state."""
    name = prometheus_name(moments.label)
    columns = moments_page_samples(name, render_labels(moments.label_pairs), moments.read())
    return [
        ExpositionFamily(name + suffix, kind, moments.help, samples)
        for (suffix, kind), samples in zip(MOMENTS_PAGE, columns, strict=True)
    ]


@functools.lru_cache(maxsize=1 << 18)
def _bucket_labels(pairs: LabelPairs, le: float) -> str:
    return render_labels(pairs, f'le="{format_le(le)}"')


def histogram_families(
    histogram: Histogram, reading: HistogramReading | None = None
) -> list[ExpositionFamily]:
    """A Prometheus histogram over every bucket of its layout, then the two side counters.

    Empty buckets get their line too: every process then exposes the same ``le`` set, which
    ``sum by (le)`` across processes needs, and no bucket series starts late.  Cumulative counts
    ascend to ``le="+Inf"``, which equals ``_count`` (every observation).
    """
    r = histogram.read() if reading is None else reading
    base = prometheus_name(histogram.label)
    pairs = histogram.label_pairs
    finite = zip(r.bounds, accumulate(r.counts), strict=False)  # +Inf's count is r.count
    samples = histogram_samples(base, pairs, finite, r.count, r.sum)
    labels = render_labels(pairs)
    exceeds, negative = counter_name(base + "_exceeds_max"), counter_name(base + "_is_negative")
    return [
        ExpositionFamily(base, "histogram", histogram.help, samples),
        ExpositionFamily(exceeds, "counter", "Observations above the last finite bucket bound, "
                         "+Inf or NaN (also counted in +Inf).",
                         [(exceeds, labels, str(r.exceeds_max))]),
        ExpositionFamily(negative, "counter", "Observations below zero (also counted in the "
                         "first bucket).", [(negative, labels, str(r.is_negative))]),
    ]  # fmt: skip


def format_count(x: float | int) -> str:
    """A count: integral values without a decimal point (OpenMetrics requires it)."""
    if isinstance(x, int):
        return str(x)
    return str(int(x)) if x.is_integer() and abs(x) < 2**63 else format_value(x)


def histogram_samples(
    base: str,
    pairs: LabelPairs,
    cumulative: Iterable[tuple[float, float | int]],
    count: float | int,
    total: float,
) -> list[RenderedSample]:
    """Cumulative ``_bucket`` lines, the ``+Inf`` bucket (= count), ``_sum`` and ``_count``.

    ``cumulative`` gives every finite bucket of the layout, empty ones included: the caller's
    layout is the ``le`` set, so one histogram's is the same on every page and in every segment.
    """
    bucket = base + "_bucket"
    count_text = str if isinstance(count, int) else format_count  # sensors' counts are ints
    samples: list[RenderedSample] = [
        (bucket, _bucket_labels(pairs, le), count_text(n)) for le, n in cumulative
    ]
    labels = render_labels(pairs)
    samples.append((bucket, render_labels(pairs, 'le="+Inf"'), count_text(count)))
    samples.append((base + "_sum", labels, format_value(total)))
    samples.append((base + "_count", labels, count_text(count)))
    return samples


def render_page(
    families: Iterable[tuple[ExpositionFamily, Iterable[tuple[RenderedSample, int | None]]]],
    *,
    openmetrics: bool = False,
    eof: bool = True,
) -> str:
    """A whole exposition: each family's metadata then its samples (timestamps in ms or None).

    OpenMetrics output names counter samples ``_total``, writes seconds and ends in ``# EOF``
    (unless ``eof=False``, for a page that continues).
    """
    out: list[str] = []
    append = out.append
    stamp = openmetrics_timestamp if openmetrics else str
    for family, samples in families:
        append(metadata_lines(family, openmetrics=openmetrics))
        for (name, labels, value), ts in samples:  # sample_line, inlined: the scrape's loop
            append(f"{name}{labels} {value}\n" if ts is None else
                   f"{name}{labels} {value} {stamp(ts)}\n")  # fmt: skip
    if openmetrics and eof:
        append("# EOF\n")
    return "".join(out)


def metadata_lines(family: ExpositionFamily, *, openmetrics: bool = False) -> str:
    """``# HELP`` (when there is help) and ``# TYPE`` for a family."""
    name = openmetrics_family_name(family) if openmetrics else family.name
    kind = openmetrics_type(family) if openmetrics else family.type
    head = (
        f"# HELP {name} {escape_help(family.help, openmetrics=openmetrics)}\n"
        if family.help
        else ""
    )
    return f"{head}# TYPE {name} {kind}\n"


def openmetrics_family_name(family: ExpositionFamily) -> str:
    """OpenMetrics counters are named without ``_total``; their samples carry it.

    Every counter family we render is named ``x_total`` (:func:`counter_name`), so the 0.0.4
    and OpenMetrics pages put the same series name ``x_total`` in Prometheus.
    """
    if family.type == "counter" and family.name.endswith("_total"):
        return family.name[:-6]
    return family.name


def openmetrics_type(family: ExpositionFamily) -> str:
    """The family's type; ``untyped`` is called ``unknown`` in OpenMetrics."""
    return "unknown" if family.type == "untyped" else family.type


def sample_line(sample: RenderedSample, timestamp: str = "") -> str:
    r"""``name{labels} value[ timestamp]\\n``."""
    name, labels, value = sample
    return f"{name}{labels} {value} {timestamp}\n" if timestamp else f"{name}{labels} {value}\n"


def openmetrics_timestamp(now_ms: int) -> str:
    """OpenMetrics timestamps are seconds: exact decimal of the milliseconds."""
    seconds, millis = divmod(now_ms, 1000)
    return f"{seconds}.{millis:03d}" if millis else str(seconds)


class FamilyEmitter:
    """The four ``emit_*`` methods of every Prometheus emitter: render, then hand families on.

    Subclasses implement :meth:`emit_families`; the rendering is the same for all.  It is public
    because families do not only come from sensors: a bridged ``prometheus_client`` registry
    hands over families it rendered itself, stamped with the collector's ``now_ms``.
    """

    def emit_families(
        self, families: list[ExpositionFamily], now_ms: int
    ) -> None:  # pragma: no cover
        """Write already-rendered families, stamped ``now_ms``."""
        raise NotImplementedError

    def _emit_sensor_families(
        self, sensor: Sensor, families: list[ExpositionFamily], now_ms: int
    ) -> None:
        """Write ``sensor``'s families; an emitter that keeps readings may note whose they are."""
        self.emit_families(families, now_ms)

    def emit_counter(self, counter: Counter, now_ms: int) -> None:
        """Take a counter reading."""
        self._emit_sensor_families(counter, counter_families(counter), now_ms)

    def emit_gauge(self, gauge: Gauge, now_ms: int) -> None:
        """Take a gauge reading."""
        self._emit_sensor_families(gauge, gauge_families(gauge), now_ms)

    def emit_moments(self, moments: Moments, now_ms: int) -> None:
        """Take a moments reading (segment form: with the merge state ``_m2``..``_m4``)."""
        self._emit_sensor_families(moments, moments_families(moments), now_ms)

    def emit_histogram(self, histogram: Histogram, now_ms: int) -> None:
        """Take a histogram reading."""
        self._emit_sensor_families(histogram, histogram_families(histogram), now_ms)
