"""Per-source hash chains, the hybrid logical clock and the merge key.

Every event a node accepts from one of its users becomes the next link of that
user's chain: ``(source, seq, hlc, prev_hash, hash, payload)`` with
``hash = blake2b(prev_hash || seq || hlc || source || payload)``.  A receiver
that holds link ``seq - 1`` can check link ``seq`` whoever relayed it, so a
chain may be copied from any node (anti-entropy) without trusting that node.

The merge order of all events is the key ``(hlc, source)``: every node
computes the same order from the events alone, whatever order they arrived in.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgumentError

__all__ = [
    "GENESIS",
    "HLC_SHIFT",
    "NODE_SHIFT",
    "Link",
    "Clock",
    "link_hash",
    "key_of",
    "split_key",
    "home_index",
    "user_id",
    "clock_skew_ms",
    "status_id",
    "split_status_id",
    "TOMBSTONE",
    "tombstone",
    "tombstone_target",
]

#: prev_hash of every chain's first link.
GENESIS = bytes(32)
#: hlc = wall-clock milliseconds << HLC_SHIFT: 256 events per millisecond per node before it runs ahead.
HLC_SHIFT = 8
#: A user id is ``node_index << NODE_SHIFT | n``: its home node is in the id, no directory needed.
NODE_SHIFT = 40
#: Sources fit in 48 bits (8 bits of node index, 40 of local number), so a merge key is one integer.
_SOURCE_BITS = 48
_SOURCE_MASK = (1 << _SOURCE_BITS) - 1
MAX_NODES = 255


def link_hash(prev_hash: bytes, seq: int, hlc: int, source: int, payload: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=32)
    h.update(prev_hash)
    h.update(struct.pack(">QQQ", seq, hlc, source))
    h.update(payload)
    return h.digest()


@dataclass(frozen=True)
class Link:
    source: int
    seq: int
    hlc: int
    prev_hash: bytes
    hash: bytes
    payload: bytes

    def verify(self, prev_hash: bytes) -> bool:
        """True if this link follows a link whose hash is ``prev_hash`` and its own hash is right."""
        return self.prev_hash == prev_hash and self.hash == link_hash(
            self.prev_hash, self.seq, self.hlc, self.source, self.payload
        )

    @property
    def key(self) -> int:
        return key_of(self.hlc, self.source)

    def to_wire(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "seq": self.seq,
            "hlc": self.hlc,
            "prev": self.prev_hash.hex(),
            "hash": self.hash.hex(),
            "payload": self.payload.decode("utf-8", "surrogateescape"),
        }

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Link:
        try:
            return cls(
                int(obj["source"]),
                int(obj["seq"]),
                int(obj["hlc"]),
                bytes.fromhex(obj["prev"]),
                bytes.fromhex(obj["hash"]),
                obj["payload"].encode("utf-8", "surrogateescape"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidArgumentError(f"node: malformed link {obj!r:.200}") from exc


def key_of(hlc: int, source: int) -> int:
    return (hlc << _SOURCE_BITS) | source


def split_key(key: int) -> tuple[int, int]:
    return key >> _SOURCE_BITS, key & _SOURCE_MASK


def status_id(hlc: int, source: int) -> int:
    """The merge key in 64 bits, for the Mastodon API (whose ids the server keeps as uint64).

    A node's clock is strictly increasing over all its users (``Clock.next``), so
    ``(hlc, home node)`` already names one event, and orders exactly as
    ``(hlc, source)`` does: a source's high bits are its node.  ``hlc`` (ms << 8)
    stays below 2**49 until 2039, so the id stays below 2**57.
    """
    return (hlc << 8) | home_index(source)


def split_status_id(id: int) -> tuple[int, int]:
    """``(hlc, node index)`` of a :func:`status_id`."""
    return id >> 8, id & 0xFF


#: A link whose payload starts with this deletes an earlier link of its own chain (its seq follows).
#: Client payloads may not start with NUL, so no post can pass for a tombstone.
TOMBSTONE = b"\x00twittercore:delete:"


def tombstone(seq: int) -> bytes:
    return TOMBSTONE + str(seq).encode()


def tombstone_target(payload: bytes) -> int:
    """The seq a tombstone deletes, 0 for an ordinary payload."""
    if not payload.startswith(TOMBSTONE):
        return 0
    try:
        return int(payload[len(TOMBSTONE) :])
    except ValueError:
        return 0


def home_index(user: int) -> int:
    return user >> NODE_SHIFT


def user_id(node_index: int, n: int) -> int:
    if not 1 <= node_index <= MAX_NODES or not 0 < n < (1 << NODE_SHIFT):
        raise InvalidArgumentError(f"node: no user id for node {node_index}, number {n}")
    return (node_index << NODE_SHIFT) | n


def clock_skew_ms() -> int:
    """The lab's clock-skew fault: TWITTERCORE_CLOCK_SKEW_MS is added to every wall-clock reading."""
    raw = os.environ.get("TWITTERCORE_CLOCK_SKEW_MS", "0").strip() or "0"
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidArgumentError(f"TWITTERCORE_CLOCK_SKEW_MS={raw!r}: expected an integer") from exc


class Clock:
    """A hybrid logical clock: ``next() = max(last + 1, now_ms << HLC_SHIFT)``.

    ``tick()`` is the promise a heartbeat carries: every later ``next()`` is
    greater than the value it returns.  ``observe()`` folds in another node's
    clock, so a node whose wall clock is behind does not hold the watermark back
    (its next events sort after what it has heard).
    """

    def __init__(self, last: int = 0, skew_ms: int | None = None, wall: Callable[[], float] = time.time) -> None:
        self.last = last
        self.skew_ms = clock_skew_ms() if skew_ms is None else skew_ms
        self._wall = wall

    def now_ms(self) -> int:
        return int(self._wall() * 1000) + self.skew_ms

    def next(self) -> int:
        self.last = max(self.last + 1, self.now_ms() << HLC_SHIFT)
        return self.last

    def tick(self) -> int:
        self.last = max(self.last, self.now_ms() << HLC_SHIFT)
        return self.last

    def observe(self, other: int) -> None:
        if other > self.last:
            self.last = other
