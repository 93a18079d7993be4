import pytest

from biometrics import (
    Collector,
    Counter,
    DuplicateSensorError,
    Gauge,
    Histogram,
    InvalidValueError,
    Moments,
    default_collector,
)
from biometrics.testing import RecordingEmitter

SELF_COUNTERS = [
    "biometrics.collector.register.counter",
    "biometrics.collector.register.gauge",
    "biometrics.collector.register.moments",
    "biometrics.collector.register.histogram",
    "biometrics.collector.emit.counter",
    "biometrics.collector.emit.gauge",
    "biometrics.collector.emit.moments",
    "biometrics.collector.emit.histogram",
    "biometrics.collector.emit.failure",
]


def self_counter(emitter: RecordingEmitter, label: str) -> object:
    return next(r[3] for r in emitter.readings if r[1] == label)


def test_emits_every_sensor_type_with_one_timestamp() -> None:
    """Each kind reaches its emitter method, self-counters first, all at now_ms."""
    c = Collector()
    c.register(Counter("a.counter")).count(3)
    c.register(Gauge("a.gauge")).set(1.5)
    c.register(Moments("a.moments")).add(2.0)
    c.register(Histogram("a.histogram")).observe(0.5)
    e = RecordingEmitter()
    c.emit(e, now_ms=42)
    assert e.labels_seen() == [*SELF_COUNTERS, "a.counter", "a.gauge", "a.moments", "a.histogram"]
    assert {r[4] for r in e.readings} == {42}
    kinds = {r[1]: r[0] for r in e.readings}
    assert kinds["a.moments"] == "moments"
    assert kinds["a.histogram"] == "histogram"
    assert self_counter(e, "biometrics.collector.register.counter") == 1 + len(SELF_COUNTERS)
    e2 = RecordingEmitter()
    c.emit(e2, now_ms=43)
    assert self_counter(e2, "biometrics.collector.emit.histogram") == 1
    # 10 counters emitted last time, plus the 5 emitted before it (itself included) this time.
    assert self_counter(e2, "biometrics.collector.emit.counter") == (len(SELF_COUNTERS) + 1) + 5


def test_now_defaults_to_the_wall_clock_in_ms() -> None:
    """Without now_ms the reading time is epoch milliseconds."""
    import time

    e = RecordingEmitter()
    before = time.time_ns() // 1_000_000
    Collector().emit(e)
    after = time.time_ns() // 1_000_000
    assert all(before <= r[4] <= after for r in e.readings)


def test_registering_the_same_object_twice_is_a_no_op() -> None:
    """Idempotent registration: one emission, one registration count."""
    c = Collector()
    counter = Counter("x")
    assert c.register(counter) is counter
    assert c.register(counter) is counter
    e = RecordingEmitter()
    c.emit(e, 1)
    assert e.labels_seen().count("x") == 1
    assert self_counter(e, "biometrics.collector.register.counter") == len(SELF_COUNTERS) + 1


def test_two_sensors_on_one_series_are_an_error() -> None:
    """Same label and labels, different object: a clear error naming the series."""
    c = Collector()
    c.register(Counter("x", labels={"a": "1"}))
    c.register(Counter("x", labels={"a": "2"}))
    with pytest.raises(DuplicateSensorError, match=r"'x'.*'a': '1'"):
        c.register(Counter("x", labels={"a": "1"}))
    with pytest.raises(DuplicateSensorError, match="already a Counter"):
        c.register(Gauge("x", labels={"a": "3"}))
    with pytest.raises(DuplicateSensorError):
        c.register(Counter("biometrics.collector.emit.failure"))


def test_only_sensors_can_be_registered() -> None:
    """Registering something else is a clear error."""
    with pytest.raises(InvalidValueError, match="Counter, Gauge, Moments or Histogram"):
        Collector().register(object())  # type: ignore[type-var]


def test_children_of_one_label_are_emitted_together() -> None:
    """Sensors sharing a label stay contiguous (one Prometheus family) in emission order."""
    c = Collector()
    c.register(Counter("a", labels={"k": "1"}))
    c.register(Counter("b"))
    c.register(Counter("a", labels={"k": "2"}))
    e = RecordingEmitter()
    c.emit(e, 1)
    assert e.labels_seen()[len(SELF_COUNTERS) :] == ["a", "a", "b"]


def test_emit_keeps_going_after_a_failure_then_raises_the_first() -> None:
    """A failing sensor is counted, the others are still emitted, the first error re-raised."""
    c = Collector()
    for label in ("one", "two", "three"):
        c.register(Counter(label))
    e = RecordingEmitter(fail_on={"one", "three"})
    with pytest.raises(OSError, match="'one'") as info:
        c.emit(e, 7)
    assert "2 of 12 sensors failed" in "".join(info.value.__notes__)
    assert "two" in e.labels_seen()
    e2 = RecordingEmitter()
    c.emit(e2, 8)
    assert self_counter(e2, "biometrics.collector.emit.failure") == 2


def test_default_collector_is_one_per_process() -> None:
    """The convenience collector is created once and reused."""
    assert default_collector() is default_collector()
    assert isinstance(default_collector(), Collector)


def test_unregister_takes_a_sensor_out_of_the_next_emission() -> None:
    """Only that object, only once; it is marked removed, and registering it again restores it."""
    c = Collector()
    kept, gone = (
        c.register(Counter("x", labels={"k": "1"})),
        c.register(Counter("x", labels={"k": "2"})),
    )
    assert c.unregister(Counter("x", labels={"k": "1"})) is False  # same series, another object
    assert c.unregister(gone) is True and gone.removed
    assert c.unregister(gone) is False
    e = RecordingEmitter()
    c.emit(e, 1)
    assert [r[2] for r in e.readings if r[1] == "x"] == [{"k": "1"}]
    c.register(gone)
    assert not gone.removed and not kept.removed
