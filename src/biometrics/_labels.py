"""Validation of sensor labels and Prometheus label sets, shared by every sensor."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import InvalidLabelError

LabelPairs = tuple[tuple[str, str], ...]
"""A label set in canonical form: (name, value) pairs sorted by name."""

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
# Printable, no whitespace: a label is one token in the plain-text format and becomes a
# Prometheus name after sanitising, so anything else would be ambiguous downstream.
_SENSOR_LABEL = re.compile(r"[^\s\x00-\x1f\x7f]+\Z")


def check_sensor_label(label: object) -> str:
    """Reject labels that could not survive the trip to a Prometheus name."""
    if not isinstance(label, str) or not _SENSOR_LABEL.match(label):
        raise InvalidLabelError(
            f"sensor label {label!r} is invalid: use a non-empty string without whitespace "
            "or control characters, e.g. 'http.requests'"
        )
    return label


def check_label_name(name: object, *, reserved: frozenset[str] = frozenset()) -> str:
    """Apply Prometheus's label-name rules, naming the offending label in the error."""
    if not isinstance(name, str) or not _LABEL_NAME.match(name):
        raise InvalidLabelError(
            f"label name {name!r} is invalid: it must match [a-zA-Z_][a-zA-Z0-9_]*"
        )
    if name.startswith("__"):
        raise InvalidLabelError(
            f"label name {name!r} is invalid: names starting with '__' are reserved by Prometheus"
        )
    if name in reserved:
        raise InvalidLabelError(
            f"label name {name!r} is reserved for this sensor type; choose another name"
        )
    return name


def canonical_labels(
    labels: Mapping[str, object] | None, *, reserved: frozenset[str] = frozenset()
) -> LabelPairs:
    """Validate a label mapping and return it sorted by name, values as strings."""
    if not labels:
        return ()
    if not isinstance(labels, Mapping):
        raise InvalidLabelError(
            f"labels must be a mapping of label name to value, not {type(labels).__name__}"
        )
    pairs = []
    for name, value in labels.items():
        check_label_name(name, reserved=reserved)
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise InvalidLabelError(
                f"label {name!r} has value {value!r} of type {type(value).__name__}; "
                "label values must be str (or int, which is converted)"
            )
        pairs.append((name, str(value)))
    pairs.sort()
    return tuple(pairs)
