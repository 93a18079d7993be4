"""Family: one child sensor per label-value set, created and registered on first use."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from ._labels import check_label_name, check_sensor_label
from .collector import Collector, default_collector
from .errors import InvalidLabelError
from .sensors import Sensor

__all__ = ["Family"]

S = TypeVar("S", bound=Sensor)


class Family(Generic[S]):
    """Like ``prometheus_client``'s ``.labels(...)``: children are cached, so the lookup is cheap.

    ``Family(Counter, "http.requests", ["method", "code"]).labels("GET", "200").click()``.
    Extra keyword arguments (``sig_figs=3``...) are passed to every child.  Children register
    with ``collector`` (the default collector when None) the first time they are asked for.
    """

    def __init__(
        self,
        sensor_type: Callable[..., S],
        label: str,
        label_names: Sequence[str],
        *,
        help: str | None = None,
        collector: Collector | None = None,
        **sensor_options: Any,
    ) -> None:
        self._type = sensor_type
        self._label = check_sensor_label(label)
        if isinstance(label_names, str):
            raise InvalidLabelError(
                f"label_names for {label!r} must be a sequence of names, not the string "
                f"{label_names!r}; write [{label_names!r}]"
            )
        self._names = tuple(check_label_name(n) for n in label_names)
        if len(set(self._names)) != len(self._names):
            raise InvalidLabelError(f"label_names for {label!r} repeat a name: {self._names}")
        self._help = help
        self._collector = collector
        self._options = sensor_options
        self._children: dict[tuple[str, ...], S] = {}
        self._lock = threading.Lock()

    @property
    def label_names(self) -> tuple[str, ...]:
        """The label names every child carries, in declaration order."""
        return self._names

    def _key(self, values: tuple[object, ...], by_name: Mapping[str, object]) -> tuple[str, ...]:
        if by_name:
            if values or set(by_name) != set(self._names):
                raise InvalidLabelError(
                    f"{self._label!r} needs exactly the labels {list(self._names)}, "
                    f"got {list(values) + sorted(by_name)}"
                )
            values = tuple(by_name[n] for n in self._names)
        return tuple(str(v) for v in values)

    def _check(self, key: tuple[str, ...]) -> None:
        if len(key) != len(self._names):
            raise InvalidLabelError(
                f"{self._label!r} needs {len(self._names)} label values {list(self._names)}, "
                f"got {len(key)}: {list(key)}"
            )

    def labels(self, *values: object, **by_name: object) -> S:
        """The child for these label values, positional (in ``label_names`` order) or by name."""
        # The positional hot path stays inline: no call before the cache lookup.
        key = self._key(values, by_name) if by_name else tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is not None:
            return child
        self._check(key)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                labels: Mapping[str, object] = dict(zip(self._names, key, strict=True))
                child = self._type(self._label, help=self._help, labels=labels, **self._options)
                (self._collector or default_collector()).register(child)
                self._children[key] = child
        return child

    def children(self) -> list[S]:
        """Every child created so far (and not removed)."""
        with self._lock:
            return list(self._children.values())

    def remove(self, *values: object, **by_name: object) -> bool:
        """Drop the child for these label values (as :meth:`labels` takes them); False if none.

        The child leaves the family and its collector: it is not in the next emission, nor on
        a ``SlashMetrics`` page, and asking for the same values again makes a new child that
        counts from zero (as in prometheus_client).  What was already written stays: ``serve``
        shows the series' last value until its source is forgotten (``--forget-after``).
        """
        key = self._key(values, by_name)
        self._check(key)
        with self._lock:  # unregistered under it, or labels() could register a new child first
            child = self._children.pop(key, None)
            if child is None:
                return False
            (self._collector or default_collector()).unregister(child)
        return True

    def clear(self) -> None:
        """Drop every child, as :meth:`remove` does each."""
        collector = self._collector or default_collector()
        with self._lock:
            for child in self._children.values():
                collector.unregister(child)
            self._children.clear()
