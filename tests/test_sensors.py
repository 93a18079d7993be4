import asyncio
import itertools
import math
import threading
import time
from collections.abc import Callable

import pytest

import biometrics.sensors as sensors_module
from biometrics import (
    BiometricsError,
    Collector,
    Counter,
    Gauge,
    Histogram,
    InvalidLabelError,
    InvalidValueError,
    Moments,
)
from biometrics.testing import RecordingEmitter

THREADS = 8
PER_THREAD = 20_000


def hammer(fn: Callable[[], object]) -> None:
    start = threading.Barrier(THREADS)

    def work() -> None:
        start.wait(timeout=10)
        for _ in range(PER_THREAD):
            fn()

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()


def test_counter_counts_clicks_and_counts() -> None:
    """click adds one, count adds n, read sees both."""
    c = Counter("requests")
    assert c.read() == 0
    c.click()
    c.click()
    c.count(40)
    c.count(0)
    assert c.read() == 42
    assert c.label == "requests"


@pytest.mark.parametrize("bad", [-1, 1.0, 2.5, "3", True, None, float("nan")])
def test_counter_count_rejects_everything_but_non_negative_ints(bad: object) -> None:
    """A bad count raises an error that is both ours and a ValueError, and changes nothing."""
    c = Counter("x")
    c.count(5)
    with pytest.raises(InvalidValueError) as info:
        c.count(bad)  # type: ignore[arg-type]
    assert isinstance(info.value, BiometricsError)
    assert isinstance(info.value, ValueError)
    assert "'x'" in str(info.value)
    assert c.read() == 5


def test_gauge_starts_at_zero_and_moves() -> None:
    """set replaces, inc and dec move relative to the current value."""
    g = Gauge("temperature")
    assert g.read() == 0.0
    assert isinstance(g.read(), float)
    g.set(10)
    g.inc()
    g.inc(2.5)
    g.dec(0.5)
    assert g.read() == 13.0


def test_no_lost_counter_updates_under_threads() -> None:
    """8 threads hammering click() and count() lose nothing."""
    c = Counter("hammered")
    hammer(c.click)
    assert c.read() == THREADS * PER_THREAD
    hammer(lambda: c.count(2))
    assert c.read() == 3 * THREADS * PER_THREAD


