import itertools
import threading

import pytest

import biometrics.sensors as sensors_module
from biometrics import (
    BiometricsError,
    Counter,
    Gauge,
    Histogram,
    InvalidLabelError,
    InvalidValueError,
    Moments,
)

THREADS = 8
PER_THREAD = 20_000


def hammer(fn) -> None:
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
    hammer(lambda: (g.inc(3.0), g.dec(1.0)))
    assert g.read() == 2.0 * THREADS * PER_THREAD


def test_no_lost_histogram_or_moments_observations_under_threads() -> None:
    """Buffered hot paths (deque + fold) keep every observation, across many folds."""
    h = Histogram("h")
    m = Moments("m")
    hammer(lambda: (h.observe(0.25), m.add(2.0)))
    r = h.read()
    assert r.count == THREADS * PER_THREAD
    assert r.buckets == ((0.25, THREADS * PER_THREAD),)
    assert r.sum == 0.25 * THREADS * PER_THREAD
    assert m.read().n == THREADS * PER_THREAD
    assert m.read().mean() == 2.0


def test_reads_while_writing_never_go_backwards() -> None:
    """A reader racing writers sees monotonic counts (readings are algebraic)."""
    c = Counter("c")
    h = Histogram("h")
    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def reader() -> None:
        while not stop.is_set() and len(seen) < 100_000:
            seen.append((c.read(), h.read().count))

    t = threading.Thread(target=reader)
    t.start()
    hammer(lambda: (c.click(), h.observe(1.0)))
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
