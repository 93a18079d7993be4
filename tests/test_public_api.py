import inspect
from types import ModuleType

import pytest

import biometrics
import biometrics.errors
import biometrics.exporter
import biometrics.prometheus

PACKAGES = [biometrics, biometrics.prometheus, biometrics.exporter]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_all_is_sorted_and_complete(package: ModuleType) -> None:
    """__all__ lists every public name exactly once, sorted, and nothing private."""
    exported = package.__all__

    def isort_style(name: str) -> tuple[int, str]:  # ruff RUF022: CONSTANTS, Classes, functions
        return (0 if name.isupper() else 1 if name[:1].isupper() else 2), name

    assert exported in (sorted(exported), sorted(exported, key=str.casefold),
                        sorted(exported, key=isort_style))  # fmt: skip
    assert len(set(exported)) == len(exported)
    for name in exported:
        assert hasattr(package, name), name
        assert not name.startswith("_") or name == "__version__"


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
