"""The read path of the LMDB store: pages from chunked streams, and events by id.

A mixin of :class:`~twittercore.lmdb_store.LMDBStore`.  Streams (a source's
log, a sink's window) are chunked: a head ``[floor, count, ids...]`` and older
sealed chunks tagged with an upper bound of their ids.  Pages merge heads in
the compiled kernel and load older chunks only for the streams the kernel
reports too short.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from itertools import islice
from typing import Any

from ..._types import Event
from ...errors import DamagedStoreError

_BE = struct.Struct(">Q")
be = _BE.pack


class ReadMixin:
    """Page assembly, chunk loading and event fetching for the LMDB store."""

    def _read_page(self, txn: Any, prefixes: list[bytes], limit: int, lo: int, hi: int, oldest: bool) -> list[Event]:
        if oldest:
            runs = [self._ids_after(txn, prefix, lo, limit) for prefix in prefixes]
            ids = self._merge.oldest(runs, limit, lo, hi)
            ids.reverse()
            return self._fetch(txn, ids)
        return self._newest_page(txn, [prefix + self._codec.HEAD for prefix in prefixes], limit, lo, hi)

    def _newest_page(self, txn: Any, head_keys: list[bytes], limit: int, lo: int, hi: int) -> list[Event]:
        get = txn.get
        heads = [get(key) for key in head_keys]
        newest_floored = self._merge.newest_floored
        ids, incomplete = newest_floored(heads, limit, lo, hi)
        while incomplete:
            # Rare: a head is too short for this page (deep max_id, or deletes).
            for index in incomplete:
                heads[index] = self._extend(txn, head_keys[index][:8], heads[index], hi, limit)
            ids, incomplete = newest_floored(heads, limit, lo, hi)
        return self._fetch(txn, ids)

    def _extend(
        self, txn: Any, prefix: bytes, head: Any, hi: int, need: int, table: Any = None, bottom: int = 0
    ) -> bytes:
        """``head`` (a head-shaped run) with older chunks of the stream prepended.

        Loads chunks of ``table`` (default: logs) backwards from the one holding
        ``min(floor, hi)`` until ``need`` ids ``<=`` that bound are in hand.
        Every loaded id is ``<= floor`` and every id already in ``head`` is
        ``> floor``, so the result stays sorted; its floor is the tag of the
        next older chunk, or ``bottom`` when the stream is exhausted.
        """
        words = array("Q", bytes(head))
        bound = min(words[0], hi)
        cursor = txn.cursor(self._logs if table is None else table)
        head_tag = self._codec.HEAD
        loaded: list[array] = []
        count = 0
        # The chunk holding `bound` is the first with tag >= bound; if deletes
        # emptied it, the search lands on the head (or past the stream) and the
        # next older chunk is the one to start from.
        positioned = cursor.set_range(prefix + be(bound))
        if not positioned or cursor.key()[:8] != prefix or cursor.key()[8:] == head_tag:
            positioned = cursor.prev() if positioned else cursor.last()
        while positioned and cursor.key()[:8] == prefix and cursor.key()[8:] != head_tag:
            chunk = array("Q", bytes(cursor.value()))
            loaded.append(chunk)
            count += bisect_right(chunk, bound)
            if count >= need:
                break
            positioned = cursor.prev()
        floor = bottom
        if loaded and cursor.prev() and cursor.key()[:8] == prefix:
            floor = _BE.unpack_from(cursor.key(), 8)[0]
        out = array("Q", [floor, 0])
        for chunk in reversed(loaded):
            out.extend(chunk)
        out.extend(words[2:])
        return out.tobytes()

    def _ids_after(self, txn: Any, prefix: bytes, lo: int, need: int) -> bytes:
        """The source's ids ``> lo``, ascending: at least ``need`` of them, or all it has."""
        cursor = txn.cursor(self._logs)
        head_tag = self._codec.HEAD
        out = array("Q")
        if lo == (1 << 64) - 1 or not cursor.set_range(prefix + be(lo + 1)):
            return b""
        while cursor.key()[:8] == prefix:
            words = array("Q", bytes(cursor.value()))
            if cursor.key()[8:] == head_tag:
                out.extend(words[2:])
                break
            out.extend(words)
            if len(out) - bisect_right(out, lo) >= need or not cursor.next():
                break
        return out.tobytes()

    def _fetch(self, txn: Any, ids: list[int]) -> list[Event]:
        """The events of ``ids`` (all listed by this snapshot's logs), in order."""
        if not ids:
            return []
        cache = self._cache
        if cache is None:
            return self._load_events(txn, ids)
        found = [cache.get(id) for id in ids]
        if None not in found:
            return found  # type: ignore[return-value]
        missing = [id for id, event in zip(ids, found) if event is None]
        fresh = dict(zip(missing, self._load_events(txn, missing)))
        if len(fresh) <= self._cache_size:
            if len(cache) + len(fresh) > self._cache_size:
                for old in list(islice(cache, len(fresh) + self._cache_size // 8)):
                    cache.pop(old, None)  # oldest first: dicts keep insertion order
            cache.update(fresh)
        return [event if event is not None else fresh[id] for id, event in zip(ids, found)]

    def _load_events(self, txn: Any, ids: list[int]) -> list[Event]:
        pairs = txn.cursor(self._events).getmulti(self._codec.be_keys(ids))
        try:
            return self._codec.decode_pairs(ids, pairs)
        except LookupError:  # getmulti skips missing keys: a log names a lost event
            raise DamagedStoreError(f"{self.path}: a log lists an event that does not exist (the store is damaged; run _check())") from None
