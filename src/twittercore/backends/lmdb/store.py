"""The embedded LMDB store: the default backend of :func:`twittercore.open`.

One LMDB environment (a directory) holds the graph and the logs.  LMDB gives
the guarantees their mechanism: a single writer at a time assigns ids from a
counter inside its transaction, so ids increase in commit order; a reader sees
one snapshot, which holds every commit up to some id and none after it, so no
event can appear behind an id a reader has seen (G3, G4).

Tables (see :mod:`twittercore._codec_py` for the record layouts):

``meta``       ``seq`` -> the last position taken
``events``     id -> source, time, payload
``logs``       (source, tag) -> packed ascending ids; the head chunk is read
               zero-copy by home reads, one B-tree lookup per followed source
``following``  sink -> source   (dupsort: one sink's sources, sorted)
``followers``  source -> sink   (dupsort: pages through millions of followers)
``edgelog``    (sink, seq) -> source, op      graph changes in order, for tail
``edgehist``   (sink, source, seq) -> op      "did sink follow source at seq?"
``deletions``  seq -> id, source              deletion notices for tail

The home read of a sink following k sources costs one lookup for the sink's
sources, k head lookups and one per returned event; the merge runs in the
compiled kernel on the heads in place.
"""

from __future__ import annotations

import os
import struct
import threading
import time as _time
from array import array
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

import lmdb

from ... import _idempotency, _kernel, _options
from .keys import Keyring
from .fanout import READ, Config, Fanout, celebrity_threshold_default, rebuild_progress
from . import env as _env
from .check import check_layout
from .live import LiveMixin
from .read import ReadMixin
from ..._types import Event, EventBatch
from ...errors import ConfigurationError, DamagedStoreError
from ...store import Store

__all__ = ["LMDBStore"]

_U64 = struct.Struct("=Q")
_BE = struct.Struct(">Q")
_BE2 = struct.Struct(">QQ")
be = _BE.pack
_SEQ = b"seq"
_FOLLOW, _UNFOLLOW = b"\x01", b"\x00"

def _codec_for(kernel: str | None) -> Any:
    if _kernel.select(kernel).__name__.endswith("_py"):
        from ... import _codec_py

        return _codec_py
    from ... import _codec

    return _codec


