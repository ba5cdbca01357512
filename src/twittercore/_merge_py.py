"""Pure-Python twin of :mod:`twittercore._merge` (same functions, same answers).

Selected by ``TWITTERCORE_NO_EXTENSIONS=1``; the test-suite runs every merge
test against both.  The layouts it reads are the store's on-disk ones:

* a *run* is a contiguous buffer (``bytes``, ``bytearray``, ``memoryview``,
  ``array('Q')``...) of native-endian ``uint64`` ids in strictly ascending
  order (one stream's ids; the same id may sit in several runs, and answers
  hold it once); ``None`` in a list of runs is skipped;
* a *head* is a run preceded by a two-word header ``[floor, count]``: every id
  of that stream that is *not* in the buffer is ``<= floor`` (0: none), and
  ``count`` is bookkeeping the kernel ignores.

Bad input raises :class:`~twittercore.errors.InvalidArgumentError` (a
``ValueError``), in the compiled module too: a ``limit`` that is not a
positive int, bounds outside ``[0, 2**64-1]``, a run that is not a buffer or
whose length is not a multiple of 8, a head shorter than its header.
"""

from __future__ import annotations

import heapq
import operator
import struct
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from .errors import InvalidArgumentError

MAX_ID = (1 << 64) - 1
HEADER_WORDS = 2


def _ids(buffer: Any, what: str) -> Sequence[int]:
    """The uint64 ids of ``buffer``, zero-copy; ``what`` names it in errors."""
    try:
        view = memoryview(buffer).cast("B")
    except (TypeError, ValueError, BufferError) as exc:
        raise InvalidArgumentError(
            f"{what}: expected a buffer of packed uint64 ids, got {type(buffer).__name__} ({exc})"
        ) from None
    if view.nbytes & 7:
        raise InvalidArgumentError(
            f"{what}: {view.nbytes} bytes is not a whole number of 8-byte ids (pack runs with pack())"
        )
    return view.cast("Q")


def _limit(limit: Any) -> int:
    try:
        checked = operator.index(limit)
    except TypeError:
        raise InvalidArgumentError(f"limit: expected an int, got {type(limit).__name__}") from None
    if checked <= 0:
        raise InvalidArgumentError(f"limit: must be positive, got {checked}")
    return checked


def _bound(value: Any, name: str) -> int:
    try:
        checked = operator.index(value)
    except TypeError:
        raise InvalidArgumentError(f"{name}: expected an int, got {type(value).__name__}") from None
    if not 0 <= checked <= MAX_ID:
        raise InvalidArgumentError(f"{name}: must be in [0, 2**64-1], got {checked}")
    return checked


def _check(runs: Any, limit: Any, lo: Any, hi: Any) -> tuple[list[Any], int, int, int]:
    """Validate what every merge takes, in the compiled module's order."""
    limit, lo, hi = _limit(limit), _bound(lo, "lo"), _bound(hi, "hi")
    try:
        runs = list(runs)
    except TypeError:
        raise InvalidArgumentError(f"runs: expected a sequence of buffers, got {type(runs).__name__}") from None
    return runs, limit, lo, hi


def _window(ids: Sequence[int], lo: int, hi: int) -> tuple[int, int]:
    """Slice [start, stop) of the ascending ``ids`` that lie in (lo, hi]."""
    return bisect_right(ids, lo), bisect_right(ids, hi)


def newest(runs: Sequence[Any], limit: int, lo: int = 0, hi: int = MAX_ID) -> list[int]:
    """The ``limit`` largest distinct ids in ``(lo, hi]`` over all runs, descending.

    ``None`` runs are skipped.  O(k log k + limit log k) for k runs.

    >>> newest([pack([1, 4, 9]), pack([2, 3, 10])], 3)
    [10, 9, 4]
    >>> newest([pack([1, 4, 9]), None, pack([2, 3, 10])], 10, lo=2, hi=9)
    [9, 4, 3]
    """
    runs, limit, lo, hi = _check(runs, limit, lo, hi)
    return _newest([None if run is None else _ids(run, f"runs[{i}]") for i, run in enumerate(runs)], limit, lo, hi)


