"""``emit_every`` makes its spool: when, with which mode, and which links it will not follow."""

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from biometrics import Collector, Counter
from biometrics.prometheus import Options
from biometrics.runtime import (
    PRIVATE_SPOOL_MODE,
    SHARED_SPOOL_MODE,
    Emission,
    ensure_spool,
    spool_mode_for,
)


@pytest.fixture
def strict_umask() -> Iterator[None]:
    """A umask that would strip group and other bits: the modes must not depend on it."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def emission(prefix: Path, mode: int = 0o644) -> tuple[Emission, Counter]:
    collector = Collector()
    hits = collector.register(Counter("hits"))
    options = Options(prefix=prefix, mode=mode)
    made = Emission(3600, collector=collector, options=options, system=False, finish_each=True)
    return made, hits


def failures(made: Emission) -> dict[str, int | float]:
    return {
        dict(s.labels)["kind"]: s.read()  # type: ignore[attr-defined]
        for s in made.collector.sensors()
        if s.label == "biometrics.emit.failure"
    }


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_start_makes_a_missing_spool_and_its_ancestors_before_any_emission(
    tmp_path: Path, strict_umask: None
) -> None:
    """Private by default: 0o755 exactly, whatever the umask; the segments then land in it."""
    spool = tmp_path / "a" / "b" / "spool"
    made, hits = emission(spool / "app.")
    made.start()
    try:
        assert spool.is_dir(), "made at start(), not an interval later"
        assert mode_of(spool) == PRIVATE_SPOOL_MODE == 0o755
        hits.click()
        assert made.emit() is True
    finally:
        made.stop()
    assert [p.name.startswith("app.") for p in spool.glob("*.prom")] == [True, True]
    assert failures(made) == {}


def test_group_writable_segments_get_a_shared_setgid_spool(
    tmp_path: Path, strict_umask: None
) -> None:
    """``Options(mode=0o664)``: spool 0o2775 (setgid, group-writable); segments 0o664 exactly.
    A segment then takes the spool's group, whoever writes it (shown with the group changed
    after the spool was made, as ``chgrp`` by an operator or tmpfiles.d would)."""
    spool = tmp_path / "spool"
    made, hits = emission(spool / "app.", mode=0o664)
    assert spool_mode_for(made.options) == SHARED_SPOOL_MODE == 0o2775
    made.start()
    try:
        assert mode_of(spool) == 0o2775
        other = next((g for g in [*os.getgroups(), 4242] if g != os.getegid()), None)
        if os.geteuid() == 0 or other in os.getgroups():
            assert other is not None
            os.chown(spool, -1, other)
            os.chmod(spool, 0o2775)  # chown clears setgid; an operator sets it again
        hits.click()
        assert made.emit() is True
    finally:
        made.stop()
    segments = list(spool.glob("*.prom"))
    assert segments and all(mode_of(p) == 0o664 for p in segments)
    assert {p.stat().st_gid for p in segments} == {spool.stat().st_gid}


def test_an_explicit_mode_and_an_existing_spool(tmp_path: Path) -> None:
    """``spool_mode`` is applied exactly; a spool that exists is never changed."""
    made, _ = emission(tmp_path / "mine" / "app.")
    made.spool_mode = 0o700
    assert made.emit() is True
    assert mode_of(tmp_path / "mine") == 0o700
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o711)
    os.chmod(existing, 0o711)
    assert ensure_spool(str(existing), 0o2775) is False
    assert mode_of(existing) == 0o711
    assert ensure_spool("", 0o2775) is False, "the working directory: nothing to make"


def test_a_dangling_link_in_the_spools_place_is_not_followed(tmp_path: Path) -> None:
    """A link where the spool should be, pointing nowhere: nothing is made at its target; the
    emission fails (EEXIST), is counted and never raises."""
    target = tmp_path / "elsewhere"
    (tmp_path / "spool").symlink_to(target)
    made, _ = emission(tmp_path / "spool" / "app.")
    made.start()
    assert made.emit() is False
    made.stop()
    assert not target.exists()
    assert failures(made) == {"EEXIST": 3}  # at start(), emit() and stop()'s final emission


def test_links_the_user_chose_are_followed(tmp_path: Path) -> None:
    """A link to an existing directory as the spool, or among its ancestors: the user's layout.
    The spool is used (or made) where they point."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "spool").symlink_to(real)
    made, _ = emission(tmp_path / "spool" / "app.")
    assert made.emit() is True
    assert list(real.glob("app.*.prom"))
    (tmp_path / "parent").symlink_to(real)
    made, _ = emission(tmp_path / "parent" / "sub" / "app.")
    assert made.emit() is True
    assert (real / "sub").is_dir() and not (real / "sub").is_symlink()
    assert list((real / "sub").glob("app.*.prom"))


def test_a_spool_removed_while_running_is_made_again(tmp_path: Path) -> None:
    """The next segment's emission makes it again: nothing lost but the removed files."""
    spool = tmp_path / "spool"
    made, hits = emission(spool / "app.")
    assert made.emit() is True
    for path in spool.iterdir():
        path.unlink()
    spool.rmdir()
    hits.click()
    assert made.emit() is True
    made.stop()
    assert "hits_total 1 " in "".join(p.read_text() for p in spool.glob("*.prom"))
    assert failures(made) == {}
