"""The shipper's record of acknowledged lines, so a restart does not send them again."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from .._daemon.logfmt import log

__all__ = ["FileId", "Progress"]


@dataclass(frozen=True, slots=True)
class FileId:
    """Which file a segment name stood for: a name reused by a new file starts from line 0."""

    dev: int
    ino: int

    @classmethod
    def of(cls, fd: int) -> FileId:
        """The identity of the open file ``fd``."""
        st = os.fstat(fd)
        return cls(st.st_dev, st.st_ino)


@dataclass(frozen=True, slots=True)
class _Acked:
    file: FileId
    line: int
    """Every sample on a line up to this one was acknowledged."""
    shards: tuple[int, ...] = ()
    """Per shard, the line up to which that shard's samples were acknowledged (each >= line)."""


class Progress:
    """``{segment name: [dev, ino, acknowledged line, [per shard]]}``, rewritten after acks.

    The per-shard lines (since concurrency) let a restart skip what each shard had
    acknowledged; a file without them, or with another number of shards, resumes every shard
    from the common line: more is sent again, nothing is lost.

    Not fsynced: it only saves re-sending after a crash of this process; after a power loss the
    worst case is sending acknowledged samples again (at-least-once, as documented).  The file
    format is the same since version 1; in memory each entry is a typed record.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._entries: dict[str, _Acked] = {}
        self._dirty = False

    @property
    def dirty(self) -> bool:
        """True when a segment was forgotten since the last save (no acknowledgement saved it)."""
        return self._dirty

    def load(self, spool: str) -> None:
        """Read the file, keeping the entries of segments still in ``spool``; missing is empty.

        An unreadable or malformed file is logged and ignored: the segments are then sent from
        their start, which is at-least-once, never a loss.
        """
        try:
            with open(self.path, encoding="utf-8") as f:
                loaded = json.load(f)
            entries = {
                name: _Acked(FileId(int(dev), int(ino)), int(line),
                             tuple(int(n) for n in (rest[0] if rest else ())))
                for name, (dev, ino, line, *rest) in loaded["segments"].items()
            }  # fmt: skip
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log(logging.WARNING, "ship progress unreadable; segments are sent from the start",
                path=self.path, error=str(e))  # fmt: skip
            return
        self._entries = {
            name: entry
            for name, entry in entries.items()
            if os.path.lexists(os.path.join(spool, name))
        }

    def acked(self, name: str, file: FileId, shards: int) -> list[int]:
        """Per shard, lines acknowledged of segment ``name`` if it is still the file ``file``."""
        entry = self._entries.get(name)
        if entry is None or entry.file != file:
            return [0] * shards
        if len(entry.shards) == shards:
            return [max(entry.line, n) for n in entry.shards]
        return [entry.line] * shards

    def record(self, name: str, file: FileId, shards: list[int]) -> None:
        """Each shard's samples of ``name`` up to its line were acknowledged (see :meth:`save`)."""
        self._entries[name] = _Acked(file, min(shards), tuple(shards))

    def forget(self, name: str) -> None:
        """``name`` left the spool: its entry goes at the next save."""
        if self._entries.pop(name, None) is not None:
            self._dirty = True

    def save(self) -> None:
        """Rewrite the file by rename, so a reader never sees half of it."""
        temp = f"{self.path}.tmp"
        segments = {
            name: [entry.file.dev, entry.file.ino, entry.line, list(entry.shards)]
            for name, entry in self._entries.items()
        }
        with open(temp, "w", encoding="utf-8") as f:
            json.dump({"version": 1, "segments": segments}, f)
        os.replace(temp, self.path)
        self._dirty = False
