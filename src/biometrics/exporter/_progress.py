"""The shipper's record of acknowledged lines, so a restart does not send them again."""

from __future__ import annotations

import json
import logging
import os

from ._logging import log

__all__ = ["Progress"]


class Progress:
    """``{segment name: [dev, ino, acknowledged line]}``, rewritten by rename after each ack.

    Not fsynced: it only saves re-sending after a crash of this process; after a power loss the
    worst case is sending acknowledged samples again (at-least-once, as documented).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.entries: dict[str, list[int]] = {}
        self.dirty = False

    def load(self, spool: str) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                loaded = json.load(f)
            entries = loaded["segments"]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as e:
            log(logging.WARNING, "ship progress unreadable; segments are sent from the start",
                path=self.path, error=str(e))  # fmt: skip
            return
        self.entries = {
            name: entry
            for name, entry in entries.items()
            if os.path.lexists(os.path.join(spool, name))
        }

    def acked(self, name: str, key: list[int]) -> int:
        """Lines acknowledged of segment ``name`` if it is still the file ``key`` (dev, ino)."""
        entry = self.entries.get(name)
        return entry[2] if entry is not None and entry[:2] == key else 0

    def save(self) -> None:
        temp = f"{self.path}.tmp"
        with open(temp, "w", encoding="utf-8") as f:
            json.dump({"version": 1, "segments": self.entries}, f)
        os.replace(temp, self.path)
        self.dirty = False
