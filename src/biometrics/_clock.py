"""The wall clock in epoch milliseconds: the one unit every timestamp here is written in.

Segments, pages and remote write all carry epoch milliseconds, and callers pass ``now_ms`` in
(time is never read behind their back in the format code); this is what they pass by default.
"""

from __future__ import annotations

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    """Now, in whole epoch milliseconds (integer arithmetic: no float rounding at 2**53 ns)."""
    return time.time_ns() // 1_000_000
