"""Live subscriptions on the LMDB store: the ``changes`` step of ``tail`` and the wait.

Kept apart because it is the one part that reads the graph's history
(``edgelog``, ``edgehist``) and the deletion notices rather than the current
graph, and the one that owns threads (the watcher of other processes' commits).
"""

from __future__ import annotations

import threading
import time as _time
from collections.abc import Callable
from typing import Any

from ..._kernel import Merge
from ..._types import Deletion
from ...store import Change
from .chunks import Chunks
from .env import Handle
from .keys import BE, BE2, FOLLOW, U64, be
from .read import Reader
from .tables import Codec, Tables, Txn, dups
from .wakeup import Doorbell

__all__ = ["Live"]

#: Longest doorbell sleep of the watcher: how soon it notices that no one waits
#: any more (closing rings it awake at once).  Each timeout is a wake-up of an
#: idle process: at 0.05 s they were 0.3% of a core, at 0.5 s 0.03%.
WATCH_TIMEOUT = 0.5


class Live:
    """``changes`` and ``wait`` for one store (see ``Store.tail``), and the waiters' wake-up.

    ``read`` runs a function in a read snapshot (the store's, which handles
    map resizes and reader slots); ``closed`` says whether the store is closed.
    The environment is reached through ``handle`` because a fork replaces it.
    """

    def __init__(
        self,
        tables: Tables,
        logs: Chunks,
        reader: Reader,
        codec: Codec,
        merge: Merge,
        read: Callable[[Callable[[Txn], Any]], Any],
        handle: Handle,
        closed: Callable[[], bool],
        bell: Doorbell | None = None,
    ) -> None:
        self._bell = bell
        self._tables = tables
        self._logs = logs
        self._reader = reader
        self._codec = codec
        self._merge = merge
        self._read = read
        self._handle = handle
        self._closed = closed
        self._changed = threading.Condition()
        #: Threads of this process in ``wait`` (a publish skips the wake-up when 0).
        self.waiters = 0
        self._watcher: threading.Thread | None = None

    # --------------------------------------------------------------- changes

    def changes(self, sink: int, after: int, limit: int) -> tuple[list[Change], int]:
        sink_key = be(sink)
        tables, logs = self._tables, self._logs

        def work(txn: Txn) -> tuple[list[Change], int]:
            last = tables.seq(txn)
            if last <= after:
                return [], after
            records = dups(txn, tables.following, sink_key)
            candidates = {key[:8] for key in self._codec.head_keys(records)}
            cursor = txn.cursor(tables.edgelog)
            if cursor.set_range(sink_key + be(after + 1)):
                for key, value in cursor:
                    if key[:8] != sink_key:
                        break
                    candidates.add(bytes(value[:8]))
            if last - after <= 2 * len(candidates) + 16:
                # A subscriber keeping up: fewer new positions than sources, so
                # walk the new events themselves instead of every source's log.
                ids = self._new_ids(txn, candidates, after, last, limit)
            else:
                runs = [logs.ids_after(txn, prefix, after, limit) for prefix in candidates]
                ids = self._merge.oldest(runs, limit, after, last)
            upto = ids[-1] if len(ids) == limit else last
            items: list[tuple[int, Change]] = []
            history = txn.cursor(tables.edgehist)
            for event in self._reader.fetch(txn, ids):
                if _followed_at(history, sink_key, be(event.source), event.id):
                    items.append((event.id, event))
            deletions = txn.cursor(tables.deletions)
            if deletions.set_range(be(after + 1)):
                for key, value in deletions:
                    seq = BE.unpack(key)[0]
                    if seq > upto:
                        break
                    id, source = BE2.unpack(value)
                    if _followed_at(history, sink_key, value[8:16], id):
                        items.append((seq, Deletion(seq, id, source)))
            items.sort(key=lambda pair: pair[0])
            return [item for _, item in items], upto

        result: tuple[list[Change], int] = self._read(work)
        return result

    def _new_ids(self, txn: Txn, sources: set[bytes], after: int, last: int, limit: int) -> list[int]:
        """Ids in ``(after, last]`` of events of ``sources``, ascending, at most ``limit``."""
        ids: list[int] = []
        cursor = txn.cursor(self._tables.events)
        if not cursor.set_range(be(after + 1)):
            return ids
        for key, value in cursor:
            id = BE.unpack(key)[0]
            if id > last:
                break
            if be(U64.unpack_from(value)[0]) in sources:
                ids.append(id)
                if len(ids) == limit:
                    break
        return ids

    # ------------------------------------------------------------------ wait

    def wake(self) -> None:
        """Wake this process's waiters (after a commit, or at close)."""
        with self._changed:
            self._changed.notify_all()

    def wait(self, after: int, timeout: float | None) -> bool:
        """Block until the store passes ``after`` or ``timeout`` seconds pass.

        Commits of this process wake waiters at once (``wake``).  Another
        process's commits are seen by one watcher thread per store, which
        sleeps on the store's doorbell (:mod:`.wakeup`: a futex every writer
        rings after a commit) while anyone waits, and exits when no one does.
        Without a doorbell (not Linux) it polls LMDB's last transaction id
        every 0.2 ms instead.  The position is re-checked after the waiter is
        registered, so a wake cannot fall between check and wait.
        """
        deadline = None if timeout is None else _time.monotonic() + timeout
        seq = self._tables.seq
        with self._changed:
            self.waiters += 1
            try:
                if self._watcher is None:
                    self._watcher = threading.Thread(target=self._watch, name="twittercore-watch", daemon=True)
                    self._watcher.start()
                while not self._closed():
                    if self._read(seq) > after:
                        return True
                    remaining = None if deadline is None else deadline - _time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._changed.wait(remaining)
                return False
            finally:
                self.waiters -= 1

    def _watch(self) -> None:
        """Wake this process's waiters when any process commits (see ``wait``)."""
        bell = self._bell
        if bell is not None:
            bell.waiting(True)
        try:
            seen = None
            while True:
                with self._changed:
                    if not self.waiters or self._closed():
                        self._watcher = None
                        return
                # The doorbell's value is read before the check: a commit after
                # the check rings it away from this value, so the sleep ends.
                rung = bell.value() if bell is not None else 0
                try:
                    txnid = self._handle.env.info()["last_txnid"]
                except Exception:  # the store closed under us
                    with self._changed:
                        self._watcher = None
                    return
                if seen is not None and txnid != seen:
                    with self._changed:
                        self._changed.notify_all()
                seen = txnid
                if bell is not None:
                    bell.sleep(rung, WATCH_TIMEOUT)  # bounded, to notice waiters leaving
                else:
                    _time.sleep(0.0002)
        finally:
            if bell is not None:
                bell.waiting(False)

    def stop(self) -> bool:
        """At close (after ``closed()`` turned True): end the watcher; True once it is gone."""
        watcher = self._watcher
        self.wake()
        if watcher is None:
            return True
        if self._bell is not None:
            self._bell.ring()
        watcher.join(WATCH_TIMEOUT * 4)
        return not watcher.is_alive()


def _followed_at(history: Any, sink_key: bytes, source_key: bytes, position: int) -> bool:
    """Did the sink follow the source just before ``position``?  (edgehist: last op < position)"""
    pair = sink_key + bytes(source_key)
    if history.set_range(pair + be(position)):
        if not history.prev():
            return False
    elif not history.last():
        return False
    return bool(history.key()[:16] == pair and history.value() == FOLLOW)
