import inspect

import biometrics
import biometrics.errors


def test_all_is_sorted_and_complete() -> None:
    """__all__ lists every public name exactly once, sorted, and nothing private."""
    exported = biometrics.__all__
    assert exported == sorted(exported, key=str.casefold) or exported == sorted(exported)
    assert len(set(exported)) == len(exported)
    for name in exported:
        assert hasattr(biometrics, name), name
        assert not name.startswith("_") or name == "__version__"


def test_every_public_item_has_a_docstring() -> None:
    """Public classes and functions document themselves, and so do their public methods."""
    for name in biometrics.__all__:
        obj = getattr(biometrics, name)
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
