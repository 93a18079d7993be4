"""How series from many sources combine: the operator's rules, the writers' declarations.

The rules are decided once, at start (``--gauge``, ``--gauge-mode``, ``--per-source``).  A
gauge's writers may declare how its values combine (``Gauge(merge=...)``, a segment's ``# MERGE``
line), and may change that with a deploy; a ``--gauge`` pattern wins over a declaration (see
docs/ARCHITECTURE.md, "Declared gauge merging").  A family merged ``all`` (or every family, with
``per_source``) keeps each source apart by a ``source`` label; a label of that name the writer
set itself is kept, renamed ``exported_source`` as Prometheus does for a target's clashes.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from .._labels import LabelPairs
from .merge import GAUGE_MODES

__all__ = [
    "SOURCE_LABEL",
    "Declaration",
    "GaugeModes",
    "MergeRules",
    "with_source",
    "without_source",
]

SOURCE_LABEL = "source"


@dataclass(frozen=True, slots=True)
class MergeRules:
    """How series from many sources combine; see docs/ARCHITECTURE.md.

    ``gauges`` are ``(fnmatch pattern, mode)`` pairs tried in order against the metric name;
    a gauge no pattern matches uses the mode its writer declared (``Gauge(merge=...)``, a
    segment's ``# MERGE`` line), else ``gauge_mode``.  ``per_source`` turns merging off: every
    series keeps its source as a ``source`` label.
    """

    gauge_mode: str = "latest"
    gauges: tuple[tuple[str, str], ...] = ()
    per_source: bool = False

    def __post_init__(self) -> None:
        for mode in (self.gauge_mode, *(m for _, m in self.gauges)):
            if mode not in GAUGE_MODES:
                raise ValueError(
                    f"unknown gauge mode {mode!r}; use one of {', '.join(GAUGE_MODES)}"
                )

    def pattern_mode(self, name: str) -> str | None:
        """The mode of the first ``--gauge`` pattern matching ``name``; None if none matches."""
        for pattern, mode in self.gauges:
            if fnmatch.fnmatchcase(name, pattern):
                return mode
        return None

    def gauge_mode_for(self, name: str, declared: str | None = None) -> str:
        """The merge mode of gauge family ``name``: a pattern's, else ``declared``, else default.

        The operator's ``--gauge`` wins over what the writer declared: it is the later, more
        local decision (and the only one Rust writers, or older ones, can be given).
        """
        mode = self.pattern_mode(name)
        if mode is not None:
            return mode
        return self.gauge_mode if declared is None else declared


@dataclass(frozen=True, slots=True)
class Declaration:
    """How a gauge family's writers want it merged, as their ``# MERGE`` line says."""

    mode: str
    live: bool = False
    """Live only: a source's values leave the family when that source ends (``# END``)."""

    def __post_init__(self) -> None:
        if self.mode not in GAUGE_MODES:
            raise ValueError(
                f"unknown gauge mode {self.mode!r}; use one of {', '.join(GAUGE_MODES)}"
            )


class GaugeModes:
    """Each gauge family's merge mode: the rules' pattern, else its declaration, else default."""

    __slots__ = ("_declared", "rules")

    def __init__(self, rules: MergeRules) -> None:
        self.rules = rules
        self._declared: dict[str, Declaration] = {}
        """Gauge family -> how its writers last declared it."""

    def mode(self, name: str) -> str:
        """The mode gauge family ``name`` merges by now."""
        declared = self._declared.get(name)
        return self.rules.gauge_mode_for(name, None if declared is None else declared.mode)

    def declared(self, name: str) -> Declaration | None:
        """The last declaration for ``name``; None if its writers never declared one."""
        return self._declared.get(name)

    def declare(self, name: str, declaration: Declaration) -> None:
        """``declaration`` is the newest for ``name``: it wins from now on."""
        self._declared[name] = declaration

    def live_only(self, name: str) -> bool:
        """Whether ``name``'s values leave it with their source (``Gauge(live_only=True)``)."""
        declared = self._declared.get(name)
        return declared is not None and declared.live


def with_source(labels: LabelPairs, source: str) -> LabelPairs:
    """``labels`` plus ``source``; a ``source`` label the writer set becomes ``exported_source``."""
    pairs = [("exported_source", v) if k == SOURCE_LABEL else (k, v) for k, v in labels]
    pairs.append((SOURCE_LABEL, source))
    return tuple(sorted(pairs))


def without_source(labels: LabelPairs, source: str) -> LabelPairs:
    """The labels a reading had before :func:`with_source` gave it ``source``."""
    pairs = [(k, v) for k, v in labels if not (k == SOURCE_LABEL and v == source)]
    return tuple(sorted((SOURCE_LABEL if k == "exported_source" else k, v) for k, v in pairs))
