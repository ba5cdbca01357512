"""Keys of the LMDB layout: the encodings every module of the store shares, and idempotency keys.

Node ids and ids are 8-byte big-endian in keys (``be``), so LMDB's byte order
is numeric order; counters and record fields are native (``U64``).  Each
constant is defined here once and imported by the modules that use it.

Idempotency tables (:class:`Keyring`):

``keys``      (source, key) -> (id, recorded at)     the lookup a retry makes
``keytimes``  (recorded ms, source, key) -> ""        oldest first, for expiry

A key and its event commit together, so after any crash either both exist or
neither does: a retry either finds the event or publishes it.  Expired keys
are dropped a few at a time by later keyed publishes, so expiry costs no
background thread and no full scan.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["BE", "BE2", "U64", "be", "MAX", "SEQ", "FOLLOW", "UNFOLLOW", "Keyring"]

#: A big-endian id or node id: the key encoding (sorts numerically).
BE = struct.Struct(">Q")
#: Two big-endian words, such as (source, tag) keys and (id, source) notices.
BE2 = struct.Struct(">QQ")
#: A native word: counters and record fields, never keys.
U64 = struct.Struct("=Q")
be = BE.pack
#: The largest id (``2**64 - 1``): "no upper bound".
MAX = (1 << 64) - 1
#: ``meta`` key of the last position taken.
SEQ = b"seq"
#: Edge operations in ``edgelog`` and ``edgehist``.
FOLLOW, UNFOLLOW = b"\x01", b"\x00"
_RECORD = struct.Struct(">Qd")  # id, recorded at (seconds)
#: Expired keys dropped per keyed publish: more than one publish records, so
#: the table shrinks whenever keys expire faster than they are made.
_FORGET_BATCH = 16


def _ms(seconds: float) -> bytes:
    return be(max(0, min(int(seconds * 1000), (1 << 64) - 1)))


class Keyring:
    """The two key tables and the retention; methods take the caller's transaction."""

    __slots__ = ("keys", "times", "retention")

    def __init__(self, env: Any, txn: Any, retention: float) -> None:
        self.keys = env.open_db(b"keys", txn=txn)
        self.times = env.open_db(b"keytimes", txn=txn)
        self.retention = retention

    def lookup(self, txn: Any, source: int, key: bytes, now: float) -> int | None:
        """The id recorded for ``(source, key)`` within the retention, else None."""
        value = txn.get(be(source) + key, db=self.keys)
        if value is None:
            return None
        id, at = _RECORD.unpack(value)
        return None if at < now - self.retention else id

    def record(self, txn: Any, source: int, key: bytes, id: int, now: float) -> None:
        name = be(source) + key
        old = txn.get(name, db=self.keys)
        if old is not None:  # an expired key used again: its old expiry entry goes
            txn.delete(_ms(_RECORD.unpack(old)[1]) + name, db=self.times)
        txn.put(name, _RECORD.pack(id, now), db=self.keys)
        txn.put(_ms(now) + name, b"", db=self.times)

    def forget(self, txn: Any, now: float) -> None:
        """Drop up to a batch of the oldest expired keys."""
        cutoff = _ms(now - self.retention)
        cursor = txn.cursor(self.times)
        if not cursor.first():
            return
        for _ in range(_FORGET_BATCH):
            entry = cursor.key()
            if entry[:8] >= cutoff:
                return
            txn.delete(entry[8:], db=self.keys)
            if not cursor.delete():
                return

    def check(self, txn: Any) -> None:
        """Every key has exactly its one expiry entry (the invariant ``_check`` asserts)."""
        names = {bytes(k): _RECORD.unpack(bytes(v))[1] for k, v in txn.cursor(self.keys)}
        entries = [bytes(k) for k in txn.cursor(self.times).iternext(values=False)]
        assert len(entries) == len(names), (len(entries), len(names))
        for entry in entries:
            assert entry[8:] in names and _ms(names[entry[8:]]) == entry[:8], entry
