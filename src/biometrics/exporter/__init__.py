"""The exporter daemon: merges many processes' segments, serves them, ships them by remote write.

Serving needs the ``exporter`` extra (h11); shipping needs the ``ship`` extra (protobuf,
cramjam, httpx), so its names are imported on first use and say what to install if missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import StateError
from .daemon import Exporter, ExporterOptions
from .durable import DurableState
from .merge import GAUGE_MODES
from .segments import Reading, readings, source_of
from .store import MergeRules, Store

if TYPE_CHECKING:
    from .remote_write import Encoder, RemoteWriteClient, RemoteWriteOptions, decode
    from .ship import ShipMetrics, ShipOptions, Shipper

__all__ = [
    "GAUGE_MODES",
    "DurableState",
    "Encoder",
    "Exporter",
    "ExporterOptions",
    "MergeRules",
    "Reading",
    "RemoteWriteClient",
    "RemoteWriteOptions",
    "ShipMetrics",
    "ShipOptions",
    "Shipper",
    "StateError",
    "Store",
    "decode",
    "readings",
    "source_of",
]

_SHIP = {
    "Encoder": ".remote_write",
    "RemoteWriteClient": ".remote_write",
    "RemoteWriteOptions": ".remote_write",
    "decode": ".remote_write",
    "ShipMetrics": ".ship",
    "ShipOptions": ".ship",
    "Shipper": ".ship",
}


def __getattr__(name: str) -> Any:
    module = _SHIP.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(module, __name__), name)
    except ImportError as e:
        raise ImportError(
            f"biometrics.exporter.{name} needs the 'ship' extra ({e.name} is missing): "
            "pip install 'biometrics[ship]'"
        ) from e
