"""Idempotency keys: the part of keyed publishing every backend shares.

A backend stores ``(source, key) -> (id, recorded_at)`` in the same
transaction as the event; this module decides, for one batch, which items are
new, which repeat a recorded key, and which repeat a key earlier in the same
batch, then puts the answer together in the caller's order.  Keeping it here
gives every backend the same semantics (G5) with only the lookup and the
write of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._types import Event
from .errors import NotFoundError

__all__ = ["DEFAULT_RETENTION", "Plan", "plan", "missing"]

#: Seconds a recorded key is honoured (Mastodon keeps Idempotency-Key for one
#: hour; a client with an offline queue may retry much later, so a day).
DEFAULT_RETENTION = 86_400.0


class Plan:
    """Which items of a batch to publish (``fresh``), and what the others repeat.

    ``recorded`` maps an item's index to the id its key already names;
    ``same`` maps an item's index to the index of the earlier item in this
    batch with the same ``(source, key)``.
    """

    __slots__ = ("fresh", "recorded", "same")

    def __init__(self) -> None:
        self.fresh: list[int] = []
        self.recorded: dict[int, int] = {}
        self.same: dict[int, int] = {}

    def answer(self, events: Sequence[Event], old: dict[int, Event]) -> list[Event]:
        """The batch's answer in item order, from the published ``events``
        (one per ``fresh`` index) and the ``old`` events (by id) keys named."""
        out: list[Event | None] = [None] * (len(self.fresh) + len(self.recorded) + len(self.same))
        for index, event in zip(self.fresh, events):
            out[index] = event
        for index, id in self.recorded.items():
            out[index] = old[id]
        for index, first in sorted(self.same.items()):
            out[index] = out[first]
        return out  # type: ignore[return-value]


def plan(
    items: Sequence[tuple[int, bytes]],
    keys: Sequence[bytes | None],
    lookup: Callable[[int, bytes], int | None],
) -> Plan:
    """Sort a batch into new items and repeats; ``lookup(source, key)`` is the
    backend's read of a recorded, unexpired key (the id, or None).

    Runtime complexity: O(n) lookups for n keyed items.
    """
    result = Plan()
    first: dict[tuple[int, bytes], int] = {}
    for index, ((source, _), key) in enumerate(zip(items, keys)):
        if key is None:
            result.fresh.append(index)
            continue
        seen = first.get((source, key))
        if seen is not None:
            result.same[index] = seen
            continue
        first[(source, key)] = index
        id = lookup(source, key)
        if id is None:
            result.fresh.append(index)
        else:
            result.recorded[index] = id
    return result


def missing(source: int, key: bytes, id: int) -> NotFoundError:
    """The error for a retry whose original event was deleted since."""
    return NotFoundError(
        f"publish: key {key!r} of source {source} was used by event {id}, which has been deleted "
        "(nothing was published; use a new key to publish again)"
    )
