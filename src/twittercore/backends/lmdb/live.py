"""Live subscriptions on the LMDB store: the ``changes`` step of ``tail`` and the wait.

A mixin of :class:`~twittercore.lmdb_store.LMDBStore`, kept apart because it
is the one part that reads the graph's history (``edgelog``, ``edgehist``)
and the deletion notices rather than the current graph.
"""

from __future__ import annotations

import struct
import threading
import time as _time
from typing import Any

from ..._types import Deletion
from ...store import Change

_U64 = struct.Struct("=Q")
_BE = struct.Struct(">Q")
_BE2 = struct.Struct(">QQ")
be = _BE.pack
_FOLLOW = b"\x01"


class LiveMixin:
    """``_changes`` and ``_wait`` for the LMDB store (see ``Store.tail``)."""

    _closed: bool
    _watcher: threading.Thread | None = None

    def _changes(self, sink: int, after: int, limit: int) -> tuple[list[Change], int]:
        sink_key = be(sink)

        def work(txn: Any) -> tuple[list[Change], int]:
            last = self._seq(txn)
            if last <= after:
                return [], after
            records = self._dups(txn, self._following, sink_key)
            candidates = {key[:8] for key in self._codec.head_keys(records)}
            cursor = txn.cursor(self._edgelog)
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
                runs = [self._ids_after(txn, prefix, after, limit) for prefix in candidates]
                ids = self._merge.oldest(runs, limit, after, last)
            upto = ids[-1] if len(ids) == limit else last
            items: list[tuple[int, Change]] = []
            history = txn.cursor(self._edgehist)
            for event in self._fetch(txn, ids):
                if self._followed_at(history, sink_key, be(event.source), event.id):
                    items.append((event.id, event))
            deletions = txn.cursor(self._deletions)
            if deletions.set_range(be(after + 1)):
                for key, value in deletions:
                    seq = _BE.unpack(key)[0]
                    if seq > upto:
                        break
                    id, source = _BE2.unpack(value)
                    if self._followed_at(history, sink_key, value[8:16], id):
                        items.append((seq, Deletion(seq, id, source)))
            items.sort(key=lambda pair: pair[0])
            return [item for _, item in items], upto

        return self._read(work)

    def _new_ids(self, txn: Any, sources: set[bytes], after: int, last: int, limit: int) -> list[int]:
        """Ids in ``(after, last]`` of events of ``sources``, ascending, at most ``limit``."""
        ids: list[int] = []
        cursor = txn.cursor(self._events)
        if not cursor.set_range(be(after + 1)):
            return ids
        for key, value in cursor:
            id = _BE.unpack(key)[0]
            if id > last:
                break
            if _BE.pack(_U64.unpack_from(value)[0]) in sources:
                ids.append(id)
                if len(ids) == limit:
                    break
        return ids

    @staticmethod
    def _followed_at(history: Any, sink_key: bytes, source_key: bytes, position: int) -> bool:
        """Did the sink follow the source just before ``position``?  (edgehist: last op < position)"""
        pair = sink_key + bytes(source_key)
        if history.set_range(pair + be(position)):
            if not history.prev():
                return False
        elif not history.last():
            return False
        return history.key()[:16] == pair and history.value() == _FOLLOW

    def _wait(self, after: int, timeout: float | None) -> bool:
        """Block until the store passes ``after`` or ``timeout`` seconds pass.

        Commits of this process notify at once.  Another process's commits are
        seen by one watcher thread per store, which polls LMDB's last
        transaction id every 0.2 ms while anyone waits (a few percent of a core)
        and exits when no one does.  The position is re-checked after the
        waiter is registered, so a notify cannot fall between check and wait.
        """
        deadline = None if timeout is None else _time.monotonic() + timeout
        with self._changed:
            self._waiters += 1
            try:
                if self._watcher is None:
                    self._watcher = threading.Thread(target=self._watch, name="twittercore-watch", daemon=True)
                    self._watcher.start()
                while not self._closed:
                    if self._last_seq() > after:
                        return True
                    remaining = None if deadline is None else deadline - _time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._changed.wait(remaining)
                return False
            finally:
                self._waiters -= 1

    def _watch(self) -> None:
        """Wake this process's waiters when any process commits (see ``_wait``)."""
        seen = None
        while True:
            with self._changed:
                if not self._waiters or self._closed:
                    self._watcher = None
                    return
            try:
                txnid = self._env.info()["last_txnid"]
            except Exception:  # the store closed under us
                with self._changed:
                    self._watcher = None
                return
            if seen is not None and txnid != seen:
                with self._changed:
                    self._changed.notify_all()
            seen = txnid
            _time.sleep(0.0002)
