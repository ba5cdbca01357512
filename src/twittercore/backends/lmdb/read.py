"""The read path of the LMDB store: pages from chunked streams, and events by id.

Pages merge the streams' heads in the compiled kernel and load older chunks
(see :mod:`.chunks`) only for the streams the kernel reports too short.  The
heads are looked up in one call (:func:`._txn.get_many`, compiled) with the
compiled kernel, one ``txn.get`` each with the pure-Python twin; a page's
events likewise (:func:`._txn.get_events`, decoded as they are found).
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from ..._kernel import Merge, is_python
from ..._types import Event
from ...errors import DamagedStoreError
from .chunks import Chunks
from .tables import Codec, Table, Txn, dups

__all__ = ["Reader", "get_heads_py", "get_many_py"]


def get_many_py(txn: Txn, db: Table, keys: list[bytes]) -> list[Any]:
    """The pure-Python twin of :func:`._txn.get_many`: each key's value, or None."""
    get = txn.get
    return [get(key, db=db) for key in keys]


def get_heads_py(txn: Txn, following: Table, logs: Table, sink_key: bytes, tag: bytes) -> tuple[bytes, list[Any]]:
    """The pure-Python twin of :func:`._txn.get_heads`: the sink's packed sources and their heads."""
    records = dups(txn, following, sink_key)  # 16-byte (sink, source) records
    sources = b"".join(bytes(records[i + 8 : i + 16]) for i in range(0, len(records), 16))
    return sources, get_many_py(txn, logs, [sources[i : i + 8] + tag for i in range(0, len(sources), 8)])


def _lookups_for(merge: Merge, codec: Codec) -> tuple[Any, Any, Any]:
    """``(get_many, get_heads, get_events)``: compiled with the compiled kernel, else their twins."""
    if is_python(merge):

        def get_events_py(txn: Txn, db: Table, ids: list[int]) -> list[Event]:
            return codec.decode_values(ids, get_many_py(txn, db, codec.be_keys(ids)))

        return get_many_py, get_heads_py, get_events_py
    from . import _txn  # built with the compiled codec

    return _txn.get_many, _txn.get_heads, _txn.get_events


class Reader:
    """Page assembly and event fetching (with the decoded-event cache) for one store.

    Holds what reads need and nothing else: the ``events`` table, the logs,
    the codec and merge kernel, and the store's path for error messages.
    """

    __slots__ = (
        "_events",
        "_logs",
        "_codec",
        "_merge",
        "_path",
        "_head_tag",
        "_cache",
        "_cache_size",
        "get_many",
        "_get_heads",
        "_get_events",
    )

    def __init__(self, events: Table, logs: Chunks, codec: Codec, merge: Merge, path: str, cache_size: int) -> None:
        self._events = events
        self._logs = logs
        self._codec = codec
        self._merge = merge
        self._path = path
        self._head_tag = codec.HEAD
        self.get_many, self._get_heads, self._get_events = _lookups_for(merge, codec)
        # Decoded events by id.  Events never change and ids are never reused,
        # and pages only ask for ids their snapshot's logs list, so a cached
        # event is never stale (a deleted one is simply never asked for again).
        self._cache: dict[int, Event] | None = {} if cache_size else None
        self._cache_size = cache_size

    def page(self, txn: Txn, prefixes: list[bytes], limit: int, lo: int, hi: int, oldest: bool) -> list[Event]:
        """The page of the merged streams under ``prefixes`` (see ``Store.home``)."""
        if oldest:
            ids_after = self._logs.ids_after
            runs = [ids_after(txn, prefix, lo, limit) for prefix in prefixes]
            ids = self._merge.oldest(runs, limit, lo, hi)
            ids.reverse()
            return self.fetch(txn, ids)
        head_tag = self._head_tag
        return self.newest(txn, [prefix + head_tag for prefix in prefixes], limit, lo, hi)

    def newest(self, txn: Txn, head_keys: list[bytes], limit: int, lo: int, hi: int) -> list[Event]:
        """The newest page of the logs whose head keys are ``head_keys``."""
        heads = self.get_many(txn, self._logs.table, head_keys)
        return self._newest(txn, heads, b"".join([key[:8] for key in head_keys]), limit, lo, hi)

    def home(self, txn: Txn, following: Table, sink_key: bytes, limit: int, lo: int, hi: int) -> list[Event]:
        """The newest page of the logs of the sources ``sink_key`` follows (in ``following``)."""
        sources, heads = self._get_heads(txn, following, self._logs.table, sink_key, self._head_tag)
        return self._newest(txn, heads, sources, limit, lo, hi)

    def _newest(self, txn: Txn, heads: list[Any], prefixes: bytes, limit: int, lo: int, hi: int) -> list[Event]:
        # ``prefixes``: the heads' 8-byte stream prefixes, packed (read only when a head is short).
        newest_floored = self._merge.newest_floored
        ids, incomplete = newest_floored(heads, limit, lo, hi)
        while incomplete:
            # Rare: a head is too short for this page (deep max_id, or deletes).
            for index in incomplete:
                prefix = prefixes[8 * index : 8 * index + 8]
                heads[index] = self._logs.extend(txn, prefix, heads[index], hi, limit)
            ids, incomplete = newest_floored(heads, limit, lo, hi)
        return self.fetch(txn, ids)

    def fetch(self, txn: Txn, ids: list[int]) -> list[Event]:
        """The events of ``ids`` (all listed by this snapshot's logs), in order."""
        if not ids:
            return []
        cache = self._cache
        if cache is None:
            return self._load(txn, ids)
        found = [cache.get(id) for id in ids]
        if None not in found:
            return found  # type: ignore[return-value]  # None is not in it: list[Event]
        missing = [id for id, event in zip(ids, found) if event is None]
        fresh = dict(zip(missing, self._load(txn, missing)))
        if len(fresh) <= self._cache_size:
            if len(cache) + len(fresh) > self._cache_size:
                for old in list(islice(cache, len(fresh) + self._cache_size // 8)):
                    cache.pop(old, None)  # oldest first: dicts keep insertion order
            cache.update(fresh)
        return [event if event is not None else fresh[id] for id, event in zip(ids, found)]

    def event(self, txn: Txn, id: int, key: bytes) -> Event | None:
        """The event ``id`` (``key`` is its big-endian key), or None."""
        value = txn.get(key, db=self._events)
        return None if value is None else self._codec.decode_event(id, value)

    def _load(self, txn: Txn, ids: list[int]) -> list[Event]:
        try:
            return self._get_events(txn, self._events, ids)  # type: ignore[no-any-return]
        except LookupError:  # a log names a lost event
            raise DamagedStoreError(
                f"{self._path}: a log lists an event that does not exist (the store is damaged; run _check())"
            ) from None