def _newest(runs: list[Sequence[int] | None], limit: int, lo: int, hi: int) -> list[int]:
    streams = []
    for ids in runs:
        if ids is None:
            continue
        start, stop = _window(ids, lo, hi)
        streams.append(reversed(ids[max(start, stop - limit) : stop]))
    return _take(heapq.merge(*streams, reverse=True), limit)


def oldest(runs: Sequence[Any], limit: int, lo: int = 0, hi: int = MAX_ID) -> list[int]:
    """The ``limit`` smallest distinct ids in ``(lo, hi]`` over all runs, ascending.

    ``None`` runs are skipped.  O(k log k + limit log k) for k runs.

    >>> oldest([pack([1, 4, 9]), pack([2, 3, 10])], 3, lo=1)
    [2, 3, 4]
    """
    runs, limit, lo, hi = _check(runs, limit, lo, hi)
    streams = []
    for i, run in enumerate(runs):
        if run is None:
            continue
        ids = _ids(run, f"runs[{i}]")
        start, stop = _window(ids, lo, hi)
        streams.append(iter(ids[start : min(stop, start + limit)]))
    return _take(heapq.merge(*streams), limit)


def _take(merged: Any, limit: int) -> list[int]:
    """The first ``limit`` distinct items of the sorted iterator ``merged``."""
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

    Returns ``(ids, incomplete)``: ``ids`` is :func:`newest` of the heads'
    runs (the words after the header); ``incomplete`` lists, ascending, the
    indexes of heads whose older, unloaded ids (all ``<= floor``) could still
    belong in the answer, i.e. whose ``min(floor, hi)`` is ``> lo`` and, when
    ``ids`` is full, ``> ids[-1]``.  The caller loads more of those streams
    and merges again.  ``None`` heads are skipped.  O(k log k + limit log k).

    >>> newest_floored([pack([0, 2, 5, 6]), pack([4, 1, 9])], 2)
    ([9, 6], [])
    >>> newest_floored([pack([0, 2, 5, 6]), pack([4, 1, 9])], 4)
    ([9, 6, 5], [1])
    """
    heads, limit, lo, hi = _check(heads, limit, lo, hi)
    runs: list[Sequence[int] | None] = []
    floors = []
    for index, head in enumerate(heads):
        if head is None:
            continue
        words = _ids(head, f"runs[{index}]")
        if len(words) < HEADER_WORDS:
            raise InvalidArgumentError(
                f"runs[{index}]: a head needs its {HEADER_WORDS}-word header [floor, count], got {len(words)} words"
            )
        runs.append(words[HEADER_WORDS:])
        floors.append((index, min(words[0], hi)))
    ids = _newest(runs, limit, lo, hi)
    full = len(ids) == limit
    incomplete = [i for i, floor in floors if floor > lo and (not full or floor > ids[-1])]
    return ids, incomplete


def pack(ids: Sequence[int]) -> bytes:
    """Pack ints in ``[0, 2**64-1]`` as native uint64 (the run layout). O(n).

    >>> unpack(pack([1, 2, 2**64 - 1]))
    [1, 2, 18446744073709551615]
    """
    try:
        ids = list(ids)
    except TypeError:
        raise InvalidArgumentError(f"ids: expected a sequence of ints, got {type(ids).__name__}") from None
    for i, id in enumerate(ids):
        _bound(id, f"ids[{i}]")
    return struct.pack(f"={len(ids)}Q", *ids)


def unpack(buffer: Any) -> list[int]:
    """Unpack a buffer of native uint64 into a list of ints. O(n).

    >>> unpack(bytearray(pack([7, 8])))
    [7, 8]
    """
    return list(_ids(buffer, "buffer"))
