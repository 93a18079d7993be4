"""Readings as a segment gives them to the store, and the page's sample lines, for store tests."""

from biometrics.exporter import Store
from biometrics.prometheus import HistogramValue, Reading


def counter(name: str, value: float, ts: int, **labels: str) -> Reading:
    return Reading("counter", name, tuple(sorted(labels.items())), float(value), ts)


def gauge(name: str, value: float, ts: int, **labels: str) -> Reading:
    return Reading("gauge", name, tuple(sorted(labels.items())), float(value), ts)


def histogram(
    name: str, les: tuple[float, ...], cumulative: tuple[float, ...], sum_n: tuple[float, float],
    ts: int, **labels: str,
) -> Reading:  # fmt: skip
    """A histogram reading as segments give it: the writer's le set, cumulative counts."""
    value = HistogramValue(les, cumulative, *sum_n)
    return Reading("histogram", name, tuple(sorted(labels.items())), value, ts)


def lines(store: Store, **kw: bool) -> list[str]:
    return [line for line in store.render(**kw).splitlines() if not line.startswith("#")]
