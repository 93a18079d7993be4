import io

from biometrics import Counter, Emitter, Gauge, Histogram, Moments, PlainTextEmitter
from biometrics.testing import RecordingEmitter


def test_plain_text_is_one_reading_per_line() -> None:
    """The Rust crate's plain format, byte for byte, plus labels and out-of-range lines.

    Histograms: the non-empty buckets only (empty ones are noise to a reader), not cumulative.
    """
    out = io.StringIO()
    e = PlainTextEmitter(out)
    c = Counter("plain.counter", labels={"k": "v"})
    c.count(3)
    g = Gauge("plain.gauge")
    g.set(12.5)
    m = Moments("plain.moments")
    m.add(1.0)
    m.add(3.0)
    h = Histogram("plain.histogram", buckets=[1.0, 1.1, 2.0])
    h.observe(1.0)
    h.observe_n(1.1, 3)
    h.observe(-2.0)
    h.observe(7.0)
    e.emit_counter(c, 7)
    e.emit_gauge(g, 7)
    e.emit_moments(m, 7)
    e.emit_histogram(h, 7)
    assert out.getvalue() == (
        "plain.counter{k='v'} 7 3\n"
        "plain.gauge 7 12.5\n"
        "plain.moments 7 2 2.0 2.0 0.0 2.0\n"
        "plain.histogram 7 {le=1.0} 2\n"
        "plain.histogram 7 {le=1.1} 3\n"
        "plain.histogram 7 {le=inf} 1\n"
        "plain.histogram 7 {exceeds_max} 1\n"
        "plain.histogram 7 {is_negative} 1\n"
    )


def test_shipped_emitters_satisfy_the_protocol() -> None:
    """Emitter is a runtime-checkable Protocol."""
    assert isinstance(PlainTextEmitter(io.StringIO()), Emitter)
    assert isinstance(RecordingEmitter(), Emitter)
    assert not isinstance(object(), Emitter)
