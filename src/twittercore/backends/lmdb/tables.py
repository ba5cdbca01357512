"""The named tables of the LMDB store, and the record codec they are written with.

Tables (see :mod:`twittercore._codec_py` for the record layouts):

``meta``       ``seq`` -> the last position taken; the fan-out settings
``events``     id -> source, time, payload
``logs``       (source, tag) -> packed ascending ids; the head chunk is read
               zero-copy by home reads, one B-tree lookup per followed source
``following``  sink -> source   (dupsort: one sink's sources, sorted)
``followers``  source -> sink   (dupsort: pages through millions of followers)
``edgelog``    (sink, seq) -> source, op      graph changes in order, for tail
``edgehist``   (sink, source, seq) -> op      "did sink follow source at seq?"
``deletions``  seq -> id, source              deletion notices for tail

The fan-out tables (``windows``, ``wfloors``, ``celebs``) belong to
:mod:`.fanout`; the idempotency ones (``keys``, ``keytimes``) to :mod:`.keys`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ... import _kernel
from ..._types import Event
from .keys import SEQ, U64

__all__ = ["Txn", "Table", "Codec", "Tables", "codec_for", "dups"]

#: An ``lmdb.Transaction`` and an ``lmdb._Database``: py-lmdb ships no type
#: information, so these name what a parameter is without claiming more.
Txn = Any
Table = Any


class Codec(Protocol):
    """The record codec: :mod:`twittercore._codec` or its twin :mod:`twittercore._codec_py`."""

    HEAD: bytes
    SEAL: int

    def head_keys(self, records: Any) -> list[bytes]: ...
    def values_of(self, records: Any) -> list[int]: ...
    def encode_events(
        self, first_id: int, items: list[tuple[int, bytes]], time: float
    ) -> list[tuple[bytes, bytes]]: ...
    def group_ids(self, first_id: int, items: list[tuple[int, bytes]]) -> dict[int, list[int]]: ...
    def append_head(self, head: Any, ids: list[int]) -> tuple[bytes, list[tuple[int, bytes]]]: ...
    def decode_event(self, id: int, value: Any) -> Event: ...
    def be_keys(self, ids: Sequence[int]) -> list[bytes]: ...
    def decode_values(self, ids: list[int], values: list[Any]) -> list[Event]: ...
    def check_items(self, items: list[Any], max_payload: int) -> bool: ...


def codec_for(kernel: str | None) -> Codec:
    """The codec matching the merge kernel ``kernel`` selects (compiled with compiled)."""
    if _kernel.is_python(_kernel.select(kernel)):
        from ... import _codec_py

        return _codec_py
    from ... import _codec

    return _codec


class Tables:
    """The store's named tables, opened in one write transaction."""

    __slots__ = ("meta", "events", "logs", "following", "followers", "edgelog", "edgehist", "deletions")

    def __init__(self, env: Any, txn: Txn) -> None:
        self.meta: Table = env.open_db(b"meta", txn=txn)
        self.events: Table = env.open_db(b"events", txn=txn)
        self.logs: Table = env.open_db(b"logs", txn=txn)
        self.following: Table = env.open_db(b"following", txn=txn, dupsort=True, dupfixed=True)
        self.followers: Table = env.open_db(b"followers", txn=txn, dupsort=True, dupfixed=True)
        self.edgelog: Table = env.open_db(b"edgelog", txn=txn)
        self.edgehist: Table = env.open_db(b"edgehist", txn=txn)
        self.deletions: Table = env.open_db(b"deletions", txn=txn)

    def seq(self, txn: Txn) -> int:
        """The last position taken (0 in an empty store)."""
        value = txn.get(SEQ, db=self.meta)
        if value is None:
            return 0
        seq: int = U64.unpack(value)[0]
        return seq

    def set_seq(self, txn: Txn, seq: int) -> None:
        txn.put(SEQ, U64.pack(seq), db=self.meta)


def dups(txn: Txn, table: Table, key: bytes) -> Any:
    """All values of ``key`` in a dupsort table, as packed 16-byte ``(key, value)`` records."""
    return txn.cursor(table).getmulti([key], dupdata=True, dupfixed_bytes=8, keyfixed=True)
