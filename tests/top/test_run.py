"""Top: the target's form, and a failed reading that keeps the last frame."""

from pathlib import Path

import pytest

from biometrics import BiometricsError
from biometrics.top import Top, TopOptions

from ..integration._prometheus import free_port

T0 = 1_700_000_000_000


def test_options_name_the_page_and_refuse_nonsense() -> None:
    """A URL without a path means /metrics; a non-positive interval is refused."""
    assert TopOptions("http://h:9464").url == "http://h:9464/metrics"
    assert TopOptions("https://h:1/").url == "https://h:1/metrics"
    assert TopOptions("http://h:1/x/metrics").url == "http://h:1/x/metrics"
    assert not TopOptions("/var/spool").is_url
    with pytest.raises(BiometricsError, match="interval must be positive"):
        TopOptions("s", interval=0)


def test_a_spool_must_be_a_directory(tmp_path: Path) -> None:
    """A typo fails at start, naming the path."""
    with pytest.raises(BiometricsError, match="gone: not a directory"):
        Top(TopOptions(str(tmp_path / "gone")))


def test_a_failed_reading_keeps_the_last_frame(tmp_path: Path) -> None:
    """The spool vanishes after a good reading: the next frame is the last one with the
    failure as a problem; a URL that never answered gives a frame that only says why."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / f"w.{T0}.prom").write_bytes(b"# TYPE x_total counter\nx_total 3\n")
    ticks = iter(range(T0, T0 + 10_000, 1000))
    watcher = Top(TopOptions(str(spool)), clock=lambda: next(ticks))
    first = watcher.frame()
    assert [(c.key.name, c.value) for c in first.counters] == [("x_total", 3)]
    (spool / f"w.{T0}.prom").unlink()
    spool.rmdir()
    again = watcher.frame()
    assert [(c.key.name, c.value, c.rate) for c in again.counters] == [("x_total", 3, 0.0)]
    assert watcher.failed is None
    assert again.problems == (f"cannot list {spool}: No such file or directory",)
    url = f"http://127.0.0.1:{free_port()}/"
    down = Top(TopOptions(url, timeout=5))
    frame = down.frame()
    assert down.failed is not None and down.failed.startswith(f"GET {url}metrics: ")
    assert frame.problems == (down.failed,) and frame.counters == ()