def test_no_lost_updates_on_the_free_threaded_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The locked fallback used without a GIL is exact too."""
    monkeypatch.setattr(sensors_module, "gil_enabled", lambda: False)
    c = Counter("no.gil")
    assert c._clicks is None
    hammer(c.click)
    assert c.read() == THREADS * PER_THREAD


def test_no_lost_gauge_increments_under_threads() -> None:
    """Concurrent inc/dec pairs cancel out exactly."""
    g = Gauge("g")

    def inc_then_dec() -> None:
        g.inc(3.0)
        g.dec(1.0)

    hammer(inc_then_dec)
    assert g.read() == 2.0 * THREADS * PER_THREAD


def test_no_lost_histogram_or_moments_observations_under_threads() -> None:
    """Buffered hot paths (deque + fold) keep every observation, across many folds."""
    h = Histogram("h")
    m = Moments("m")

    def observe_both() -> None:
        h.observe(0.25)
        m.add(2.0)

    hammer(observe_both)
    r = h.read()
    assert r.count == THREADS * PER_THREAD
    assert dict(r.buckets)[0.25] == sum(r.counts) == THREADS * PER_THREAD
    assert r.sum == 0.25 * THREADS * PER_THREAD
    assert m.read().n == THREADS * PER_THREAD
    assert m.read().mean() == 2.0


def test_reads_while_writing_never_go_backwards() -> None:
    """A reader racing writers sees monotonic counts (readings are algebraic)."""
    c = Counter("c")
    h = Histogram("h")
    stop = threading.Event()
    seen: list[tuple[float, int]] = []

    def reader() -> None:
        while not stop.is_set() and len(seen) < 100_000:
            seen.append((c.read(), h.read().count))

    t = threading.Thread(target=reader)
    t.start()

    def click_and_observe() -> None:
        c.click()
        h.observe(1.0)

    hammer(click_and_observe)
    stop.set()
    t.join(timeout=30)
    assert seen
    assert all(a <= b for (a, _), (b, _) in itertools.pairwise(seen))
    assert all(a <= b for (_, a), (_, b) in itertools.pairwise(seen))


@pytest.mark.parametrize("label", ["", "has space", "tab\t", "new\nline", 7, None])
def test_bad_sensor_labels_are_rejected(label: object) -> None:
    """Labels must be non-empty tokens; the error quotes the label."""
    with pytest.raises(InvalidLabelError, match="sensor label"):
        Counter(label)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        ({"1abc": "x"}, "'1abc'"),
        ({"a-b": "x"}, "'a-b'"),
        ({"__name__": "x"}, "reserved"),
        ({"ok": 1.5}, "float"),
        ({"ok": None}, "NoneType"),
    ],
)
def test_bad_label_sets_are_rejected(labels: dict[str, object], fragment: str) -> None:
    """Label names follow Prometheus rules; values are strings."""
    with pytest.raises(InvalidLabelError, match=fragment):
        Gauge("g", labels=labels)


def test_labels_are_canonical_and_read_only() -> None:
    """Labels are stored sorted, ints converted, and exposed read-only."""
    g = Gauge("g", labels={"zone": "b", "app": "web", "shard": 3})
    assert g.label_pairs == (("app", "web"), ("shard", "3"), ("zone", "b"))
    assert dict(g.labels) == {"zone": "b", "app": "web", "shard": "3"}
    with pytest.raises(TypeError):
        g.labels["app"] = "x"  # type: ignore[index]


def test_histogram_reserves_le() -> None:
    """'le' would collide with Prometheus bucket labels."""
    with pytest.raises(InvalidLabelError, match="reserved"):
        Histogram("h", labels={"le": "1"})
    Gauge("g", labels={"le": "1"})


# -- prometheus_client habits ---------------------------------------------------------------


def test_counter_inc_takes_ints_and_non_negative_floats() -> None:
    """inc() as in prometheus_client; whole totals read as exact ints, fractions as floats."""
    c = Counter("bytes")
    c.inc()
    c.inc(2)
    assert c.read() == 3 and type(c.read()) is int
    c.inc(2.5)
    assert c.read() == 5.5
    c.inc(0.5)
    assert c.read() == 6 and type(c.read()) is int  # the halves made a whole: an int again
    c.inc(3.0)
    c.click()
    assert c.read() == 10 and type(c.read()) is int
    big = Counter("big")
    big.inc(2**60)
    big.inc(1.0)
    assert big.read() == 2**60 + 1  # whole amounts never pass through a float sum


@pytest.mark.parametrize("bad", [-1, -0.5, math.nan, math.inf, True, "1", None])
def test_counter_inc_refuses_what_a_counter_cannot_take(bad: object) -> None:
    """Negative, NaN, infinite, bool and non-numbers raise and leave the count alone."""
    c = Counter("c")
    c.inc(1.25)
    with pytest.raises(InvalidValueError, match="'c'"):
        c.inc(bad)  # type: ignore[arg-type]
    assert c.read() == 1.25


def test_no_lost_fractional_increments_under_threads() -> None:
    """inc(0.25) from many threads sums exactly (quarters are exact in binary)."""
    c = Counter("c")
    hammer(lambda: c.inc(0.25))
    assert c.read() == THREADS * PER_THREAD // 4
    assert type(c.read()) is int


def test_the_click_hot_path_is_still_one_c_call() -> None:
    """inc() and friends did not change what click() is under the GIL."""
    c = Counter("c")
    assert type(c.click).__name__ == "method-wrapper"
    assert c.click.__self__.__class__ is itertools.count  # type: ignore[attr-defined]


def test_count_exceptions_counts_matching_exceptions_as_a_block() -> None:
    """Only blocks that raise the given type count; the exception still propagates."""
    c = Counter("failures")
    with pytest.raises(KeyError), c.count_exceptions():
        raise KeyError("x")
    with c.count_exceptions():
        pass
    with pytest.raises(ValueError), c.count_exceptions(KeyError):
        raise ValueError("not counted")
    with pytest.raises(KeyError), c.count_exceptions((OSError, LookupError)):
        raise KeyError("counted: a LookupError")
    assert c.read() == 2


def test_count_exceptions_decorates_functions_and_coroutines() -> None:
    """As a decorator it counts failing calls, sync or async, and keeps the function's name."""
    c = Counter("failures")

    @c.count_exceptions(ZeroDivisionError)
    def divide(a: int, b: int) -> float:
        return a / b

    @c.count_exceptions()
    async def fail_later() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("async")

    assert divide(4, 2) == 2.0
    with pytest.raises(ZeroDivisionError):
        divide(1, 0)
    assert divide.__name__ == "divide"
    coroutine = fail_later()
    assert c.read() == 1  # making the coroutine is not the call: nothing raised yet
    with pytest.raises(RuntimeError):
        asyncio.run(coroutine)
    assert c.read() == 2


