"""The embedded LMDB store: the default backend of :func:`twittercore.open`.

One LMDB environment (a directory) holds the graph and the logs.  LMDB gives
the guarantees their mechanism: a single writer at a time assigns ids from a
counter inside its transaction, so ids increase in commit order; a reader sees
one snapshot, which holds every commit up to some id and none after it, so no
event can appear behind an id a reader has seen (G3, G4).

The tables are listed in :mod:`.tables`.  The store is composed of small
collaborators, each given what it uses: :class:`~.chunks.Chunks` (the chunked
logs), :class:`~.read.Reader` (pages and events), :class:`~.live.Live` (tail
and wait), :class:`~.fanout.Fanout` (windows) and :class:`~.keys.Keyring`
(idempotency keys); this class owns the environment and the transactions.

The home read of a sink following k sources costs one lookup for the sink's
sources, k head lookups and one per returned event; the merge runs in the
compiled kernel on the heads in place.
"""

from __future__ import annotations

import os
import threading
import time as _time
from collections.abc import Callable, Sequence
from itertools import compress
from typing import TypeVar

import lmdb

from ... import _idempotency, _kernel, _options
from ..._types import Event, EventBatch
from ...errors import ConfigurationError, DamagedStoreError
from ...store import Change, Store
from . import env as _env
from .check import check_layout
from .chunks import Chunks
from .fanout import READ, Config, Fanout, Progress, celebrity_threshold_default
from .group import GroupCommit
from .keys import BE, FOLLOW, MAX, U64, UNFOLLOW, Keyring, be
from .live import Live
from .read import Reader
from .tables import Table, Tables, Txn, codec_for, dups
from .wakeup import open_doorbell

__all__ = ["LMDBStore"]

T = TypeVar("T")

#: What one follow adds to the map, about (four tables; measured ~150 B in
#: bulk loads), for growing it ahead of large writes; too low only costs a
#: map-full retry.
EDGE_BYTES = 192
#: Writes estimated smaller than this never check the map's free room.
ROOM_CHECK = 1 << 20


