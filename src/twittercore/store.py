"""The public API every store offers, and the backend protocol behind it.

:class:`Store` checks arguments and keeps the guarantees that do not depend
on storage (validation before any change, a closed store refuses calls, the
``tail`` loop); a backend subclass implements the ``_``-prefixed methods.
Every backend answers every query identically for the same history (G5); the
pure-Python :class:`~twittercore.backends.memory.MemoryStore` is the executable
specification.

Positions: every effective mutation (each published event, each follow or
unfollow that changes the graph, each delete) takes the next number of one
store-wide sequence.  An event's id is its position.  So ids are strictly
increasing in commit order, but not dense.
"""

from __future__ import annotations

import abc
import asyncio
import threading
import time as _time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any

from . import _validate as v
from ._types import MAX_NODE, MAX_PAYLOAD, Deletion, Event
from ._waker import Waker
from .errors import ClosedError, InvalidArgumentError, NotFoundError

__all__ = ["Store", "Change"]

Change = Event | Deletion

_TAIL_BATCH = 1024
_WAKER_LOCK = threading.Lock()  # one Waker per store, whichever loop subscribes first


class Store(abc.ABC):
    """An open twittercore store.  Use it as a context manager, or call :meth:`close`.

    Node ids (sinks and sources) are unsigned 64-bit ints; any such int names a
    node, and a node without edges or events simply has empty answers.
    """

    _closed = False
    _waker: Waker | None = None  # made by the first subscribe that has to wait
    #: True when calls wait on a network (a remote engine): an event loop should
    #: run them in a thread, not inline (see the server's ``Server.run``).
    remote = False
    #: Optional compiled check that a list holds only exact (int, bytes) items
    #: within limits; when it says yes the per-item Python checks are skipped.
    _fast_items: Callable[[list[Any], int], bool] | None = None

    # ------------------------------------------------------------------ life

    def close(self) -> None:
        """Release the store's resources.  Idempotent; later calls raise :class:`ClosedError`."""
        if not self._closed:
            self._closed = True
            try:
                self._close()
            finally:
                if self._waker is not None:
                    self._waker.wake_all()  # parked subscribers see the store closed and end

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Store:
        self._live()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live(self) -> None:
        if self._closed:
            raise ClosedError(f"{type(self).__name__}: the store is closed (open it again with twittercore.open())")

    # ----------------------------------------------------------------- graph

    def follow(self, sink: int, source: int) -> bool:
        """Make ``sink`` follow ``source``.  Returns False if it already did.

        Following backfills: ``home(sink)`` at once includes ``source``'s history.
        """
        self._live()
        pair = (v.uint64(sink, "sink"), v.uint64(source, "source"))
        return self._follow_many([pair]) == 1

    def follow_many(self, pairs: Iterable[tuple[int, int]]) -> int:
        """Apply many ``(sink, source)`` follows in one transaction; returns how many were new.

        Either every pair is valid and all are applied, or none is.
        """
        self._live()
        return self._follow_many(self._pairs(pairs))

    def unfollow(self, sink: int, source: int) -> bool:
        """Stop ``sink`` following ``source``.  Returns False if it did not follow.

        ``home(sink)`` at once loses ``source``'s events, as on Twitter.
        """
        self._live()
        pair = (v.uint64(sink, "sink"), v.uint64(source, "source"))
        return self._unfollow_many([pair]) == 1

    def unfollow_many(self, pairs: Iterable[tuple[int, int]]) -> int:
        """Apply many ``(sink, source)`` unfollows in one transaction; returns how many existed."""
        self._live()
        return self._unfollow_many(self._pairs(pairs))

    def is_following(self, sink: int, source: int) -> bool:
        self._live()
        return self._is_following(v.uint64(sink, "sink"), v.uint64(source, "source"))

    def sources(self, sink: int, limit: int | None = None, after: int | None = None) -> list[int]:
        """The sources ``sink`` follows, ascending, at most ``limit``, those ``> after``.

        Page through millions with ``after=page[-1]``.
        """
        self._live()
        return self._sources(v.uint64(sink, "sink"), *self._page(limit, after))

    def sinks(self, source: int, limit: int | None = None, after: int | None = None) -> list[int]:
        """The sinks following ``source`` (its followers), ascending, paged like :meth:`sources`."""
        self._live()
        return self._sinks(v.uint64(source, "source"), *self._page(limit, after))

    def source_count(self, sink: int) -> int:
        """How many sources ``sink`` follows."""
        self._live()
        return self._source_count(v.uint64(sink, "sink"))

    def sink_count(self, source: int) -> int:
        """How many sinks follow ``source``."""
        self._live()
        return self._sink_count(v.uint64(source, "source"))

    # ---------------------------------------------------------------- events

    def publish(self, source: int, payload: bytes, key: bytes | str | None = None) -> Event:
        """Append ``payload`` to ``source``'s log and return the committed :class:`Event`.

        ``key`` makes the publish idempotent: a retry with the same ``key`` for
        the same ``source`` returns the event the first call committed (same
        id, time and payload) and publishes nothing, across processes and
        crashes, for as long as the store's ``key_retention`` (seconds, an
        :func:`twittercore.open` option, default one day); after that the key
        may be forgotten.  The key is recorded in the same transaction as the
        event, so no crash leaves one without the other.  A retry whose
        original event was deleted since raises :class:`NotFoundError` and
        publishes nothing.

        >>> import twittercore
        >>> with twittercore.open(":memory:") as store:
        ...     first = store.publish(7, b"hello", key="a1b2")
        ...     again = store.publish(7, b"hello", key="a1b2")
        ...     first == again, store.timeline_count(7)
        (True, 1)

        Runtime complexity: O(log n) for n events, plus the fan-out strategy's cost.
        """
        self._live()
        item = (v.uint64(source, "source"), v.payload(payload))
        return self._publish_many([item], None if key is None else [v.key(key)])[0]

    def publish_many(
        self, items: Iterable[tuple[int, bytes] | tuple[int, bytes, bytes | str | None]]
    ) -> Sequence[Event]:
        """Publish many ``(source, payload)`` or ``(source, payload, key)`` in one transaction.

        Ids follow the given order.  All items are checked first: either all
        are published or none is.  A key already recorded for its source (see
        :meth:`publish`) returns its original event in that place; a key given
        twice in one call publishes once.
        """
        self._live()
        items = v.items(items, "items")
        if self._fast_items is not None and self._fast_items(items, MAX_PAYLOAD):
            return self._publish_many(items, None) if items else []
        checked = []
        keys: list[bytes | None] = []
        for n, item in enumerate(items):
            key = None
            if type(item) is tuple and len(item) == 3:
                source, payload, key = item
            else:
                source, payload = v.pair(item, f"items[{n}] (source, payload) or (source, payload, key)")
            checked.append((v.uint64(source, f"items[{n}] source"), v.payload(payload, f"items[{n}] payload")))
            keys.append(None if key is None else v.key(key, f"items[{n}] key"))
        if not checked:
            return []
        return self._publish_many(checked, keys if any(k is not None for k in keys) else None)

    def event(self, id: int) -> Event:
        """The event with this id; :class:`NotFoundError` if it never existed or was deleted."""
        self._live()
        found = self._event(v.uint64(id, "id"))
        if found is None:
            raise NotFoundError(f"event {id}: no such event (it was never published, or deleted)")
        return found

    def delete(self, id: int) -> Event:
        """Delete an event everywhere; returns it.  Tail subscribers get a :class:`Deletion`."""
        self._live()
        found = self._delete(v.uint64(id, "id"))
        if found is None:
            raise NotFoundError(f"event {id}: no such event (it was never published, or deleted)")
        return found

    def timeline_count(self, source: int) -> int:
        """How many (undeleted) events ``source`` has published."""
        self._live()
        return self._timeline_count(v.uint64(source, "source"))

    def last_id(self) -> int:
        """The newest position in the store's total order (0 for an empty store)."""
        self._live()
        return self._last_seq()

    # ----------------------------------------------------------------- reads

    def timeline(
        self,
        source: int,
        limit: int = 20,
        max_id: int | None = None,
        since_id: int | None = None,
        min_id: int | None = None,
    ) -> list[Event]:
        """``source``'s own events, newest first, with Twitter/Mastodon paging.

        ``max_id`` is inclusive and ``since_id`` exclusive; ``min_id`` (exclusive)
        asks for the *oldest* ``limit`` events above it, still newest first.
        """
        self._live()
        source = v.uint64(source, "source")
        return self._timeline(source, v.limit(limit), *v.bounds(max_id, since_id, min_id))

    def home(
        self,
        sink: int,
        limit: int = 20,
        max_id: int | None = None,
        since_id: int | None = None,
        min_id: int | None = None,
    ) -> list[Event]:
        """The merge of the logs of the sources ``sink`` follows now, newest first.

        Read from one snapshot (G4); paging as in :meth:`timeline`.
        """
        self._live()
        sink = v.uint64(sink, "sink")
        return self._home(sink, v.limit(limit), *v.bounds(max_id, since_id, min_id))

    # ------------------------------------------------------------------ live

    def changes(self, sink: int, after: int, limit: int = _TAIL_BATCH) -> tuple[list[Change], int]:
        """One non-blocking step of :meth:`tail`: ``(items, cursor)``.

        ``items`` are the events (and deletion notices) for ``sink`` with
        position ``> after``, in order, from one snapshot; resume with
        ``after=cursor``.  No item at a position ``<= cursor`` can appear later.
        """
        self._live()
        return self._changes(v.uint64(sink, "sink"), v.uint64(after, "after"), v.limit(limit))

    def wait(self, after: int, timeout: float | None = None) -> bool:
        """Block until the store's last position passes ``after`` (any change, any process).

        Returns False when ``timeout`` seconds pass first.  For servers that
        multiplex many subscribers over one waiter and call :meth:`changes`.
        """
        self._live()
        return self._wait(v.uint64(after, "after"), v.timeout(timeout))

    def tail(self, sink: int, after: int | None = None, timeout: float | None = None) -> Iterator[Change]:
        """Yield, in id order and forever, each event whose source ``sink`` followed
        when it was published, and a :class:`Deletion` for each such event deleted.

        ``after`` is the position to resume from (default: now).  ``timeout``
        bounds the wait for the *next* item in seconds; when it passes with
        nothing new the iterator ends.  Wakes within milliseconds of a publish
        by another thread or process.
        """
        self._live()
        sink = v.uint64(sink, "sink")
        cursor = self._last_seq() if after is None else v.uint64(after, "after")
        return self._tail(sink, cursor, v.timeout(timeout))

    def _tail(self, sink: int, cursor: int, timeout: float | None) -> Iterator[Change]:
        deadline = None if timeout is None else _time.monotonic() + timeout
        while not self._closed:
            items, cursor = self._changes(sink, cursor, _TAIL_BATCH)
            if items:
                yield from items
                deadline = None if timeout is None else _time.monotonic() + timeout
                continue
            remaining = None if deadline is None else deadline - _time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            self._wait(cursor, remaining)

    async def subscribe(self, sink: int, after: int | None = None, poll: float | None = None) -> AsyncIterator[Change]:
        """``async for`` twin of :meth:`tail` (ends only when the store closes).

        A subscriber with nothing new parks a future that one thread per store
        resolves when a commit (of any process) moves the store past its
        cursor, so idle subscribers cost nothing and the event loop never
        blocks.  ``poll``, if given, also re-reads every ``poll`` seconds (a
        safety net; correctness never needs it).
        """
        self._live()
        sink = v.uint64(sink, "sink")
        poll = v.timeout(poll)
        cursor = self._last_seq() if after is None else v.uint64(after, "after")
        while not self._closed:
            items, cursor = self._changes(sink, cursor, _TAIL_BATCH)
            if items:
                for item in items:
                    yield item
                continue
            with _WAKER_LOCK:
                if self._waker is None:
                    self._waker = Waker(self._wait, lambda: self._closed)
                waker = self._waker
            woken = waker.park(cursor)
            try:
                await asyncio.wait_for(asyncio.shield(woken), poll)
            except TimeoutError:
                pass
            finally:
                waker.unpark(woken)

    # -------------------------------------------------------------- checking

    @abc.abstractmethod
    def _check(self) -> None:
        """Assert the backend's internal invariants (tests call this)."""

    # --------------------------------------------------------------- helpers

    @staticmethod
    def _pairs(pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        listed = v.items(pairs, "pairs")
        top = MAX_NODE
        # The common case in one pass of C-level checks (a bulk load sends
        # millions); anything else gets the per-item checks and their messages.
        if all(
            type(p) is tuple
            and len(p) == 2
            and type(p[0]) is int
            and type(p[1]) is int
            and 0 <= p[0] <= top >= p[1] >= 0
            for p in listed
        ):
            return list(listed)
        checked = []
        for n, pair in enumerate(listed):
            sink, source = v.pair(pair, f"pairs[{n}] (sink, source)")
            checked.append((v.uint64(sink, f"pairs[{n}] sink"), v.uint64(source, f"pairs[{n}] source")))
        return checked

    @staticmethod
    def _page(limit: Any, after: Any) -> tuple[int | None, int | None]:
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
                raise InvalidArgumentError(f"limit: expected a positive int or None, got {v._describe(limit)}")
        return limit, v.optional_uint64(after, "after")

    # ------------------------------------------------------ backend protocol
    # Arguments arrive checked.  Reads take (lo, hi, oldest): ids in (lo, hi];
    # oldest=True selects the oldest `limit` of them.  Results are newest first.
    # Every method is abstract: a backend that misses one cannot be instantiated.

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _follow_many(self, pairs: list[tuple[int, int]]) -> int: ...

    @abc.abstractmethod
    def _unfollow_many(self, pairs: list[tuple[int, int]]) -> int: ...

    @abc.abstractmethod
    def _is_following(self, sink: int, source: int) -> bool: ...

    @abc.abstractmethod
    def _sources(self, sink: int, limit: int | None, after: int | None) -> list[int]: ...

    @abc.abstractmethod
    def _sinks(self, source: int, limit: int | None, after: int | None) -> list[int]: ...

    @abc.abstractmethod
    def _source_count(self, sink: int) -> int: ...

    @abc.abstractmethod
    def _sink_count(self, source: int) -> int: ...

    @abc.abstractmethod
    def _publish_many(self, items: list[tuple[int, bytes]], keys: list[bytes | None] | None) -> Sequence[Event]:
        """Commit ``items`` atomically; ``keys`` is None or one key (or None) per item.

        A key already recorded for its source within the retention returns the
        recorded event in its place (NotFoundError, changing nothing, if that
        event was deleted); a key repeated within ``items`` publishes once.
        """

    @abc.abstractmethod
    def _event(self, id: int) -> Event | None: ...

    @abc.abstractmethod
    def _delete(self, id: int) -> Event | None: ...

    @abc.abstractmethod
    def _timeline_count(self, source: int) -> int: ...

    @abc.abstractmethod
    def _last_seq(self) -> int: ...

    @abc.abstractmethod
    def _timeline(self, source: int, limit: int, lo: int, hi: int, oldest: bool) -> list[Event]: ...

    @abc.abstractmethod
    def _home(self, sink: int, limit: int, lo: int, hi: int, oldest: bool) -> list[Event]: ...

    @abc.abstractmethod
    def _changes(self, sink: int, after: int, limit: int) -> tuple[list[Change], int]: ...

    @abc.abstractmethod
    def _wait(self, after: int, timeout: float | None) -> bool: ...
