"""The exporter daemon: merges many processes' segments and serves them (``biometrics serve``).

In data-flow order: :class:`Exporter` (``daemon``) claims segments and folds them into the
:class:`Store` (``store``, with ``ingest``, ``families``, ``sources``, ``rules``, ``merge``,
``series``), journaled by :class:`DurableState` (``durable``, ``snapshot``); the store renders
the page (``render``) that :func:`make_app` (``app``) answers and :class:`Server` (``server``,
``limits``) serves; :func:`serve` (``run``) runs it all.  Shipping by remote write is
:mod:`biometrics.ship`; ``serve(ship=...)`` starts a shipper of its own.

Serving HTTP needs the ``exporter`` extra (h11), and :func:`serve` and :class:`Server` are
imported on first use, saying what to install if it is missing: the store alone (what
``biometrics cat`` renders with, and the CLI's option parsing) must import without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .app import make_app, wants_openmetrics
from .daemon import Exporter
from .durable import DurableState
from .limits import HttpLimits
from .merge import GAUGE_MODES
from .options import ExporterOptions
from .rules import MergeRules
from .store import Store

if TYPE_CHECKING:
    from .run import serve
    from .server import Server

__all__ = [
    "GAUGE_MODES",
    "DurableState",
    "Exporter",
    "ExporterOptions",
    "HttpLimits",
    "MergeRules",
    "Server",
    "Store",
    "make_app",
    "serve",
    "wants_openmetrics",
]

_NEEDS_H11 = {"Server": ".server", "serve": ".run"}


def __getattr__(name: str) -> Any:
    module = _NEEDS_H11.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(module, __name__), name)
    except ImportError as e:
        raise ImportError(
            f"biometrics.exporter.{name} needs the 'exporter' extra ({e.name} is missing): "
            "pip install 'biometrics[exporter]'"
        ) from e
