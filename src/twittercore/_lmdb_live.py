"""Live subscriptions on the LMDB store: the ``changes`` step of ``tail`` and the wait.

A mixin of :class:`~twittercore.lmdb_store.LMDBStore`, kept apart because it
is the one part that reads the graph's history (``edgelog``, ``edgehist``)
and the deletion notices rather than the current graph.
"""

from __future__ import annotations

import struct
import time as _time
from typing import Any

from ._types import Deletion
from .store import Change

_BE = struct.Struct(">Q")
_BE2 = struct.Struct(">QQ")
be = _BE.pack
_FOLLOW = b"\x01"


class LiveMixin:
    """``_changes`` and ``_wait`` for the LMDB store (see ``Store.tail``)."""

    _closed: bool

    def _changes(self, sink: int, after: int, limit: int) -> tuple[list[Change], int]:
        sink_key = be(sink)

        def work(txn: Any) -> tuple[list[Change], int]:
            last = self._seq(txn)
            if last <= after:
                return [], after
            records = txn.cursor(self._following).getmulti(
                [sink_key], dupdata=True, dupfixed_bytes=8, keyfixed=True
            )
            candidates = {key[:8] for key in self._codec.head_keys(records)}
            cursor = txn.cursor(self._edgelog)
            if cursor.set_range(sink_key + be(after + 1)):
                for key, value in cursor:
                    if key[:8] != sink_key:
                        break
                    candidates.add(bytes(value[:8]))
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
        """Block until the store passes ``after``: at once for this process's
        commits, within ~1 ms for another process's (it polls the counter)."""
        deadline = None if timeout is None else _time.monotonic() + timeout
        interval = 0.0001
        while not self._closed:
            if self._last_seq() > after:
                return True
            remaining = None if deadline is None else deadline - _time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            with self._changed:
                self._waiters += 1
                try:
                    self._changed.wait(interval if remaining is None else min(interval, remaining))
                finally:
                    self._waiters -= 1
            interval = min(interval * 2, 0.001)
        return False

