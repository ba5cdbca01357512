"""Chunked streams: a source's log (table ``logs``) or a sink's window (``windows``).

A stream under an 8-byte prefix is a head chunk ``[floor, count, ids...]``
(tag ``HEAD``) and older sealed chunks of packed ascending ids, each under a
tag: an upper bound of its ids below every id of the next chunk.  Every id
not in the head is ``<= floor``; ``count`` is the stream's undeleted ids.

:class:`Chunks` is the one implementation of appending to, walking, and
removing from such streams; the store and :mod:`.fanout` each hold one per
table.  The per-sink delivery loop of fan-out on write inlines the append
(see ``Fanout.on_publish`` for why).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

from .keys import BE, MAX, be
from .tables import Codec, Table, Txn

__all__ = ["Chunks"]


class Chunks:
    """The chunked streams of one table."""

    __slots__ = ("table", "head_tag", "_append_head")

    def __init__(self, table: Table, codec: Codec) -> None:
        self.table = table
        self.head_tag = codec.HEAD
        self._append_head = codec.append_head

    # --------------------------------------------------------------- writing

    def append(self, txn: Txn, prefix: bytes, ids: list[int], floor: int = 0) -> bytes:
        """Append ascending ``ids``, all newer than the stream's, sealing full chunks; returns the head.

        ``floor`` raises the head's floor (a window that keeps only ids above it).
        """
        table, head_key = self.table, prefix + self.head_tag
        head, sealed = self._append_head(txn.get(head_key, db=table), ids)
        for tag, chunk in sealed:
            txn.put(prefix + be(tag), chunk, db=table)
        if floor:
            words = array("Q", head)
            words[0] = max(words[0], floor)
            head = words.tobytes()
        txn.put(head_key, head, db=table)
        return head

    def replace(self, txn: Txn, prefix: bytes, ids: list[int], floor: int) -> None:
        """Make ``ids`` (ascending, all ``> floor``) the whole stream."""
        cursor = txn.cursor(self.table)
        if cursor.set_range(prefix):
            while cursor.key()[:8] == prefix:
                if not cursor.delete():
                    break
        self.append(txn, prefix, ids, floor)

    def unlog(self, txn: Txn, prefix: bytes, id: int) -> bool:
        """Remove ``id`` from the chunk that holds it and count it off the head.

        Returns False when the stream does not hold ``id``.
        """
        table = self.table
        head_key = prefix + self.head_tag
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

    # --------------------------------------------------------------- walking

    def walk(self, txn: Txn, prefix: bytes, bound: int, older: bool = False) -> Iterator[tuple[Any, Any]]:
        """The stream's chunks as ``(tag, value)``, starting at the one that holds ``bound``.

        Newer (default): from the first chunk that may hold an id ``>= bound``
        up to and including the head.  ``older``: sealed chunks only, from the
        one that may hold ``bound`` backwards.  Both are zero-copy buffers of
        the transaction, valid until the walk resumes: copy what you keep.
        """
        cursor = txn.cursor(self.table)
        head_tag = self.head_tag
        positioned = cursor.set_range(prefix + be(bound))
        if older:
            # The chunk holding `bound` is the first with tag >= bound; if deletes
            # emptied it, the search lands on the head (or past the stream) and
            # the next older chunk is the one to start from.
            if not positioned or cursor.key()[:8] != prefix or cursor.key()[8:] == head_tag:
                positioned = cursor.prev() if positioned else cursor.last()
            step = cursor.prev
        else:
            step = cursor.next
        while positioned:
            key = cursor.key()
            if key[:8] != prefix or (older and key[8:] == head_tag):
                return
            yield key[8:], cursor.value()
            positioned = step()

    def ids_after(self, txn: Txn, prefix: bytes, lo: int, need: int) -> bytes:
        """The stream's ids ``> lo``, ascending, packed: at least ``need`` of them, or all it has."""
        if lo == MAX:
            return b""
        head_tag = self.head_tag
        out: array[int] = array("Q")
        for tag, value in self.walk(txn, prefix, lo + 1):
            words = array("Q", bytes(value))
            if tag == head_tag:
                out.extend(words[2:])
                break
            out.extend(words)
            if len(out) - bisect_right(out, lo) >= need:
                break
        return out.tobytes()

    def extend(self, txn: Txn, prefix: bytes, head: Any, hi: int, need: int, bottom: int = 0) -> bytes:
        """``head`` (a head-shaped run) with older chunks of the stream prepended.

        Loads chunks backwards from the one holding ``min(floor, hi)`` until
        ``need`` ids ``<=`` that bound are in hand.  Every loaded id is ``<=
        floor`` and every id already in ``head`` is ``> floor``, so the result
        stays sorted; its floor is the tag of the next older chunk, or
        ``bottom`` when the stream is exhausted.
        """
        words = array("Q", bytes(head))
        bound = min(words[0], hi)
        loaded: list[array[int]] = []
        count = 0
        floor = bottom
        chunks = self.walk(txn, prefix, bound, older=True)
        for _, value in chunks:
            chunk = array("Q", bytes(value))
            loaded.append(chunk)
            count += bisect_right(chunk, bound)
            if count >= need:
                next_older = next(chunks, None)
                if next_older is not None:
                    floor = BE.unpack(next_older[0])[0]
                break
        out = array("Q", [floor, 0])
        for chunk in reversed(loaded):
            out.extend(chunk)
        out.extend(words[2:])
        return out.tobytes()
