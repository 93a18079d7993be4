"""The ship tests' shared fixtures: a spool directory and our real remote-write receiver."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from ._receiver import Receiver


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
