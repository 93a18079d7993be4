"""The shared test helpers fail when they should: a wait that never succeeds, a missing series."""

import itertools
from pathlib import Path

import pytest

from biometrics import Collector, Counter
from biometrics.prometheus import Options, SegmentEmitter

from .helpers import page_value, series_value, spool_samples, spool_values, wait_for


def test_wait_for_returns_the_first_accepted_answer() -> None:
    """Polls until ``accept`` takes an answer and hands that answer back."""
    counter = itertools.count()
    assert wait_for(lambda: next(counter), "three", accept=lambda n: n >= 3, every=0) == 3


def test_wait_for_fails_at_its_deadline_naming_what_and_the_last_answer() -> None:
    """A condition that never holds is an AssertionError after ``timeout``, not a hang."""
    with pytest.raises(AssertionError, match=r"after 0\.05 s waiting for the moon: 'no'"):
        wait_for(lambda: "no", "the moon", accept=lambda a: a == "yes", timeout=0.05)


def test_spool_samples_reads_every_segment_in_name_order(tmp_path: Path) -> None:
    """Each segment's samples (only the named ones when asked), files in name order."""
    collector = Collector()
    jobs = collector.register(Counter("jobs"))
    for source, count in (("b", 2), ("a", 1)):
        jobs.count(count)
        with SegmentEmitter(Options(prefix=tmp_path / f"{source}.")) as e:
            collector.emit(e, 1000)
    found = spool_samples(tmp_path, "jobs_total")
    assert [p.name for p in found] == ["a.1000.prom", "b.1000.prom"]
    assert spool_values(tmp_path, "jobs_total") == [3.0, 2.0]
    assert spool_samples(tmp_path, "nothing") == {p: [] for p in found}


def test_series_value_reads_one_exact_series_off_a_page() -> None:
    """The series' own line, labels included; absent is None, or a failure for page_value."""
    page = 'x_total 1\nx_total{a="b"} 2\nx_total_more 3\n'
    assert series_value(page, "x_total") == 1
    assert series_value(page, 'x_total{a="b"}') == 2
    assert series_value(page, "x") is None
    with pytest.raises(AssertionError, match="y not in page"):
        page_value(page, "y")
