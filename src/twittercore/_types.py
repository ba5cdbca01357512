"""Value types returned by every store: :class:`Event` and :class:`Deletion`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, overload

__all__ = ["Event", "EventBatch", "Deletion", "MAX_NODE", "MAX_PAYLOAD", "MAX_LIMIT"]

#: Node ids and event ids are unsigned 64-bit integers.
MAX_NODE = (1 << 64) - 1
#: Largest payload accepted by ``publish``, in bytes (64 KiB: 400 tweets of 160 chars).
MAX_PAYLOAD = 64 * 1024
#: Largest page a read may ask for.
MAX_LIMIT = 10_000


class Event(NamedTuple):
    """One published event.

    ``id`` is the event's position in the store's single total order: strictly
    increasing over the whole store in commit order.  ``time`` is the wall
    clock (seconds since the epoch) of the publish; it orders nothing.

    >>> e = Event(7, 42, b"hello", 0.0)
    >>> e.id, e.source, e.payload
    (7, 42, b'hello')
    >>> e.position
    7
    """

    id: int
    source: int
    payload: bytes
    time: float

    @property
    def position(self) -> int:
        """Where this item sits in the total order; resume a tail with ``after=position``."""
        return self.id


class Deletion(NamedTuple):
    """A notice, delivered by ``tail``, that event ``id`` of ``source`` was deleted.

    ``seq`` is the position of the delete in the store's total order (deletes,
    follows and unfollows take positions too, so ``seq > id``).
    """

    seq: int
    id: int
    source: int

    @property
    def position(self) -> int:
        """Where this notice sits in the total order; resume with ``after=position``."""
        return self.seq


class EventBatch(Sequence[Event]):
    """The events of one ``publish_many``: a read-only sequence built lazily.

    A batch takes consecutive ids, so the batch keeps only the first id, the
    caller's ``(source, payload)`` items and the commit time; materialising a
    million :class:`Event` tuples would cost more than committing them.

    >>> batch = EventBatch(10, [(1, b"a"), (2, b"b")], 0.0)
    >>> len(batch), batch[1].id, batch[-1].payload
    (2, 11, b'b')
    >>> list(batch) == [Event(10, 1, b"a", 0.0), Event(11, 2, b"b", 0.0)]
    True
    """

    __slots__ = ("_first", "_items", "_time")

    def __init__(self, first_id: int, items: Sequence[tuple[int, bytes]], time: float) -> None:
        self._first = first_id
        self._items = items
        self._time = time

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...
    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        if type(index) is int and 0 <= index < len(self._items):
            source, payload = self._items[index]
            return Event(self._first + index, source, payload, self._time)
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._items)))]
        n = range(len(self._items))[index]  # IndexError and negative indexes as for lists
        source, payload = self._items[n]
        return Event(self._first + n, source, payload, self._time)

    @property
    def ids(self) -> range:
        """The ids of the batch, ascending."""
        return range(self._first, self._first + len(self._items))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (EventBatch, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"EventBatch(ids={self._first}..{self._first + len(self._items) - 1})"
