"""Record what an embedded run did and saw, so ``twittercore verify`` can check it.

:class:`Recorder` wraps a store and offers the same API; each call goes to the
store, and its outcome is written to a :class:`~twittercore.checking.history.HistoryWriter`:
acknowledged publishes, follows, unfollows and deletes, every page read
(``home``, ``timeline``) and every batch of tail deliveries (``tail``,
``changes``, ``subscribe``).  Calls that change nothing observable
(``sources``, ``event``, counts, ...) pass straight through.

Threads may share one Recorder (the writer serialises lines; each record
carries ``t0``/``t`` from a clock shared by all processes).  Processes each
write their own file and the verifier merges them: ``twittercore verify
a.jsonl b.jsonl``.

>>> import io, twittercore
>>> from twittercore.checking.history import HistoryWriter
>>> from twittercore.checking.verify import verify
>>> buffer = io.StringIO()
>>> with twittercore.open(":memory:") as store:
...     rec = Recorder(store, HistoryWriter(buffer))
...     rec.follow(1, 2)
...     e = rec.publish(2, b"hi")
...     [x.payload for x in rec.home(1)]
True
[b'hi']
>>> verify([io.StringIO(buffer.getvalue())]).ok
True
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from array import array
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

from .._types import Event
from ..store import Change, Store
from .history import HistoryWriter

__all__ = ["Recorder"]

_streams = itertools.count(1)  # tail streams of this process; next() is atomic in CPython


class Recorder:
    """A store that writes its history as it goes.

    ``history`` is a :class:`HistoryWriter` or a path (then the Recorder owns
    the file and :meth:`close` closes it; the store is never closed by it).
    ``tail_batch``/``tail_flush`` bound how many deliveries, and how many
    seconds of them, one tail observation record holds.  ``home_ns`` and
    ``timeline_ns`` collect the latency of each read (perf_counter_ns around
    the store call alone, so recording costs are not counted).
    """

    def __init__(
        self,
        store: Store,
        history: HistoryWriter | str | os.PathLike[str],
        *,
        tail_batch: int = 256,
        tail_flush: float = 0.05,
    ) -> None:
        self.store = store
        self._owned = not isinstance(history, HistoryWriter)
        self.history = history if isinstance(history, HistoryWriter) else HistoryWriter(history)
        self.tail_batch, self.tail_flush = tail_batch, tail_flush
        self._chains: dict[tuple[int, int], str] = {}  # (sink, cursor) -> stream continued by changes()
        self._lock = threading.Lock()
        self.home_ns: array[int] = array("q")
        self.timeline_ns: array[int] = array("q")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush the history (and close its file if the Recorder opened it)."""
        if self._owned:
            self.history.close()
        else:
            self.history.flush()

    # -------------------------------------------------------------- graph

    def follow(self, sink: int, source: int) -> bool:
        t0 = self.history.now()
        changed = self.store.follow(sink, source)
        self.history.follow(sink, source, t0=t0)  # after the call the sink follows, changed or not
        return changed

    def follow_many(self, pairs: Iterable[tuple[int, int]]) -> int:
        pairs = list(pairs)
        t0 = self.history.now()
        count = self.store.follow_many(pairs)
        self.history.follow_many(pairs, t0=t0)
        return count

    def unfollow(self, sink: int, source: int) -> bool:
        t0 = self.history.now()
        changed = self.store.unfollow(sink, source)
        self.history.unfollow(sink, source, t0=t0)
        return changed

    def unfollow_many(self, pairs: Iterable[tuple[int, int]]) -> int:
        pairs = list(pairs)
        t0 = self.history.now()
        count = self.store.unfollow_many(pairs)
        self.history.unfollow_many(pairs, t0=t0)
        return count

    # ------------------------------------------------------------- events

    def publish(self, source: int, payload: bytes) -> Event:
        t0 = self.history.now()
        event = self.store.publish(source, payload)
        self.history.publish(event.source, event.id, t0=t0)
        return event

    def publish_many(
        self, items: Iterable[tuple[int, bytes] | tuple[int, bytes, bytes | str | None]]
    ) -> Sequence[Event]:
        t0 = self.history.now()
        events = self.store.publish_many(items)
        if events:
            self.history.publish_many([(e.source, e.id) for e in events], t0=t0)
        return events

    def delete(self, id: int) -> Event:
        t0 = self.history.now()
        event = self.store.delete(id)
        self.history.delete(event.id, t0=t0)
        return event

    # -------------------------------------------------------------- reads

    def home(self, sink: int, limit: int = 20, max_id: int | None = None,
             since_id: int | None = None, min_id: int | None = None) -> list[Event]:  # fmt: skip
        t0 = self.history.now()
        start = time.perf_counter_ns()
        page = self.store.home(sink, limit, max_id=max_id, since_id=since_id, min_id=min_id)
        self.home_ns.append(time.perf_counter_ns() - start)  # array.append is atomic under the GIL
        self.history.observe(sink, [e.id for e in page], "page", t0=t0, limit=limit,
                             max_id=max_id, since_id=since_id, min_id=min_id)  # fmt: skip
        return page

    def timeline(self, source: int, limit: int = 20, max_id: int | None = None,
                 since_id: int | None = None, min_id: int | None = None) -> list[Event]:  # fmt: skip
        t0 = self.history.now()
        start = time.perf_counter_ns()
        page = self.store.timeline(source, limit, max_id=max_id, since_id=since_id, min_id=min_id)
        self.timeline_ns.append(time.perf_counter_ns() - start)
        self.history.observe(source, [e.id for e in page], "timeline", t0=t0, limit=limit,
                             max_id=max_id, since_id=since_id, min_id=min_id)  # fmt: skip
        return page

    # --------------------------------------------------------------- live

    def _stream_name(self) -> str:
        return f"{os.getpid()}-{next(_streams)}"

    def changes(self, sink: int, after: int, limit: int = 1024) -> tuple[list[Change], int]:
        """As :meth:`Store.changes`; calls that resume from the last cursor extend one stream."""
        t0 = self.history.now()
        items, cursor = self.store.changes(sink, after, limit)
        with self._lock:
            stream = self._chains.pop((sink, after), None)
            fresh = stream is None
            stream = stream or self._stream_name()
            self._chains[(sink, cursor)] = stream
        ids = [item.id for item in items if isinstance(item, Event)]
        self.history.observe(sink, ids, "tail", t0=t0, stream=stream, after=after if fresh else None)
        return items, cursor

    def tail(self, sink: int, after: int | None = None, timeout: float | None = None) -> Iterator[Change]:
        """As :meth:`Store.tail`; deliveries are recorded in batches as they are consumed."""
        if after is None:
            after = self.store.last_id()  # pin the start so the stream's range is known exactly
        items = self.store.tail(sink, after, timeout)
        return self._recorded(sink, after, items)

    def _recorded(self, sink: int, after: int, items: Iterator[Change]) -> Iterator[Change]:
        batch = _TailBatch(self, sink, after)
        try:
            for item in items:
                batch.add(item)
                yield item
        finally:
            batch.flush()

    async def subscribe(self, sink: int, after: int | None = None, poll: float | None = None) -> AsyncIterator[Change]:
        """As :meth:`Store.subscribe`, recorded like :meth:`tail`."""
        if after is None:
            after = self.store.last_id()
        batch = _TailBatch(self, sink, after)
        try:
            async for item in self.store.subscribe(sink, after, poll):
                batch.add(item)
                yield item
        finally:
            batch.flush()


class _TailBatch:
    """Deliveries of one tail stream waiting to be written as one observation."""

    def __init__(self, recorder: Recorder, sink: int, after: int) -> None:
        self.recorder, self.sink = recorder, sink
        self.after: int | None = after
        self.stream = recorder._stream_name()
        self.ids: list[int] = []
        self.t0: int | None = None
        self.started = 0.0

    def add(self, item: Change) -> None:
        if not isinstance(item, Event):
            return  # deletion notices are not observations of events
        if not self.ids:
            self.t0, self.started = self.recorder.history.now(), time.monotonic()
        self.ids.append(item.id)
        if len(self.ids) >= self.recorder.tail_batch or time.monotonic() - self.started > self.recorder.tail_flush:
            self.flush()

    def flush(self) -> None:
        if self.ids:
            self.recorder.history.observe(self.sink, self.ids, "tail", t0=self.t0, stream=self.stream, after=self.after)
            self.after = None  # only the first batch says where the stream began
            self.ids = []
