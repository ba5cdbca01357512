"""twittercore: ordered fan-out, the engine inside a Twitter-like service.

Sinks follow sources; sources publish events into append-only logs; each sink
reads the merge of its sources' logs (its home timeline).  Every event gets one
64-bit id from a single store-wide order, so every sink sees each source's
events in publish order (G1) and sinks sharing sources agree on their order (G2).

>>> import twittercore
>>> with twittercore.open(":memory:") as store:
...     _ = store.follow(1, 2)           # sink 1 follows source 2
...     first = store.publish(2, b"hello")
...     second = store.publish(2, b"world")
...     [e.payload for e in store.home(1)]
[b'world', b'hello']
"""

from __future__ import annotations

import os
from typing import Any

from ._types import MAX_LIMIT, MAX_NODE, MAX_PAYLOAD, Deletion, Event
from .errors import (
    ClosedError,
    ConfigurationError,
    DamagedStoreError,
    DiskFullError,
    Error,
    ForkedError,
    FormatError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
    ReadersFullError,
    StoreError,
)
from .store import Change, Store

__version__ = "0.1.0"

__all__ = [
    "open",
    "Store",
    "Event",
    "Deletion",
    "Change",
    "Error",
    "InvalidArgumentError",
    "PayloadTooLargeError",
    "NotFoundError",
    "ClosedError",
    "ConfigurationError",
    "StoreError",
    "ForkedError",
    "DamagedStoreError",
    "FormatError",
    "DiskFullError",
    "ReadersFullError",
    "MAX_NODE",
    "MAX_PAYLOAD",
    "MAX_LIMIT",
]


def open(target: str | os.PathLike[str], **options: Any) -> Store:
    """Open a store.

    ``":memory:"``
        the pure-Python reference store (the executable specification).
    ``"redis://host:port/db"``
        the scale-out store on one Redis; ``"redis+cluster://h1:p1,h2:p2"`` on a
        Redis Cluster (see docs/redis.md).
    any other string or path
        the embedded LMDB store in that directory (created if missing), the default.
    any other ``scheme://...``
        refused with :class:`ConfigurationError` (never taken for a directory).

    Common options: ``durable=True`` (fsync each commit; ``False`` survives a
    crash of the process but not of the machine), ``fanout="read"|"write"|"hybrid"``,
    ``window=800``, ``celebrity_threshold=...``, ``clock=time.time``,
    ``kernel="auto"|"cython"|"python"``; each backend adds its own and
    refuses any option it does not know.
    """
    from .backends import open_target

    return open_target(target, options)  # type: ignore[no-any-return]
