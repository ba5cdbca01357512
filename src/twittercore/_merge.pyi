"""Type stub of the compiled merge kernel (``_merge.pyx``); twin: :mod:`twittercore._merge_py`.

A *run* is any contiguous buffer (``bytes``, ``bytearray``, ``memoryview``
such as py-lmdb's ``buffers=True`` values, ``array.array('Q')``, ...) of
native-endian uint64 ids in strictly ascending order; ``None`` runs are
skipped.  A *head* is a run behind a two-word header ``[floor, count]``.
Bad input raises :class:`twittercore.InvalidArgumentError`, exactly as the
twin does.
"""

from collections.abc import Iterable
from typing import Final, SupportsIndex

from typing_extensions import Buffer

MAX_ID: Final[int]
"""The largest id, ``2**64 - 1``: the default ``hi``."""

HEADER_WORDS: Final[int]
"""Words in a head's header ``[floor, count]``: 2."""

def newest(
    runs: Iterable[Buffer | None],
    limit: SupportsIndex,
    lo: SupportsIndex = 0,
    hi: SupportsIndex = ...,
) -> list[int]:
    """The ``limit`` largest distinct ids in ``(lo, hi]`` over all runs, descending.

    O(k + limit log limit) for k runs in the usual case.

    >>> newest([pack([1, 4, 9]), pack([2, 3, 10])], 3)
    [10, 9, 4]
    """

def oldest(
    runs: Iterable[Buffer | None],
    limit: SupportsIndex,
    lo: SupportsIndex = 0,
    hi: SupportsIndex = ...,
) -> list[int]:
    """The ``limit`` smallest distinct ids in ``(lo, hi]`` over all runs, ascending.

    >>> oldest([pack([1, 4, 9]), pack([2, 3, 10])], 3, lo=1)
    [2, 3, 4]
    """

def newest_floored(
    heads: Iterable[Buffer | None],
    limit: SupportsIndex,
    lo: SupportsIndex = 0,
    hi: SupportsIndex = ...,
) -> tuple[list[int], list[int]]:
    """:func:`newest` over the heads' runs, and the indexes of heads too short to be sure.

    A head's unloaded ids are all ``<= floor``; its index is reported when
    ``min(floor, hi) > lo`` and, if the answer is full, ``> answer[-1]``.

    >>> newest_floored([pack([0, 2, 5, 6]), pack([4, 1, 9])], 4)
    ([9, 6, 5], [1])
    """

def pack(ids: Iterable[SupportsIndex]) -> bytes:
    """Pack ints in ``[0, 2**64-1]`` as native uint64 (the run layout)."""

def unpack(buffer: Buffer) -> list[int]:
    """Unpack a buffer of native uint64 into a list of ints."""