class LMDBStore(Store):
    """A store in an LMDB directory; safe to share between threads and processes.

    Options: ``durable`` (default True: fsync each commit; False survives a
    crash of the process, not of the machine), ``writemap`` (default: on when
    not durable; faster commits, but a full disk crashes the process), ``fanout``,
    ``window``, ``celebrity_threshold``, ``clock``, ``kernel`` ("auto",
    "cython" or "python": the merge and codec implementation), ``map_size``
    (initial LMDB map in bytes; it grows by itself), ``max_readers``,
    ``key_retention`` (seconds a publish's idempotency key is honoured),
    ``progress`` (``progress(done, total)`` hears how far a rebuild of the
    fan-out windows is, when the other options change the strategy),
    ``group_commit`` (default True: concurrent durable publishes of this
    process share one transaction and one fsync; see ``group.py``).
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
        progress: Progress | None = None,
        group_commit: bool = True,
    ) -> None:
        fanout, window, celebrity_threshold = _options.strategy(
            {"fanout": fanout, "window": window, "celebrity_threshold": celebrity_threshold, "progress": progress}
        )
        _options.flag("durable", durable)
        _options.flag("group_commit", group_commit)
        _options.clock(clock)
        retention = _options.seconds("key_retention", key_retention)
        merge = _kernel.select(kernel)
        codec = self._codec = codec_for(kernel)
        if isinstance(event_cache, bool) or not isinstance(event_cache, int) or event_cache < 0:
            raise ConfigurationError(f"event_cache: expected a count of events >= 0, got {event_cache!r}")
        self._fast_items = codec.check_items
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
        # The hot paths use the environment directly; a fork replaces it (env.Handle.attach).
        self._env = self._handle.env
        self._psize: int = self._env.stat()["psize"]
        env = self._env
        try:
            for attempt in range(_env.RESIZE_RETRIES):
                try:
                    with env.begin(write=True) as txn:
                        tables = self._tables = Tables(env, txn)
                        self._logs = Chunks(tables.logs, codec)
                        self._reader = Reader(tables.events, self._logs, codec, merge, self.path, event_cache)
                        self._fan = Fanout(env, txn, tables, self._logs, self._reader, codec, merge, self.path)
                        self._keyring = Keyring(env, txn, retention)
                    break
                except lmdb.MapResizedError:
                    if attempt == _env.RESIZE_RETRIES - 1:
                        raise
                    self._handle.set_mapsize(0)  # another process grew the map since open_env mapped it
        except BaseException as exc:
            self._closed = True
            self._handle.close()
            if isinstance(exc, lmdb.Error):
                raise self._handle.translate(exc, f"open({path!r})") from exc
            raise
        self._handle.attach(self)
        self._write_lock = threading.Lock()
        # In-process readers, counted so the map can be resized safely.
        # _enter/_leave take the bare lock (a C context manager; Condition's own
        # __enter__ is a Python call, twice per read); waits go through the Condition.
        self._gate_lock = threading.Lock()
        self._gate = threading.Condition(self._gate_lock)
        self._readers = 0
        self._resizing = False
        self._draining = False  # someone waits for the readers to leave
        self._bell = open_doorbell(self.path)
        self._feed = Live(
            tables, self._logs, self._reader, codec, merge, self._read, self._handle, lambda: self._closed, self._bell
        )
        # Without an fsync per commit there is nothing to share: a plain commit is cheaper.
        self._group = GroupCommit(self._write, self._notify) if durable and group_commit else None
        try:
            self._configure(fanout, window, celebrity_threshold, progress)
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
        stopped = self._feed.stop()
        with self._write_lock, self._gate:
            self._draining = True
            while self._readers:
                self._gate.wait()
            self._handle.close()
        if self._bell is not None and stopped:
            self._bell.close()  # (a watcher that never ended may still touch the map: then keep it)

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

    def _configure(
        self, fanout: str | None, window: int | None, threshold: int | None, progress: Progress | None
    ) -> None:
        """Apply the open() options to the store's recorded strategy; rebuild windows if they change."""
        current = self._read(self._fan.config)
        mode = fanout or current.mode
        if mode == "read":
            wanted = READ
        else:
            wanted = Config(mode, window or current.window or 800, celebrity_threshold_default(threshold, current))
        if wanted == current:
            return
        self._write(lambda txn: self._fan.configure(txn, wanted, progress))

    # ---------------------------------------------------------- transactions

    def _read(self, work: Callable[[Txn], T]) -> T:
        """Run ``work(txn)`` in a read snapshot (default table: logs, zero-copy values)."""
        retry = True
        while True:
            self._enter()
            try:
                txn = self._env.begin(db=self._tables.logs, buffers=True)
                try:
                    return work(txn)
                finally:
                    txn.abort()
            except lmdb.MapResizedError:
                pass  # another process grew the map: adopt its size, then retry
            except Exception:
                # Raises a twittercore.Error, or returns after clearing dead readers' slots.
                retry = self._handle.failed("read", retry)
                continue
            finally:
                self._leave()
            self._resize(0)

    def _write(self, work: Callable[[Txn], T], room: int = 0) -> T:
        """Run ``work(txn)`` in one write transaction, growing the map as needed.

        ``work`` must derive everything from the transaction: after a map-full
        abort it runs again from scratch.  ``room`` estimates the bytes it will
        add; when the map has less free, it grows first, so a bulk load does
        not run a million-row transaction once per doubling of the map.
        """
        with self._write_lock:
            if room >= ROOM_CHECK:
                info = self._env.info()
                used = (info["last_pgno"] + 1) * self._psize
                if info["map_size"] - used < room:
                    self._resize(max(used + 2 * room, _env.grown(used)))
            while True:
                self._enter()
                grow = 0  # adopt another process's map size (after a failure that returned)
                try:
                    with self._env.begin(write=True) as txn:
                        return work(txn)
                except lmdb.MapFullError:
                    grow = _env.grown(self._env.info()["map_size"])
                except lmdb.MapResizedError:
                    grow = 0
                except Exception:
                    self._handle.failed("write")
                finally:
                    self._leave()
                self._resize(grow)

    def _enter(self) -> None:
        """Count a transaction of this process in (after any resize in progress)."""
        with self._gate_lock:
            while self._resizing:
                self._gate.wait()
            self._readers += 1

    def _leave(self) -> None:
        with self._gate_lock:
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

    def _notify(self) -> None:
        if self._bell is not None:
            self._bell.ring()  # other processes' waiters
        feed = self._feed
        if feed.waiters:  # a Condition round trip costs more than a small commit
            feed.wake()

    # ----------------------------------------------------------------- graph

    def _follow_many(self, pairs: list[tuple[int, int]]) -> int:
        return self._change_edges(pairs, FOLLOW)

    def _unfollow_many(self, pairs: list[tuple[int, int]]) -> int:
        return self._change_edges(pairs, UNFOLLOW)

    def _change_edges(self, pairs: list[tuple[int, int]], op: bytes) -> int:
        """Follow (or unfollow) the pairs that change the graph; each takes a position."""
        adding = op == FOLLOW
        tables, be_keys = self._tables, self._codec.be_keys
        # Bulk loads send millions of pairs a call: the keys are made, checked
        # and written by C-level loops (map, zip, putmulti), not per pair in Python.
        unique = list(dict.fromkeys(pairs)) if len(pairs) > 1 else pairs  # first occurrences, in order
        sinks = be_keys([pair[0] for pair in unique])
        sources = be_keys([pair[1] for pair in unique])

        def work(txn: Txn) -> int:
            found = list(map(txn.cursor(tables.following).set_key_dup, sinks, sources))
            # A pair changes the graph unless it is already followed (or already not followed).
            if adding:
                keep = None if True not in found else [not f for f in found]
            else:
                keep = None if False not in found else found
            ks, ss = (sinks, sources) if keep is None else (list(compress(sinks, keep)), list(compress(sources, keep)))
            if not ks:
                return 0
            seq = tables.seq(txn)
            qs = be_keys(list(range(seq + 1, seq + 1 + len(ks))))
            self._apply_edges(txn, ks, ss, qs, op)
            (self._fan.on_follow if adding else self._fan.on_unfollow)(txn, list(zip(ks, ss, qs)))
            tables.set_seq(txn, seq + len(ks))
            return len(ks)

        changed = self._write(work, room=EDGE_BYTES * len(unique))
        if changed:
            self._notify()
        return changed

    def _apply_edges(self, txn: Txn, sinks: list[bytes], sources: list[bytes], seqs: list[bytes], op: bytes) -> None:
        """Add or remove the edges ``sinks[i] -> sources[i]`` and log them at positions ``seqs[i]``."""
        tables = self._tables
        if op == FOLLOW:
            txn.cursor(tables.following).putmulti(zip(sinks, sources), dupdata=True)
            txn.cursor(tables.followers).putmulti(zip(sources, sinks), dupdata=True)
        else:
            delete = txn.delete
            for sink_key, source_key in zip(sinks, sources):
                delete(sink_key, source_key, db=tables.following)
                delete(source_key, sink_key, db=tables.followers)
        ops = [op] * len(sinks)
        txn.cursor(tables.edgelog).putmulti(zip(map(bytes.__add__, sinks, seqs), map(bytes.__add__, sources, ops)))
        txn.cursor(tables.edgehist).putmulti(zip(map(bytes.__add__, map(bytes.__add__, sinks, sources), seqs), ops))

    def _is_following(self, sink: int, source: int) -> bool:
        following = self._tables.following
        return bool(self._read(lambda txn: txn.cursor(following).set_key_dup(be(sink), be(source))))

    def _neighbours(self, table: Table, node: int, limit: int | None, after: int | None) -> list[int]:
        key = be(node)

        def work(txn: Txn) -> list[int]:
            cursor = txn.cursor(table)
            if after is None:
                if not cursor.set_key(key):
                    return []
            elif after == MAX or not cursor.set_range_dup(key, be(after + 1)):
                return []
            out = []
            unpack = BE.unpack
            for value in cursor.iternext_dup(keys=False):
                out.append(unpack(value)[0])
                if limit is not None and len(out) >= limit:
                    break
            return out

        return self._read(work)

    def _sources(self, sink: int, limit: int | None, after: int | None) -> list[int]:
        return self._neighbours(self._tables.following, sink, limit, after)

    def _sinks(self, source: int, limit: int | None, after: int | None) -> list[int]:
        return self._neighbours(self._tables.followers, source, limit, after)

    def _count(self, table: Table, node: int) -> int:
        def work(txn: Txn) -> int:
            cursor = txn.cursor(table)
            count: int = cursor.count() if cursor.set_key(be(node)) else 0
            return count

        return self._read(work)

    def _source_count(self, sink: int) -> int:
        return self._count(self._tables.following, sink)

    def _sink_count(self, source: int) -> int:
        return self._count(self._tables.followers, source)

    # ---------------------------------------------------------------- events

    def _publish_many(self, items: list[tuple[int, bytes]], keys: list[bytes | None] | None) -> Sequence[Event]:
        # A batch without keys answers with a lazy EventBatch: a million Event tuples cost more than the commit.
        now = self._clock()
        group = self._group
        if keys is None:
            append = lambda txn: self._append(txn, items, now)  # noqa: E731
            if group is not None:
                return EventBatch(group.run(append), items, now)
            first = self._write(append)
            self._notify()
            return EventBatch(first, items, now)
        keyed = lambda txn: self._publish_keyed(txn, items, keys, now)  # noqa: E731
        if group is not None:
            events: list[Event] = group.run(keyed)
            return events
        events = self._write(keyed)
        self._notify()
        return events

    def _publish_keyed(
        self, txn: Txn, items: list[tuple[int, bytes]], keys: list[bytes | None], now: float
    ) -> list[Event]:
        keyring = self._keyring
        plan = _idempotency.plan(items, keys, lambda source, key: keyring.lookup(txn, source, key, now))
        old = {}
        for index, id in plan.recorded.items():
            event = self._reader.event(txn, id, be(id))
            if event is None:
                raise _idempotency.missing(items[index][0], keys[index], id)  # type: ignore[arg-type]
            old[id] = event
        fresh = [items[i] for i in plan.fresh]
        events: list[Event] = list(EventBatch(self._append(txn, fresh, now), fresh, now)) if fresh else []
        for index, event in zip(plan.fresh, events):
            key = keys[index]
            if key is not None:
                keyring.record(txn, event.source, key, event.id, now)
        keyring.forget(txn, now)
        return plan.answer(events, old)

    def _append(self, txn: Txn, items: list[tuple[int, bytes]], now: float) -> int:
        """Write ``items`` as the next events and return the first id."""
        tables, codec = self._tables, self._codec
        first = tables.seq(txn) + 1
        if len(items) == 1:
            # The single publish is the common call: no grouping, no cursor.
            key, value = codec.encode_events(first, items, now)[0]
            txn.put(key, value, db=tables.events, append=True)
            source = items[0][0]
            self._logs.append(txn, be(source), [first])
            self._fan.on_publish(txn, {source: [first]})
            tables.set_seq(txn, first)
            return first
        records = codec.encode_events(first, items, now)
        consumed, added = txn.cursor(tables.events).putmulti(records, append=True)
        if added != len(records):  # pragma: no cover - ids only grow
            raise DamagedStoreError(f"{self.path}: event ids collided at {first} (the store is corrupt)")
        groups = codec.group_ids(first, items)
        append = self._logs.append
        for source, ids in groups.items():
            append(txn, be(source), ids)
        self._fan.on_publish(txn, groups)
        tables.set_seq(txn, first + len(items) - 1)
        return first

    def _event(self, id: int) -> Event | None:
        key = be(id)
        return self._read(lambda txn: self._reader.event(txn, id, key))

    def _delete(self, id: int) -> Event | None:
        key = be(id)
        tables = self._tables

        def work(txn: Txn) -> Event | None:
            event = self._reader.event(txn, id, key)
            if event is None:
                return None
            txn.delete(key, db=tables.events)
            if not self._logs.unlog(txn, be(event.source), id):
                raise DamagedStoreError(f"{self.path}: event {id} is missing from its source's log (run _check())")
            self._fan.on_delete(txn, event)
            seq = tables.seq(txn) + 1
            txn.put(be(seq), key + be(event.source), db=tables.deletions, append=True)
            tables.set_seq(txn, seq)
            return event

        event = self._write(work)
        if event is not None:
            self._notify()
        return event

    def _timeline_count(self, source: int) -> int:
        head_key = be(source) + self._codec.HEAD

        def work(txn: Txn) -> int:
            head = txn.get(head_key)
            if head is None:
                return 0
            count: int = U64.unpack_from(head, 8)[0]
            return count

        return self._read(work)

    def _last_seq(self) -> int:
        return self._read(self._tables.seq)

    # ----------------------------------------------------------------- reads

    def _timeline(self, source: int, limit: int, lo: int, hi: int, oldest: bool) -> list[Event]:
        page = self._reader.page
        prefixes = [be(source)]
        return self._read(lambda txn: page(txn, prefixes, limit, lo, hi, oldest))

    def _home(self, sink: int, limit: int, lo: int, hi: int, oldest: bool) -> list[Event]:
        reader, fan, following, head_keys = self._reader, self._fan, self._tables.following, self._codec.head_keys

        def work(txn: Txn) -> list[Event]:
            if not oldest:
                page = fan.home(txn, sink, limit, lo, hi)
                if page is not None:
                    return page
            if not oldest:
                return reader.home(txn, following, be(sink), limit, lo, hi)
            keys = head_keys(dups(txn, following, be(sink)))
            return reader.page(txn, [key[:8] for key in keys], limit, lo, hi, oldest)

        return self._read(work)

    # ------------------------------------------------------------------ live

    def _changes(self, sink: int, after: int, limit: int) -> tuple[list[Change], int]:
        return self._feed.changes(sink, after, limit)

    def _wait(self, after: int, timeout: float | None) -> bool:
        return self._feed.wait(after, timeout)

    # -------------------------------------------------------------- checking

    def _check(self) -> None:
        """Assert the layout's invariants over the whole store (slow; tests call it)."""

        def work(txn: Txn) -> None:
            check_layout(self._tables, self._codec.HEAD, txn)
            self._fan.check(txn)
            self._keyring.check(txn)

        self._read(work)
