"""Remote-write bodies built by hand: each sample encoded once, as bytes, when it is read.

The protobuf runtime costs a Python call and a message object per sample; here a series' label
set is encoded once (and kept for as long as the series recurs) and a sample is three byte
strings joined: a head and a tail that depend only on its timestamp (cached, since a whole emit
shares one) around its packed double.  The bytes are what the ``WriteRequest`` schema in
:mod:`.remote_write` describes, so :func:`~.remote_write.decode` reads them back.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable
from typing import Any

import cramjam

from .._labels import LabelPairs

__all__ = ["UNSORTED", "SeriesParts", "Stamps", "encode", "label_bytes", "sample_bytes", "varint"]

UNSORTED = 1 << 64
"""Put first in a series' list once a sample arrived out of time order: sort it before sending."""
SeriesParts = dict[bytes, list[Any]]
"""Encoded label set -> ``[newest ms (or UNSORTED), sample bytes, sample bytes...]``.

A list, not a record: the read loop appends to one per sample (the measured hot loop)."""

_MAX_STAMPS = 4096
_double = struct.Struct("<d").pack


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint; a negative int64 takes ten bytes, as two's complement."""
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SIZES = [varint(n) for n in range(1 << 14)]


def _size(n: int) -> bytes:
    return _SIZES[n] if n < 16384 else varint(n)


def _string(field: int, text: str) -> bytes:
    data = text.encode()
    return bytes((field << 3 | 2,)) + _size(len(data)) + data


@functools.lru_cache(maxsize=1 << 16)
def _label(name: str, value: str) -> bytes:
    label = _string(1, name) + _string(2, value)
    return b"\x0a" + _size(len(label)) + label


def label_bytes(labels: LabelPairs) -> bytes:
    """A ``TimeSeries``' labels field, encoded: the part of a series that never changes."""
    return b"".join([_label(name, value) for name, value in labels])


def _stamp_parts(ms: int) -> tuple[bytes, bytes]:
    tail = b"\x10" + varint(ms)
    return b"\x12" + bytes((9 + len(tail),)) + b"\x09", tail


class Stamps(dict[bytes, tuple[int, bytes, bytes]]):
    """Timestamp text -> ``(ms, head, tail)``, so a sample is ``head + double + tail``.

    A miss (:meth:`parse`) also checks the text: digits only, within int64, as the parser's
    rules.  Bounded: cleared when full, which costs one miss per timestamp.
    """

    def parse(self, text: bytes) -> tuple[int, bytes, bytes] | None:
        """The entry for ``text``, or None if it is not a timestamp the fast path may take."""
        if not (text.isdigit() and len(text) <= 19):
            return None
        ms = int(text)
        if ms > (1 << 63) - 1:
            return None
        if len(self) >= _MAX_STAMPS:
            self.clear()
        head, tail = _stamp_parts(ms)
        entry = self[text] = (ms, head, tail)
        return entry


def sample_bytes(ms: int, value: float) -> bytes:
    """One ``Sample`` field of a ``TimeSeries``, for the lines the fast path leaves to others."""
    head, tail = _stamp_parts(ms)
    return head + _double(value) + tail


def _time(sample: bytes) -> int:
    n, shift = 0, 0
    for byte in sample[12:]:
        n |= (byte & 0x7F) << shift
        shift += 7
    return n - (1 << 64) if n >= 1 << 63 else n


def _in_order(samples: list[bytes]) -> tuple[list[bytes], int]:
    """Samples sorted by time, the later of two at one ms kept; and how many were dropped."""
    timed = sorted(((_time(s), i, s) for i, s in enumerate(samples)), key=lambda t: (t[0], t[1]))
    kept: list[bytes] = []
    last: int | None = None
    for ms, _, sample in timed:
        if ms == last:
            kept[-1] = sample
        else:
            kept.append(sample)
            last = ms
    return kept, len(samples) - len(kept)


def encode(parts: Iterable[SeriesParts]) -> tuple[bytes, int, int]:
    """``(body, samples, dropped)``: one request of ``parts``, snappy block compressed.

    A series in several parts (two segments of one source in one request) is merged and sorted;
    of two samples of a series at one millisecond the later one is kept, as :func:`group` does.
    """
    given = list(parts)
    merged: SeriesParts = given[0] if len(given) == 1 else {}
    if len(given) > 1:
        for part in given:
            for labels, samples in part.items():
                got = merged.get(labels)
                merged[labels] = samples if got is None else [UNSORTED, *got[1:], *samples[1:]]
    out: list[bytes] = []
    count = dropped = 0
    for labels, samples in merged.items():
        if samples[0] == UNSORTED:
            kept, lost = _in_order(samples[1:])
            dropped += lost
        else:
            kept = samples[1:]
        count += len(kept)
        series = labels + b"".join(kept)
        out.append(b"\x0a" + _size(len(series)) + series)
    return bytes(cramjam.snappy.compress_raw(b"".join(out))), count, dropped
