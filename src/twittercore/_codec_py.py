"""Record codecs of the LMDB layout, pure Python.  Twin: :mod:`twittercore._codec`.

Keys are big-endian so that LMDB's byte order is numeric order; packed id
runs are native-endian uint64 so the merge kernel reads them in place.

* ``events``:  id (8, BE) -> source (u64) · time (f64) · payload   (native)
* ``logs``:    source (8, BE) · tag (8, BE) -> packed ids, ascending.  The tag
  ``HEAD`` marks the one mutable chunk, laid out ``[floor, count, ids...]``
  (``floor``: every older id of the source is ``<= floor``; ``count``: the
  source's undeleted events).  Older chunks are sealed under tag = an upper
  bound of their ids that is below every id of the next chunk.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from typing import Any

from ._types import Event

HEAD = b"\xff" * 8
SEAL = 96  # a head holds SEAL..2*SEAL-1 ids (<= 1.5 KiB: inline in a 4 KiB page); the oldest SEAL are sealed together

_EVENT = struct.Struct("=Qd")
_BE = struct.Struct(">Q")
_HEADER = struct.Struct("=QQ")
be = _BE.pack


def head_keys(records: Any) -> list[bytes]:
    """Head keys for the sources in 16-byte ``(sink_be, source_be)`` records."""
    view = memoryview(records).cast("B")
    return [bytes(view[i + 8 : i + 16]) + HEAD for i in range(0, len(view), 16)]


def values_of(records: Any) -> list[int]:
    """Node ids from the value half of 16-byte ``(key_be, value_be)`` records
    (a sink's sources, or a source's sinks)."""
    view = memoryview(records).cast("B")
    return [_BE.unpack_from(view, i + 8)[0] for i in range(0, len(view), 16)]


def encode_events(first_id: int, items: Sequence[tuple[int, bytes]], time: float) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` records of the ``events`` table for a batch with consecutive ids."""
    pack = _EVENT.pack
    return [(be(first_id + n), pack(source, time) + payload) for n, (source, payload) in enumerate(items)]


def group_ids(first_id: int, items: Sequence[tuple[int, bytes]]) -> dict[int, list[int]]:
    """Source -> its ids in this batch (ascending), ids consecutive from ``first_id``."""
    groups: dict[int, list[int]] = {}
    for n, (source, _) in enumerate(items):
        groups.setdefault(source, []).append(first_id + n)
    return groups


def append_head(head: Any, ids: Sequence[int]) -> tuple[bytes, list[tuple[int, bytes]]]:
    """Append ascending ``ids`` to a head; seal full chunks.

    Returns the new head and the sealed chunks as ``(tag, packed_ids)``.
    """
    if head is None:
        floor, count, old = 0, 0, array("Q")
    else:
        words = array("Q", bytes(head))
        floor, count, old = words[0], words[1], words[2:]
    old.extend(ids)
    count += len(ids)
    sealed = []
    while len(old) >= 2 * SEAL:
        chunk, old = old[:SEAL], old[SEAL:]
        floor = chunk[-1]
        sealed.append((floor, chunk.tobytes()))
    return _HEADER.pack(floor, count) + old.tobytes(), sealed


def decode_event(id: int, value: Any) -> Event:
    if len(value) < 16:  # as the compiled twin: a damaged record is a ValueError
        raise ValueError(f"event {id}: the record is {len(value)} bytes, shorter than its 16-byte header")
    source, time = _EVENT.unpack_from(value)
    return Event(id, source, bytes(value[16:]), time)


def check_items(items: list[Any], max_payload: int) -> bool:
    """True when every item is an exact ``(int, bytes)`` tuple within limits (see the twin)."""
    for item in items:
        if type(item) is not tuple or len(item) != 2:
            return False
        source, payload = item
        if type(source) is not int or type(payload) is not bytes:
            return False
        if len(payload) > max_payload or not 0 <= source <= 0xFFFFFFFFFFFFFFFF:
            return False
    return True


def be_keys(ids: Sequence[int]) -> list[bytes]:
    """Big-endian 8-byte keys for a list of ids (the ``events`` table's keys)."""
    return [be(id) for id in ids]


def decode_values(ids: Sequence[int], values: Sequence[Any]) -> list[Event]:
    """Events from the values of ``ids``' keys (``get_many``'s answer), in that order.

    Raises LookupError where a value is None (a log names a missing event).
    """
    if len(values) != len(ids) or None in values:
        raise LookupError("an event named by a log is missing")
    return [decode_event(id, value) for id, value in zip(ids, values)]