class LMDBStore(ReadMixin, LiveMixin, Store):
    """A store in an LMDB directory; safe to share between threads and processes.

    Options: ``durable`` (default True: fsync each commit; False survives a
    crash of the process, not of the machine), ``writemap`` (default: on when
    not durable; faster commits, but a full disk crashes the process), ``fanout``,
    ``window``, ``celebrity_threshold``, ``clock``, ``kernel`` ("auto",
    "cython" or "python": the merge and codec implementation), ``map_size``
    (initial LMDB map in bytes; it grows by itself), ``max_readers``,
    ``key_retention`` (seconds a publish's idempotency key is honoured).
    """

    def __init__(
        self,
        path: str,
        *,
        durable: bool = True,
        fanout: str | None = None,
        window: int | None = None,
        celebrity_threshold: int | None = None,
        clock: Callable[[], float] = _time.time,
        kernel: str | None = None,
        map_size: int | None = None,
        max_readers: int = 1024,
        writemap: bool | None = None,
        event_cache: int = 65_536,
        key_retention: float = _idempotency.DEFAULT_RETENTION,
    ) -> None:
        fanout, window, celebrity_threshold = _options.strategy(
            {"fanout": fanout, "window": window, "celebrity_threshold": celebrity_threshold}
        )
        _options.flag("durable", durable)
        _options.clock(clock)
        retention = _options.seconds("key_retention", key_retention)
        self._merge = _kernel.select(kernel)
        self._codec = _codec_for(kernel)
        if isinstance(event_cache, bool) or not isinstance(event_cache, int) or event_cache < 0:
            raise ConfigurationError(f"event_cache: expected a count of events >= 0, got {event_cache!r}")
        # Decoded events by id.  Events never change and ids are never reused,
        # and pages only ask for ids their snapshot's logs list, so a cached
        # event is never stale (a deleted one is simply never asked for again).
        self._cache: dict[int, Event] | None = {} if event_cache else None
        self._cache_size = event_cache
        self._fast_items = self._codec.check_items
        self._clock = clock
        self.path = os.path.abspath(path)
        self.durable = durable
        # Writing through the map halves commit cost; the map is then reserved
        # on disk as it grows (see env.py), which costs up to twice the data's
        # size: only the non-durable mode, which asked for speed, turns it on.
        self.writemap = (not durable) if writemap is None else _options.flag("writemap", writemap)
        self._handle = _env.open_env(
            self.path, durable=durable, writemap=self.writemap, map_size=map_size, max_readers=max_readers
        )
        self._env = self._handle.env
        env = self._env
        try:
            with env.begin(write=True) as txn:
                self._meta = env.open_db(b"meta", txn=txn)
                self._events = env.open_db(b"events", txn=txn)
                self._logs = env.open_db(b"logs", txn=txn)
                self._following = env.open_db(b"following", txn=txn, dupsort=True, dupfixed=True)
                self._followers = env.open_db(b"followers", txn=txn, dupsort=True, dupfixed=True)
                self._edgelog = env.open_db(b"edgelog", txn=txn)
                self._edgehist = env.open_db(b"edgehist", txn=txn)
                self._deletions = env.open_db(b"deletions", txn=txn)
                self._fan = Fanout(self, txn)
                self._keyring = Keyring(env, txn, retention)
        except BaseException as exc:
            self._closed = True
            self._handle.close()
            if isinstance(exc, lmdb.Error):
                raise self._handle.translate(exc, f"open({path!r})") from exc
            raise
        self._handle.attach(self)
        self._write_lock = threading.Lock()
        # In-process readers, counted so the map can be resized safely.
        self._gate = threading.Condition(threading.Lock())
        self._readers = 0
        self._resizing = False
        self._draining = False  # someone waits for the readers to leave
        self._changed = threading.Condition()
        self._waiters = 0
        try:
            self._configure(fanout, window, celebrity_threshold)
        except BaseException:
            self._closed = True
            self._close()
            raise

    # ------------------------------------------------------------------ life

    def _live(self) -> None:
        if self._closed:
            if self._handle.forked_from is not None:
                raise self._handle.forked_error()
            super()._live()

    def _close(self) -> None:
        with self._changed:
            self._changed.notify_all()
        with self._write_lock, self._gate:
            self._draining = True
            while self._readers:
                self._gate.wait()
            self._handle.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fanout={self.fanout!r}, durable={self.durable}"
        return f"<LMDBStore {self.path!r} {state}>"

    @property
    def fanout(self) -> str:
        """The store's fan-out strategy now (it is a property of the files, shared by all processes)."""
        self._live()
        return self._read(lambda txn: self._fan.config(txn).mode)

    @property
    def deliveries(self) -> int:
        """Ids this process pushed into windows (fan-out on write), for benchmarks."""
        return self._fan.delivered

    def backup(self, path: str, compact: bool = True) -> None:
        """Write a consistent copy of the store into the empty directory ``path``.

        Runs from one read snapshot while writers go on.  ``compact`` skips free
        pages.  Use this rather than copying files: with ``durable=False`` the
        data file is a sparse map as large as the map size, and a file copy
        would write out every hole.
        """
        self._live()
        _env.backup(self._handle, path, compact)

    def _configure(self, fanout: str | None, window: int | None, threshold: int | None) -> None:
        """Apply the open() options to the store's recorded strategy; rebuild windows if they change."""
        current = self._read(self._fan.config)
        mode = fanout or current.mode
        if mode == "read":
            wanted = READ
        else:
            wanted = Config(mode, window or current.window or 800, celebrity_threshold_default(threshold, current))
        if wanted == current:
            return
        with rebuild_progress(f"fanout={mode}: building windows") as progress:
            self._write(lambda txn: self._fan.configure(txn, wanted, progress))

    # ---------------------------------------------------------- transactions

    def _read(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(txn)`` in a read snapshot (default table: logs, zero-copy values)."""
        retry = True
        while True:
            self._enter()
            try:
                txn = self._env.begin(db=self._logs, buffers=True)
                try:
                    return work(txn)
                finally:
                    txn.abort()
            except lmdb.MapResizedError:
                pass  # another process grew the map: adopt its size, then retry
            except Exception:  # noqa: BLE001 - translated or re-raised, never swallowed
                # Raises a twittercore.Error, or returns after clearing dead readers' slots.
                retry = self._handle.failed("read", retry)
                continue
            finally:
                self._leave()
            self._resize(0)

    def _write(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(txn)`` in one write transaction, growing the map as needed.

        ``work`` must derive everything from the transaction: after a map-full
        abort it runs again from scratch.
        """
        with self._write_lock:
            while True:
                self._enter()
                grow = None
                try:
                    with self._env.begin(write=True) as txn:
                        return work(txn)
                except lmdb.MapFullError:
                    grow = self._env.info()["map_size"] * 2
                except lmdb.MapResizedError:
                    grow = 0
                except Exception:  # noqa: BLE001 - translated or re-raised, never swallowed
                    self._handle.failed("write")
                finally:
                    self._leave()
                self._resize(grow)

    def _enter(self) -> None:
        """Count a transaction of this process in (after any resize in progress)."""
        with self._gate:
            while self._resizing:
                self._gate.wait()
            self._readers += 1

    def _leave(self) -> None:
        with self._gate:
            self._readers -= 1
            if self._draining:
                self._gate.notify_all()

    def _resize(self, size: int) -> None:
        """Set the map size (0: adopt the size another process chose) once no txn is open here."""
        with self._gate:
            while self._resizing:
                self._gate.wait()
            self._resizing = self._draining = True
            try:
                while self._readers:
                    self._gate.wait()
                self._handle.set_mapsize(size)
            finally:
                self._resizing = self._draining = False
                self._gate.notify_all()

    @staticmethod
    def _dups(txn: Any, table: Any, key: bytes) -> Any:
        """All values of ``key`` in a dupsort table, as packed 16-byte ``(key, value)`` records."""
        return txn.cursor(table).getmulti([key], dupdata=True, dupfixed_bytes=8, keyfixed=True)

    def _seq(self, txn: Any) -> int:
        value = txn.get(_SEQ, db=self._meta)
        return 0 if value is None else _U64.unpack(value)[0]

    def _set_seq(self, txn: Any, seq: int) -> None:
        txn.put(_SEQ, _U64.pack(seq), db=self._meta)

    def _notify(self) -> None:
        if self._waiters:  # a Condition round trip costs more than a small commit
            with self._changed:
                self._changed.notify_all()

    # ----------------------------------------------------------------- graph

    def _follow_many(self, pairs: list[tuple[int, int]]) -> int:
        return self._change_edges(pairs, _FOLLOW)

    def _unfollow_many(self, pairs: list[tuple[int, int]]) -> int:
        return self._change_edges(pairs, _UNFOLLOW)

    def _change_edges(self, pairs: list[tuple[int, int]], op: bytes) -> int:
        """Follow (or unfollow) the pairs that change the graph; each takes a position."""
        adding = op == _FOLLOW

        def work(txn: Any) -> int:
            seq = self._seq(txn)
            cursor = txn.cursor(self._following)
            done: set[tuple[int, int]] = set()
            rows = []
            for pair in pairs:
                if pair in done:
                    continue
                sink_key, source_key = be(pair[0]), be(pair[1])
                if cursor.set_key_dup(sink_key, source_key) == adding:
                    continue  # already followed (or not followed): no change, no position
                done.add(pair)
                seq += 1
                rows.append((sink_key, source_key, be(seq)))
            if rows:
                self._apply_edges(txn, rows, op)
                (self._fan.on_follow if adding else self._fan.on_unfollow)(txn, rows)
                self._set_seq(txn, seq)
            return len(rows)

        changed = self._write(work)
        if changed:
            self._notify()
        return changed

    def _apply_edges(self, txn: Any, rows: list[tuple[bytes, bytes, bytes]], op: bytes) -> None:
        """Add or remove edges and log them; ``rows`` are (sink, source, seq) keys."""
        if op == _FOLLOW:
            txn.cursor(self._following).putmulti([(k, s) for k, s, _ in rows], dupdata=True)
            txn.cursor(self._followers).putmulti([(s, k) for k, s, _ in rows], dupdata=True)
        else:
            for sink_key, source_key, _ in rows:
                txn.delete(sink_key, source_key, db=self._following)
                txn.delete(source_key, sink_key, db=self._followers)
        txn.cursor(self._edgelog).putmulti([(k + q, s + op) for k, s, q in rows])
        txn.cursor(self._edgehist).putmulti([(k + s + q, op) for k, s, q in rows])

    def _is_following(self, sink: int, source: int) -> bool:
        return self._read(lambda txn: txn.cursor(self._following).set_key_dup(be(sink), be(source)))

    def _neighbours(self, table: Any, node: int, limit: int | None, after: int | None) -> list[int]:
        key = be(node)

        def work(txn: Any) -> list[int]:
            cursor = txn.cursor(table)
            if after is None:
                if not cursor.set_key(key):
                    return []
            elif after == (1 << 64) - 1 or not cursor.set_range_dup(key, be(after + 1)):
                return []
            out = []
            unpack = _BE.unpack
            for value in cursor.iternext_dup(keys=False):
                out.append(unpack(value)[0])
                if limit is not None and len(out) >= limit:
                    break
            return out

        return self._read(work)

    def _sources(self, sink: int, limit: int | None, after: int | None) -> list[int]:
        return self._neighbours(self._following, sink, limit, after)

    def _sinks(self, source: int, limit: int | None, after: int | None) -> list[int]:
        return self._neighbours(self._followers, source, limit, after)

    def _count(self, table: Any, node: int) -> int:
        def work(txn: Any) -> int:
            cursor = txn.cursor(table)
            return cursor.count() if cursor.set_key(be(node)) else 0

        return self._read(work)

    def _source_count(self, sink: int) -> int:
        return self._count(self._following, sink)

    def _sink_count(self, source: int) -> int:
        return self._count(self._followers, source)

    # ---------------------------------------------------------------- events

    def _publish_many(self, items: list[tuple[int, bytes]], keys: list[bytes | None] | None) -> list[Event]:
        now = self._clock()
        if keys is None:
            first = self._write(lambda txn: self._append(txn, items, now))
            self._notify()
            return EventBatch(first, items, now)
        events = self._write(lambda txn: self._publish_keyed(txn, items, keys, now))
        self._notify()
        return events

    def _publish_keyed(self, txn: Any, items: list[tuple[int, bytes]], keys: list[bytes | None], now: float) -> list[Event]:
        keyring = self._keyring
        plan = _idempotency.plan(items, keys, lambda source, key: keyring.lookup(txn, source, key, now))
        old = {}
        for index, id in plan.recorded.items():
            value = txn.get(be(id), db=self._events)
            if value is None:
                raise _idempotency.missing(items[index][0], keys[index], id)  # type: ignore[arg-type]
            old[id] = self._codec.decode_event(id, value)
        fresh = [items[i] for i in plan.fresh]
        events: list[Event] = list(EventBatch(self._append(txn, fresh, now), fresh, now)) if fresh else []
        for index, event in zip(plan.fresh, events):
            key = keys[index]
            if key is not None:
                keyring.record(txn, event.source, key, event.id, now)
        keyring.forget(txn, now)
        return plan.answer(events, old)

    def _append(self, txn: Any, items: list[tuple[int, bytes]], now: float) -> int:
        """Write ``items`` as the next events and return the first id."""
        codec = self._codec
        head_key = codec.HEAD
        first = self._seq(txn) + 1
        if len(items) == 1:
            return self._append_one(txn, first, items, now)
        records = codec.encode_events(first, items, now)
        consumed, added = txn.cursor(self._events).putmulti(records, append=True)
        if added != len(records):  # pragma: no cover - ids only grow
            raise DamagedStoreError(f"{self.path}: event ids collided at {first} (the store is corrupt)")
        logs = self._logs
        get, put = txn.get, txn.put
        groups = codec.group_ids(first, items)
        for source, ids in groups.items():
            prefix = be(source)
            head, sealed = codec.append_head(get(prefix + head_key, db=logs), ids)
            for tag, chunk in sealed:
                put(prefix + be(tag), chunk, db=logs)
            put(prefix + head_key, head, db=logs)
        self._fan.on_publish(txn, groups)
        self._set_seq(txn, first + len(items) - 1)
        return first

    def _append_one(self, txn: Any, id: int, items: list[tuple[int, bytes]], now: float) -> int:
        # The single publish is the common call: no grouping, no cursor.
        codec = self._codec
        source, payload = items[0]
        key, value = codec.encode_events(id, items, now)[0]
        txn.put(key, value, db=self._events, append=True)
        prefix = be(source)
        head, sealed = codec.append_head(txn.get(prefix + codec.HEAD, db=self._logs), [id])
        for tag, chunk in sealed:
            txn.put(prefix + be(tag), chunk, db=self._logs)
        txn.put(prefix + codec.HEAD, head, db=self._logs)
        self._fan.on_publish(txn, {source: [id]})
        self._set_seq(txn, id)
        return id

    def _event(self, id: int) -> Event | None:
        def work(txn: Any) -> Event | None:
            value = txn.get(be(id), db=self._events)
            return None if value is None else self._codec.decode_event(id, value)

        return self._read(work)

    def _delete(self, id: int) -> Event | None:
        key = be(id)

        def work(txn: Any) -> Event | None:
            value = txn.get(key, db=self._events)
            if value is None:
                return None
            event = self._codec.decode_event(id, value)
            txn.delete(key, db=self._events)
            if not self._unlog(txn, be(event.source), id):
                raise DamagedStoreError(f"{self.path}: event {id} is missing from its source's log (run _check())")
            self._fan.on_delete(txn, event)
            seq = self._seq(txn) + 1
            txn.put(be(seq), key + be(event.source), db=self._deletions, append=True)
            self._set_seq(txn, seq)
            return event

        event = self._write(work)
        if event is not None:
            self._notify()
        return event

    def _unlog(self, txn: Any, prefix: bytes, id: int, table: Any = None) -> bool:
        """Remove ``id`` from the chunk of a chunked stream that holds it; count it off the head.

        Returns False when the stream does not hold ``id``.
        """
        table = self._logs if table is None else table
        head_key = prefix + self._codec.HEAD
        cursor = txn.cursor(table)
        if not cursor.set_range(prefix + be(id)) or cursor.key()[:8] != prefix:
            return False
        chunk_key = cursor.key()
        words = array("Q", cursor.value())
        body = 2 if chunk_key == head_key else 0
        position = bisect_right(words, id, body) - 1
        if position < body or words[position] != id:
            return False
        del words[position]
        if body:
            words[1] -= 1
            cursor.put(chunk_key, words.tobytes())
            return True
        if len(words):
            cursor.put(chunk_key, words.tobytes())
        else:
            cursor.delete()
        head = array("Q", txn.get(head_key, db=table))
        head[1] -= 1
        txn.put(head_key, head.tobytes(), db=table)
        return True

    def _timeline_count(self, source: int) -> int:
        def work(txn: Any) -> int:
            head = txn.get(be(source) + self._codec.HEAD)
            return 0 if head is None else _U64.unpack_from(head, 8)[0]

        return self._read(work)

    def _last_seq(self) -> int:
        return self._read(self._seq)

    # ----------------------------------------------------------------- reads

    def _timeline(self, source: int, limit: int, lo: int, hi: int, oldest: bool) -> list[Event]:
        return self._read(lambda txn: self._read_page(txn, [be(source)], limit, lo, hi, oldest))

    def _home(self, sink: int, limit: int, lo: int, hi: int, oldest: bool) -> list[Event]:
        def work(txn: Any) -> list[Event]:
            if not oldest:
                page = self._fan.home(txn, sink, limit, lo, hi)
                if page is not None:
                    return page
            records = self._dups(txn, self._following, be(sink))
            if not oldest:
                return self._newest_page(txn, self._codec.head_keys(records), limit, lo, hi)
            prefixes = [key[:8] for key in self._codec.head_keys(records)]
            return self._read_page(txn, prefixes, limit, lo, hi, oldest)

        return self._read(work)

    # -------------------------------------------------------------- checking

    def _check(self) -> None:
        """Assert the layout's invariants over the whole store (slow; tests call it)."""
        def work(txn: Any) -> None:
            check_layout(self, txn)
            self._keyring.check(txn)

        self._read(work)
