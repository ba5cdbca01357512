"""The pure-Python reference store: the executable specification (G5).

Plain dicts, sets and lists under one lock, written to be obviously correct
rather than fast; every other backend is tested against it.  It keeps the full
follow history so that ``tail`` can tell, for any event, whether a sink
followed its source when the event was published.

>>> import twittercore
>>> with twittercore.open(":memory:") as store:
...     store.follow(1, 2)
...     e = store.publish(2, b"hi")
...     [x.payload for x in store.home(1)]
True
[b'hi']
"""

from __future__ import annotations

import bisect
import threading
import time as _time
from collections.abc import Callable

from .. import _idempotency, _kernel, _options
from .._types import Deletion, Event
from ..store import Change, Store

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """In-memory store.  The common options of :func:`twittercore.open` are
    checked like every backend's; the strategy ones change nothing here (every
    strategy answers alike, G5), and ``durable`` cannot apply to memory.
    """

    def __init__(self, *, clock: Callable[[], float] = _time.time, **options: object) -> None:
        _options.check("memory", options, _options.COMMON - {"clock"})
        _options.strategy(options)
        if "durable" in options:
            _options.flag("durable", options["durable"])
        if options.get("kernel") is not None:
            _kernel.select(options["kernel"])  # type: ignore[arg-type]
        self._clock = _options.clock(clock)
        self._retention = _options.seconds(
            "key_retention", options.get("key_retention", _idempotency.DEFAULT_RETENTION)
        )
        self._keys: dict[tuple[int, bytes], tuple[int, float]] = {}  # (source, key) -> (id, recorded at)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._seq = 0
        self._out: dict[int, set[int]] = {}  # sink -> sources
        self._in: dict[int, set[int]] = {}  # source -> sinks
        self._logs: dict[int, list[int]] = {}  # source -> ascending ids
        self._events: dict[int, Event] = {}
        self._all_ids: list[int] = []  # every id ever published (deleted too), ascending
        # sink -> [(seq, source, now_following)] in seq order
        self._edge_history: dict[int, list[tuple[int, int, bool]]] = {}
        self._deletions: list[tuple[int, int, int]] = []  # (seq, id, source)

    def _close(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    # ----------------------------------------------------------------- graph

    def _follow_many(self, pairs: list[tuple[int, int]]) -> int:
        with self._changed:
            new = 0
            for sink, source in pairs:
                if source in self._out.get(sink, ()):
                    continue
                self._out.setdefault(sink, set()).add(source)
                self._in.setdefault(source, set()).add(sink)
                self._edge_history.setdefault(sink, []).append((self._next(), source, True))
                new += 1
            if new:
                self._changed.notify_all()
            return new

    def _unfollow_many(self, pairs: list[tuple[int, int]]) -> int:
        with self._changed:
            gone = 0
            for sink, source in pairs:
                if source not in self._out.get(sink, ()):
                    continue
                self._out[sink].discard(source)
                self._in[source].discard(sink)
                self._edge_history[sink].append((self._next(), source, False))
                gone += 1
            if gone:
                self._changed.notify_all()
            return gone

    def _is_following(self, sink: int, source: int) -> bool:
        with self._lock:
            return source in self._out.get(sink, ())

    @staticmethod
    def _paged(nodes: set[int], limit: int | None, after: int | None) -> list[int]:
        ordered = sorted(n for n in nodes if after is None or n > after)
        return ordered if limit is None else ordered[:limit]

    def _sources(self, sink: int, limit: int | None, after: int | None) -> list[int]:
        with self._lock:
            return self._paged(self._out.get(sink, set()), limit, after)

    def _sinks(self, source: int, limit: int | None, after: int | None) -> list[int]:
        with self._lock:
            return self._paged(self._in.get(source, set()), limit, after)

    def _source_count(self, sink: int) -> int:
        with self._lock:
            return len(self._out.get(sink, ()))

    def _sink_count(self, source: int) -> int:
        with self._lock:
            return len(self._in.get(source, ()))

    # ---------------------------------------------------------------- events

    def _publish_many(self, items: list[tuple[int, bytes]], keys: list[bytes | None] | None) -> list[Event]:
        with self._changed:
            now = self._clock()
            if keys is None:
                return self._append(items, now)
            plan = _idempotency.plan(items, keys, lambda source, key: self._recorded(source, key, now))
            old = {}
            for index, id in plan.recorded.items():
                if id not in self._events:
                    raise _idempotency.missing(items[index][0], keys[index], id)  # type: ignore[arg-type]
                old[id] = self._events[id]
            fresh = self._append([items[i] for i in plan.fresh], now) if plan.fresh else []
            for index, event in zip(plan.fresh, fresh):
                key = keys[index]
                if key is not None:
                    self._keys.pop((event.source, key), None)  # re-inserted last: oldest stay first
                    self._keys[(event.source, key)] = (event.id, now)
            self._forget(now)
            return plan.answer(fresh, old)

    def _forget(self, now: float) -> None:
        """Drop expired keys from the oldest end (insertion order is record order)."""
        while self._keys:
            entry = next(iter(self._keys))
            if self._keys[entry][1] >= now - self._retention:
                break
            del self._keys[entry]

    def _recorded(self, source: int, key: bytes, now: float) -> int | None:
        found = self._keys.get((source, key))
        if found is None or found[1] < now - self._retention:
            return None
        return found[0]

    def _append(self, items: list[tuple[int, bytes]], now: float) -> list[Event]:
        published = []
        for source, payload in items:
            event = Event(self._next(), source, payload, now)
            self._events[event.id] = event
            self._all_ids.append(event.id)
            self._logs.setdefault(source, []).append(event.id)
            published.append(event)
        self._changed.notify_all()
        return published

    def _event(self, id: int) -> Event | None:
        with self._lock:
            return self._events.get(id)

    def _delete(self, id: int) -> Event | None:
        with self._changed:
            event = self._events.pop(id, None)
            if event is not None:
                self._logs[event.source].remove(id)
                self._deletions.append((self._next(), id, event.source))
                self._changed.notify_all()
            return event

    def _timeline_count(self, source: int) -> int:
        with self._lock:
            return len(self._logs.get(source, ()))

    def _last_seq(self) -> int:
        with self._lock:
            return self._seq

    # ----------------------------------------------------------------- reads

    def _page_of(self, ids: list[int], limit: int, lo: int, hi: int, oldest: bool) -> list[Event]:
        chosen = sorted(i for i in ids if lo < i <= hi)
        chosen = chosen[:limit] if oldest else chosen[-limit:]
        return [self._events[i] for i in reversed(chosen)]

    def _timeline(self, source: int, limit: int, lo: int, hi: int, oldest: bool) -> list[Event]:
        with self._lock:
            return self._page_of(self._logs.get(source, []), limit, lo, hi, oldest)

    def _home(self, sink: int, limit: int, lo: int, hi: int, oldest: bool) -> list[Event]:
        with self._lock:
            ids = [i for source in self._out.get(sink, ()) for i in self._logs.get(source, ())]
            return self._page_of(ids, limit, lo, hi, oldest)

    # ------------------------------------------------------------------ live

    def _followed_at(self, sink: int, source: int, position: int) -> bool:
        """Did ``sink`` follow ``source`` just before ``position`` in the total order?"""
        state = False
        for seq, src, following in self._edge_history.get(sink, ()):
            if seq >= position:
                break
            if src == source:
                state = following
        return state

    def _changes(self, sink: int, after: int, limit: int) -> tuple[list[Change], int]:
        with self._lock:
            items: list[tuple[int, Change]] = []
            start = bisect.bisect_right(self._all_ids, after)
            for id in self._all_ids[start:]:
                event = self._events.get(id)  # deleted events vanish; their notice remains
                if event is not None and self._followed_at(sink, event.source, id):
                    items.append((id, event))
            for seq, id, source in self._deletions:
                if seq > after and self._followed_at(sink, source, id):  # pragma: no branch
                    items.append((seq, Deletion(seq, id, source)))
            items.sort(key=lambda pair: pair[0])
            if len(items) > limit:
                items = items[:limit]
                return [item for _, item in items], items[-1][0]
            return [item for _, item in items], self._seq

    def _wait(self, after: int, timeout: float | None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._seq > after or self._closed, timeout)

    # -------------------------------------------------------------- checking

    def _check(self) -> None:
        with self._lock:
            for sink, sources in self._out.items():
                for source in sources:
                    assert sink in self._in[source], (sink, source)
            for source, sinks in self._in.items():
                for sink in sinks:
                    assert source in self._out[sink], (sink, source)
            for source, log in self._logs.items():
                assert log == sorted(set(log)), source
                for id in log:
                    assert self._events[id].source == source
            assert sum(map(len, self._logs.values())) == len(self._events)
            assert all(0 < i <= self._seq for i in self._events)
