"""Value types returned by every store: :class:`Event` and :class:`Deletion`."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Event", "Deletion", "MAX_NODE", "MAX_PAYLOAD", "MAX_LIMIT"]

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
