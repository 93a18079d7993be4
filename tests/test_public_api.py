"""The public faces: what each public package exports, documents, and which errors it shows.

The packages are found by walking ``biometrics``, so a package added later is checked too.
"""

from __future__ import annotations
import __future__

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from types import ModuleType

import pytest

import biometrics
import biometrics.errors

TYPING_IDIOMS = {"TYPE_CHECKING"}
"""Public-looking names a package may bind only to type its own code."""


def modules() -> Iterator[ModuleType]:
    """``biometrics`` and every module below it, imported (``__main__`` left out: it runs)."""
    yield biometrics
    for info in pkgutil.walk_packages(biometrics.__path__, "biometrics."):
        if not info.name.endswith(".__main__"):
            yield importlib.import_module(info.name)


def is_public(module: ModuleType) -> bool:
    """No component of the dotted name starts with ``_``."""
    return not any(part.startswith("_") for part in module.__name__.split("."))


PACKAGES = [m for m in modules() if hasattr(m, "__path__") and is_public(m)]


def isort_style(name: str) -> tuple[int, str]:
    """ruff's RUF022 order for ``__all__``: CONSTANTS, then Classes, then everything else."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2), name


def imported_from_elsewhere(value: object) -> bool:
    """A class or function defined outside ``biometrics`` (``typing.Any``, ``dataclass``...)."""
    origin = getattr(value, "__module__", None)
    defined = inspect.isclass(value) or inspect.isroutine(value)
    return defined and isinstance(origin, str) and origin.split(".")[0] != "biometrics"


def public_names(package: ModuleType) -> set[str]:
    """What the package binds and means to offer: every name not starting with ``_``, except
    submodules (and other modules), ``from __future__`` features, names from outside
    ``biometrics`` (``typing.Any``...) and :data:`TYPING_IDIOMS`; plus ``__version__``.
    Names in ``__all__`` that only a module ``__getattr__`` provides count as bound."""
    names = set()
    for name, value in vars(package).items():
        if name.startswith("_") or name in TYPING_IDIOMS:
            continue
        if inspect.ismodule(value) or isinstance(value, __future__._Feature):
            continue
        if imported_from_elsewhere(value):
            continue
        names.add(name)
    lazy = {n for n in package.__all__ if n not in vars(package) and hasattr(package, n)}
    return names | lazy | ({"__version__"} & set(vars(package)))


def test_the_public_packages_are_the_expected_ones() -> None:
    """The walk finds the packages users import, so the tests below cannot pass vacuously."""
    found = {p.__name__ for p in PACKAGES}
    expected = {"biometrics", "biometrics.prometheus", "biometrics.runtime"}
    expected |= {"biometrics.exporter", "biometrics.ship", "biometrics.cli"}
    assert expected <= found, sorted(found)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_all_is_exactly_the_sorted_public_names(package: ModuleType) -> None:
    """``__all__`` equals the package's public names in ruff's order: a name defined or
    imported without being exported fails, and so does an export that does not resolve or a
    duplicate."""
    assert package.__all__ == sorted(public_names(package), key=isort_style)
    for name in package.__all__:
        assert hasattr(package, name), name


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_public_item_has_a_docstring(package: ModuleType) -> None:
    """Public classes and functions document themselves, and so do their public methods."""
    for name in package.__all__:
        obj = getattr(package, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and inspect.isfunction(member):
                    assert inspect.getdoc(member), f"{name}.{attr}"


def test_errors_share_one_root() -> None:
    """Every exception we define derives from BiometricsError."""
    for name in biometrics.errors.__all__:
        assert issubclass(getattr(biometrics.errors, name), biometrics.BiometricsError)


def test_every_error_lives_in_errors_and_is_exported_from_biometrics() -> None:
    """Every BiometricsError subclass, wherever the walk finds it, is defined in
    ``biometrics.errors`` and exported by it and by ``biometrics``; so is every exception a
    public package exports: one place to import any error from."""
    ours = {
        obj
        for module in modules()
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, biometrics.BiometricsError)
    }
    exported = {
        obj
        for package in PACKAGES
        for obj in (getattr(package, name) for name in package.__all__)
        if inspect.isclass(obj) and issubclass(obj, BaseException)
    }
    assert biometrics.BiometricsError in ours and biometrics.SegmentError in ours
    for error in ours | exported:
        assert error.__module__ == "biometrics.errors", error
        assert getattr(biometrics.errors, error.__name__) is error
        assert error.__name__ in biometrics.errors.__all__, error
        assert getattr(biometrics, error.__name__) is error
        assert error.__name__ in biometrics.__all__, error
