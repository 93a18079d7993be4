"""Fixtures many test modules share: the daemons' log records, an exporter over a fresh spool.

Plain helper functions (polling, reading a spool) are in :mod:`tests.helpers`.  Tests write
under temporary directories only, Hypothesis included: no example database (a failure prints
the ``@reproduce_failure`` blob instead), and its caches in a directory removed at exit.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from biometrics._daemon.logfmt import LOGGER
from biometrics.exporter import ExporterOptions

settings.register_profile("tests", database=None, print_blob=True)
settings.load_profile("tests")


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis caches (written from collection on) go to a temporary directory, not the
    checkout, removed when the run ends."""
    home = tempfile.mkdtemp(prefix="biometrics-hypothesis-")
    set_hypothesis_home_dir(home)
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))


@pytest.fixture
def events() -> Iterator[list[logging.LogRecord]]:
    """The daemons' log records at every level, whatever an earlier test configured."""
    kept: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record)

    handler, level = Keep(logging.DEBUG), LOGGER.level
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.DEBUG)
    try:
        yield kept
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)


@pytest.fixture
def options(tmp_path: Path) -> ExporterOptions:
    """Exporter options over an empty ``tmp_path/spool``, state in ``tmp_path/state/s.json``."""
    spool = tmp_path / "spool"
    spool.mkdir()
    return ExporterOptions(spool=str(spool), state=str(tmp_path / "state" / "s.json"))
