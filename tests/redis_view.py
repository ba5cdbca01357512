"""A Redis store seen through the reference store's ids, for the G5 state machine.

Redis ids are ``clock << 10 | bucket``, not 1, 2, 3...; G5 asks for the same
answers *except the ids*.  The view pairs every Redis position with the
reference's position for the same step (each event id from the paired publish
results; every other position from ``last_id`` right after the step, which
the state machine checks after each rule), translates bounds given in
reference ids into Redis ids that select the same events, and translates
answers back.  An unpaired Redis position (a mutation the reference did not
make) or a reference position Redis did not take shows up as a difference.
"""

from __future__ import annotations

from bisect import bisect_right

import twittercore
from twittercore import Deletion, Event

MAX = (1 << 64) - 1
#: Marks a position Redis took that the reference did not (never equals a real answer).
UNPAIRED = -1


class RedisView:
    def __init__(self, store, shared: dict) -> None:
        self.raw = store
        self.shared = shared  # shared["result"]: the reference's answer to the current step
        self.to_ref: dict[int, int] = {}
        self.ref_events: list[int] = []  # reference event ids, ascending
        self.redis_of: dict[int, int] = {}  # reference event id -> Redis id
        # Every paired position (events and last_id answers), for bounds and cursors:
        # a cursor taken after an unfollow must not map back to the event before it.
        self.ref_positions: list[int] = []
        self.redis_at: dict[int, int] = {}

    def __getattr__(self, name):
        return getattr(self.raw, name)

    # --------------------------------------------------------- translation

    def _pair_events(self, mine, theirs) -> None:
        for a, b in zip(mine, theirs):
            if a.id not in self.to_ref:
                self.to_ref[a.id] = b[0]
                self.redis_of[b[0]] = a.id
                self.ref_events.insert(bisect_right(self.ref_events, b[0]), b[0])
                self._pair(a.id, b[0])

    def _pair(self, redis_position: int, ref_position: int) -> None:
        if ref_position not in self.redis_at:
            self.redis_at[ref_position] = redis_position
            self.ref_positions.insert(bisect_right(self.ref_positions, ref_position), ref_position)

    def _bound(self, x):
        """A Redis bound selecting the events the reference bound ``x`` selects."""
        if x is None or x == MAX:
            return x
        n = bisect_right(self.ref_positions, x)
        return 0 if n == 0 else self.redis_at[self.ref_positions[n - 1]]

    def _id(self, x: int) -> int:
        return self.redis_of.get(x, 0)  # an unknown id: one no Redis event has

    def _out(self, value):
        if isinstance(value, Event):
            return Event(self.to_ref.get(value.id, UNPAIRED), value.source, value.payload, value.time)
        if isinstance(value, Deletion):
            return Deletion(self.to_ref.get(value.seq, UNPAIRED), self.to_ref.get(value.id, UNPAIRED), value.source)
        if isinstance(value, (list, tuple)) or type(value).__name__ == "EventBatch":
            return [self._out(v) for v in value]
        return value

    # ------------------------------------------------------------ the API

    def publish(self, source, payload, key=None):
        event = self.raw.publish(source, payload, key=key)
        self._pair_events([event], [self.shared["result"]])
        return self._out(event)

    def publish_many(self, items):
        events = self.raw.publish_many(items)
        self._pair_events(events, self.shared["result"])
        return self._out(events)

    def delete(self, id):
        return self._out(self.raw.delete(self._id(id)))

    def event(self, id):
        return self._out(self.raw.event(self._id(id)))

    def home(self, sink, limit=20, max_id=None, since_id=None, min_id=None):
        b = self._bound
        return self._out(self.raw.home(sink, limit=limit, max_id=b(max_id), since_id=b(since_id), min_id=b(min_id)))

    def timeline(self, source, limit=20, max_id=None, since_id=None, min_id=None):
        b = self._bound
        return self._out(
            self.raw.timeline(source, limit=limit, max_id=b(max_id), since_id=b(since_id), min_id=b(min_id))
        )

    def last_id(self):
        position = self.raw.last_id()
        if position == 0:
            return 0
        if position not in self.to_ref:
            expected = self.shared["result"]
            if expected in self.to_ref.values():
                return UNPAIRED
            self.to_ref[position] = expected
            self._pair(position, expected)
        return self.to_ref[position]

    def drain(self, sink, after, limit=3):
        """Every change after reference position ``after``, in Redis cursors."""
        cursor = self._bound(after) if after else 0
        items = []
        while True:
            batch, next_cursor = self.raw.changes(sink, cursor, limit=limit)
            items.extend(batch)
            if next_cursor == cursor or (not batch and next_cursor >= self.raw.last_id()):
                return self._out(items)
            cursor = next_cursor


def wipe(cluster, namespace: str) -> None:
    """Delete one namespace's keys from every master."""
    import redis

    for port in cluster.master_ports():
        client = redis.Redis(host="127.0.0.1", port=port)
        try:
            keys = list(client.scan_iter(match=f"{{{namespace}.*", count=1000))
            for key in keys:
                try:
                    client.unlink(key)
                except redis.ResponseError:
                    pass  # moved meanwhile
        finally:
            client.close()


__all__ = ["RedisView", "wipe", "twittercore"]


class WriterKilled(BaseException):
    """A writer's death, as far as the store can tell: nothing catches it."""


def follow_cut_short(store, sink: int, source: int) -> bool:
    """``store.follow(sink, source)`` with its writer dying after the first of its writes (the
    sink side), before the source side and any window backfill.  True if it died there; False
    if the follow had nothing to write (the edge existed)."""
    writes = 0

    def dying(calls):
        nonlocal writes
        writes += 1
        if writes == 2:
            raise WriterKilled
        return type(store)._write(store, calls)

    store._write = dying
    try:
        store.follow(sink, source)
        return False
    except WriterKilled:
        return True
    finally:
        del store._write
