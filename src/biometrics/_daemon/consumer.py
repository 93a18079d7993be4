"""One skeleton for consuming a spool: claim a segment, skip a bad one, dispose of what is done.

``serve`` and ``ship`` differ in what makes a segment done (journaled and fsynced; every sample
acknowledged by the remote) and in how many they hold at once, so each keeps its own loop.
Everything around that loop is the same and lives here, so a segment is treated alike whichever
daemon holds it: strays (links, FIFOs named like segments) are reported once, never opened; a
segment that fails for a reason of its own is logged once, counted and skipped until it
changes; a segment whose name carries no time is quarantined at claim; a finished one is
deleted, archived or moved to the outbox, and a bad one quarantined with a sidecar saying why.
A move that is refused (a planted link) or fails leaves the segment in the spool, skipped.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import SegmentError, UnsafeFileError
from ..prometheus.reader import Reader
from ..prometheus.segments import source_of
from ..prometheus.watcher import Held, Watcher
from ..sensors import Counter
from .logfmt import log
from .spool import SkipList, move, quarantine

__all__ = [
    "Claimed",
    "ConsumerMetrics",
    "Disposal",
    "Places",
    "SpoolConsumer",
    "Words",
    "Writing",
]

_NAMELESS = "file name has no <epoch_ms> before .prom; cannot tell its time"


class ConsumerMetrics(Protocol):
    """The two counters every consumer keeps; each daemon names them in its own family."""

    failures: Counter
    """Segments (or passes) that failed: unreadable, unremovable, refused, strays."""
    quarantined: Counter
    """Segments moved to quarantine."""


@dataclass(frozen=True, slots=True)
class Places:
    """Where a consumer puts the segments it is done with, defaults applied.

    The one set of disposal options both daemons share: each daemon's own options (flat, as
    users pass them) resolve to this.
    """

    quarantine: str
    """Segments that cannot be consumed go here, each with a ``.error`` sidecar."""
    archive: str | None = None
    """Consumed segments are moved here instead of deleted."""
    outbox: str | None = None
    """Every consumed segment with a segment name is moved here for a shipper, malformed ones
    included (the shipper delivers their good lines, then quarantines them itself)."""


@dataclass(frozen=True, slots=True)
class Words:
    """How a daemon's log lines name a segment it let go and what a failure to remove it means."""

    done: str
    """``consumed``, ``shipped``."""
    if_kept: str
    """What a segment left in the spool costs: ``it is journaled; will not re-read``."""


class Disposal(enum.Enum):
    """What became of a segment handed to :meth:`SpoolConsumer.dispose`."""

    DELETED = "deleted"
    ARCHIVED = "archived"
    OUTBOX = "outbox"
    QUARANTINED = "quarantined"
    KEPT = "kept"
    """Still in the spool: skip-listed until it changes, or waiting for its outbox name."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A segment held exclusively (its reader is locked), with the source and time its name gives.

    The claimer closes ``reader`` once the segment is disposed of (or left for a later pass).
    """

    reader: Reader
    source: str
    default_ms: int
    """The file name's epoch ms: the time of every line written without its own."""

    @property
    def path(self) -> str:
        """The segment's path in the spool."""
        return self.reader.path

    @property
    def name(self) -> str:
        """The file name: what the journal and the ship progress record it by."""
        return os.path.basename(self.reader.path)


@dataclass(frozen=True, slots=True)
class Writing:
    """A segment its writer still holds, with the source and time its name gives.

    What :meth:`SpoolConsumer.claim_or_held` answers instead of a claim when only the writer's
    lock stood in the way; the receiver closes ``held``.
    """

    held: Held
    source: str
    default_ms: int

    @property
    def path(self) -> str:
        """The segment's path in the spool."""
        return self.held.path


