"""One set of ``os.register_at_fork`` hooks for every object that must act around a fork.

``os.register_at_fork`` cannot unregister, so each class registering its own hook per instance
would leak; here objects are held weakly and forgotten when they die (or on ``forget``).
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["forget", "on_fork"]

T = TypeVar("T")
_Hook = Callable[[Any], None]
_hooks: dict[str, weakref.WeakKeyDictionary[Any, _Hook]] = {
    "before": weakref.WeakKeyDictionary(),
    "after_in_parent": weakref.WeakKeyDictionary(),
    "after_in_child": weakref.WeakKeyDictionary(),
}
_installed = False


def on_fork(
    obj: T,
    *,
    before: Callable[[T], None] | None = None,
    after_in_parent: Callable[[T], None] | None = None,
    after_in_child: Callable[[T], None] | None = None,
) -> None:
    """Call ``hook(obj)`` at each moment of every later fork, while ``obj`` lives."""
    global _installed  # noqa: PLW0603 - one process-wide set of hooks, installed on first use
    for moment, hook in (("before", before), ("after_in_parent", after_in_parent),
                         ("after_in_child", after_in_child)):  # fmt: skip
        if hook is not None:
            _hooks[moment][obj] = hook
    if not _installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=lambda: _run("before"),
            after_in_parent=lambda: _run("after_in_parent"),
            after_in_child=lambda: _run("after_in_child"),
        )
        _installed = True


def forget(obj: object) -> None:
    """Stop calling ``obj``'s hooks."""
    for hooks in _hooks.values():
        hooks.pop(obj, None)


def _run(moment: str) -> None:
    for obj, hook in list(_hooks[moment].items()):
        with contextlib.suppress(Exception):  # a metrics hook must never break a fork
            hook(obj)