def test_track_inprogress_is_up_inside_and_back_down_after() -> None:
    """Block or call, normal or raising, sync or async: +1 while running, back after."""
    g = Gauge("in_flight")
    seen: list[float] = []
    with g.track_inprogress():
        seen.append(g.read())
        with g.track_inprogress():
            seen.append(g.read())
    with pytest.raises(OSError), g.track_inprogress():
        raise OSError("still goes down")

    @g.track_inprogress()
    def work() -> None:
        seen.append(g.read())

    @g.track_inprogress()
    async def work_async() -> None:
        seen.append(g.read())

    work()
    asyncio.run(work_async())
    assert seen == [1.0, 2.0, 1.0, 1.0]
    assert g.read() == 0.0


def test_set_to_current_time_is_the_wall_clock_in_seconds() -> None:
    """A last-success timestamp, as prometheus_client sets it."""
    g = Gauge("last_success")
    before = time.time()
    g.set_to_current_time()
    assert before <= g.read() <= time.time()


def test_set_function_makes_read_call_it() -> None:
    """read() is fn() (as a float) until set_function(None); non-callables are refused."""
    g = Gauge("queue")
    items = [1, 2, 3]
    g.set_function(lambda: len(items))
    items.append(4)
    assert g.read() == 4.0 and type(g.read()) is float
    g.set_function(None)
    assert g.read() == 0.0
    with pytest.raises(InvalidValueError):
        g.set_function(42)  # type: ignore[arg-type]


def test_a_failing_function_skips_its_gauge_and_the_rest_is_emitted() -> None:
    """The batch goes on; the failure is counted and reported once the batch is done."""
    collector = Collector()
    broken = collector.register(Gauge("broken"))
    broken.set_function(lambda: 1 / 0)
    collector.register(Gauge("fine")).set(2.0)
    emitter = RecordingEmitter()
    with pytest.raises(ZeroDivisionError):
        collector.emit(emitter, 5)
    labels = emitter.labels_seen()
    assert "fine" in labels and "broken" not in labels
    failures = [r[3] for r in emitter.readings if r[1] == "biometrics.collector.emit.failure"]
    assert failures == [0]  # the collector's own counters go first, before the failure
    again = RecordingEmitter()
    with pytest.raises(ZeroDivisionError):
        collector.emit(again, 6)
    assert [r[3] for r in again.readings if r[1] == "biometrics.collector.emit.failure"] == [1]


@pytest.mark.parametrize(
    ("kwargs", "declaration"),
    [
        ({}, ""),
        ({"merge": "sum"}, "sum"),
        ({"merge": "max", "live_only": True}, "max live"),
        ({"live_only": True}, "latest live"),
        ({"merge": "all"}, "all"),
    ],
)
def test_gauges_declare_their_merge(kwargs: dict[str, object], declaration: str) -> None:
    """What the segment's # MERGE line will say; live_only alone means latest, live."""
    g = Gauge("g", **kwargs)  # type: ignore[arg-type]
    assert g.merge_declaration == declaration
    assert g.live_only is kwargs.get("live_only", False)


@pytest.mark.parametrize("kwargs", [{"merge": "avg"}, {"merge": "livesum"}, {"live_only": 1}])
def test_bad_merge_declarations_are_refused(kwargs: dict[str, object]) -> None:
    """A typo fails where the gauge is made, naming the choices."""
    with pytest.raises(InvalidValueError, match=r"latest, sum, max, min, all|True or False"):
        Gauge("g", **kwargs)  # type: ignore[arg-type]