class SpoolConsumer:
    """Claims, skips and disposes of one spool's segments for a daemon's own consuming loop."""

    def __init__(self, spool: str, places: Places, metrics: ConsumerMetrics, words: Words) -> None:
        self.watcher = Watcher(spool)
        self.places = places
        self._metrics = metrics
        self._words = words
        self._skipped = SkipList()

    def candidates(self) -> list[str]:
        """Segments that may be finished, oldest first; ``SegmentError`` if the spool is gone."""
        return self.watcher.candidates()

    def claim(self, path: str) -> Claimed | None:
        """Take ``path`` exclusively, or None (held by its writer, gone, skipped or nameless).

        Strays found by the listing are reported first, once each until they change.  A segment
        this process may not open is skipped (logged once, counted); one whose name carries no
        time cannot be consumed and is quarantined here.
        """
        taken = self._claim(path, hold=False)
        assert not isinstance(taken, Writing)
        return taken

    def claim_or_held(self, path: str) -> Claimed | Writing | None:
        """:meth:`claim`, or :class:`Writing` if only its writer's lock keeps ``path`` from us.

        Never for a skipped segment, a stray, or one whose name carries no time: those are
        None, as for :meth:`claim` (the last is quarantined once its writer lets it go).
        """
        return self._claim(path, hold=True)

    def _claim(self, path: str, *, hold: bool) -> Claimed | Writing | None:
        self._report_strays()
        if self._skipped.skipped(path):
            return None
        try:
            taken = self.watcher.claim_or_hold(path) if hold else self.watcher.claim(path)
        except SegmentError as e:
            self.skip(path, "cannot open segment", e)
            return None
        if taken is None:
            return None
        name = os.path.basename(path)
        named = source_of(name) if "\n" not in name else None  # a journal record ends at "\n"
        if named is not None:
            if isinstance(taken, Held):
                return Writing(taken, named[0], named[1])
            return Claimed(taken, named[0], named[1])
        if isinstance(taken, Held):
            taken.close()  # quarantined once its writer lets it go
        else:
            with taken:
                self.dispose(taken, _NAMELESS)
        return None

    def skip(self, path: str, what: str, error: OSError) -> None:
        """Leave ``path`` in the spool untried until it changes; log ``what`` happened, once."""
        self._metrics.failures.click()
        self._skipped.add(path)
        log(logging.ERROR, what, path=path, error=str(error),
            errno=errno.errorcode.get(error.errno or 0, error.errno))  # fmt: skip

    def dispose(
        self, reader: Reader, reason: str | None = None, problems: Sequence[object] = ()
    ) -> Disposal:
        """Let a claimed segment go; never raises for the file: a failure keeps it, skipped.

        To the outbox if there is one, else to quarantine given a ``reason`` (``problems`` go
        into its sidecar), else to the archive if there is one, else deleted.
        """
        if reason is not None and not self._to_outbox(reader.path):
            return self._quarantine(reader.path, reader.fileno(), reason, problems)
        path, words = reader.path, self._words
        try:
            return self._let_go(reader)
        except FileExistsError:
            log(logging.WARNING, "outbox has a segment of this name; moving it later", path=path)
        except UnsafeFileError as e:
            # Refused, never followed: the segment stays here, skipped until it changes (or the
            # daemon restarts), rather than go through a planted link.
            self.skip(path, f"refusing to move {words.done} segment; it stays in the spool", e)
        except OSError as e:
            self.skip(path, f"cannot remove {words.done} segment ({words.if_kept})", e)
        return Disposal.KEPT

    def _to_outbox(self, path: str) -> bool:
        """Whether ``path`` goes to the outbox: there is one and the name is a segment's."""
        return self.places.outbox is not None and source_of(os.path.basename(path)) is not None

    def _let_go(self, reader: Reader) -> Disposal:
        """Move a consumed segment to the outbox or the archive, or delete it; may raise."""
        path, fd, places = reader.path, reader.fileno(), self.places
        if places.outbox is not None and self._to_outbox(path):
            move(path, places.outbox, rename_on_clash=False, fd=fd,
                 hint="remove it (the outbox lives beside --state)")  # fmt: skip
            return Disposal.OUTBOX
        if places.archive is not None:
            move(path, places.archive, fd=fd,
                 hint="remove it, or point --archive at a real directory")  # fmt: skip
            return Disposal.ARCHIVED
        reader.unlink()
        return Disposal.DELETED

    def _quarantine(self, path: str, fd: int, reason: str, problems: Sequence[object]) -> Disposal:
        try:
            done = quarantine(path, self.places.quarantine, reason, problems, fd=fd)
        except OSError as e:  # a refused quarantine (a link, not ours) included: never followed
            self.skip(path, "cannot quarantine segment; it stays in the spool", e)
            return Disposal.KEPT
        self._metrics.quarantined.click()
        log(logging.WARNING, "segment quarantined", path=path, moved_to=done.target,
            sidecar=done.sidecar or "-", reason=reason,
            first_problem=str(problems[0]) if problems else "")  # fmt: skip
        if done.sidecar_problem is not None:
            log(logging.WARNING, "quarantine sidecar not at its usual name", path=done.target,
                problem=done.sidecar_problem)  # fmt: skip
        return Disposal.QUARANTINED

    def _report_strays(self) -> None:
        for stray, kind in self.watcher.strays():  # once each, until it changes
            self._metrics.failures.click()
            log(logging.WARNING, "not a regular file; ignored, never opened or followed",
                path=stray, kind=kind, fix="remove it: segments are regular files only (a "
                "process that can write the spool may have planted it)")  # fmt: skip
