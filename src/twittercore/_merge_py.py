"""Pure-Python twin of :mod:`twittercore._merge` (same functions, same answers).

Selected by ``TWITTERCORE_NO_EXTENSIONS=1``; the test-suite runs every merge
test against both.  The layouts it reads are the store's on-disk ones:

* a *run* is a buffer of native-endian ``uint64`` ids in ascending order;
* a *head* is a run preceded by a two-word header ``[floor, count]``: every id
  of that stream that is *not* in the buffer is ``<= floor`` (0: none), and
  ``count`` is bookkeeping the kernel ignores.
"""

from __future__ import annotations

import heapq
import struct
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

MAX_ID = (1 << 64) - 1
HEADER_WORDS = 2

_U64 = struct.Struct("=Q")


def _ids(buffer: Any) -> Sequence[int]:
    return memoryview(buffer).cast("B").cast("Q")


def _window(ids: Sequence[int], lo: int, hi: int) -> tuple[int, int]:
    """Slice [start, stop) of the ascending ``ids`` that lie in (lo, hi]."""
    return bisect_right(ids, lo), bisect_right(ids, hi)


def newest(runs: Sequence[Any], limit: int, lo: int = 0, hi: int = MAX_ID) -> list[int]:
    """The ``limit`` largest distinct ids in ``(lo, hi]`` over all runs, descending.

    O(k log k + limit log k) for k runs.

    >>> newest([pack([1, 4, 9]), pack([2, 3, 10])], 3)
    [10, 9, 4]
    >>> newest([pack([1, 4, 9]), pack([2, 3, 10])], 10, lo=2, hi=9)
    [9, 4, 3]
    """
    streams = []
    for run in runs:
        if run is None:
            continue
        ids = _ids(run)
        start, stop = _window(ids, lo, hi)
        streams.append(reversed(ids[max(start, stop - limit):stop]))
    return _take(heapq.merge(*streams, reverse=True), limit)


def oldest(runs: Sequence[Any], limit: int, lo: int = 0, hi: int = MAX_ID) -> list[int]:
    """The ``limit`` smallest distinct ids in ``(lo, hi]`` over all runs, ascending.

    >>> oldest([pack([1, 4, 9]), pack([2, 3, 10])], 3, lo=1)
    [2, 3, 4]
    """
    streams = []
    for run in runs:
        if run is None:
            continue
        ids = _ids(run)
        start, stop = _window(ids, lo, hi)
        streams.append(iter(ids[start:min(stop, start + limit)]))
    return _take(heapq.merge(*streams), limit)


def _take(merged: Any, limit: int) -> list[int]:
    out: list[int] = []
    for id in merged:
        if out and out[-1] == id:
            continue
        out.append(id)
        if len(out) == limit:
            break
    return out


def newest_floored(heads: Sequence[Any], limit: int, lo: int = 0, hi: int = MAX_ID) -> tuple[list[int], list[int]]:
    """Merge heads like :func:`newest` and say which heads were too short.

    Returns ``(ids, incomplete)``: ``incomplete`` lists the indexes of heads
    whose older, unloaded ids (all ``<= floor``) could still belong in the
    answer; the caller loads more of those streams and merges again.  ``None``
    heads are skipped.

    >>> newest_floored([pack([0, 2, 5, 6]), pack([4, 1, 9])], 2)
    ([9, 6], [])
    >>> newest_floored([pack([0, 2, 5, 6]), pack([4, 1, 9])], 4)
    ([9, 6, 5], [1])
    """
    runs = []
    floors = []
    for index, head in enumerate(heads):
        if head is None:
            continue
        words = _ids(head)
        runs.append(words[HEADER_WORDS:])
        floors.append((index, min(words[0], hi)))
    ids = newest(runs, limit, lo, hi)
    full = len(ids) == limit
    incomplete = [i for i, floor in floors if floor > lo and (not full or floor > ids[-1])]
    return ids, incomplete


def pack(ids: Sequence[int]) -> bytes:
    """Pack ints as native uint64 (the run layout).

    >>> unpack(pack([1, 2, 3]))
    [1, 2, 3]
    """
    return struct.pack(f"={len(ids)}Q", *ids)


def unpack(buffer: Any) -> list[int]:
    """Unpack a buffer of native uint64 into a list of ints."""
    return list(_ids(buffer))
