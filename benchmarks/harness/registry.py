"""Every implementation the harness runs: one :class:`Entry` each.

To benchmark something new, add an entry.  The fan-out strategies are
already here: while ``twittercore.open(path, fanout="write")`` raises, their
child reports *skipped* with the store's own message, and they join the
table the day it stops raising.  ``--extra-impl NAME=module:Class`` adds an
entry from the command line (``--extra-path`` puts its module on sys.path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Used as the reference pages of the cross-check when it runs (the spec, G5).
REFERENCE = "memory"


@dataclass(frozen=True)
class Entry:
    name: str  # short, stable: the JSON key and the table row
    label: str  # what the row means, for the README
    factory: str  # "module:callable", imported in the child
    options: dict[str, Any] = field(default_factory=dict)
    family: str = "twittercore"  # "twittercore" or "baseline"
    needs_redis: bool = False  # one redis-server, started around the run
    needs_cluster: bool = False  # a 3-master Redis Cluster, started around the run
    #: Part of ``--quick`` (CI) unless False; ``--only`` runs it whatever this says.
    quick: bool = True
    #: Skip workloads with more follows than this: the implementation would
    #: need more memory than the 24 GiB machine kind has (measured per edge).
    max_edges: int | None = None


ENTRIES: list[Entry] = [
    Entry(
        "memory",
        "twittercore reference store (pure Python, in memory)",
        "harness.adapters:StoreTarget",
        {"target": ":memory:"},
        max_edges=20_000_000,
    ),
    Entry(
        "lmdb-python",
        "twittercore LMDB, fan-out on read, pure-Python merge",
        "harness.adapters:StoreTarget",
        {"kernel": "python", "durable": False},
    ),
    Entry(
        "lmdb-cython",
        "twittercore LMDB, fan-out on read, Cython merge",
        "harness.adapters:StoreTarget",
        {"kernel": "cython", "durable": False},
    ),
    Entry(
        "lmdb-write",
        "twittercore LMDB, fan-out on write (window 800), Cython merge",
        "harness.adapters:StoreTarget",
        {"kernel": "cython", "durable": False, "fanout": "write"},
    ),
    Entry(
        "lmdb-hybrid",
        "twittercore LMDB, hybrid fan-out (celebrities: > users/10 followers), Cython merge",
        "harness.adapters:StoreTarget",
        {"kernel": "cython", "durable": False, "fanout": "hybrid", "celebrity_fraction": 0.1},
    ),
    # The same stores without the decoded-event cache: what the LMDB lookups
    # alone cost (the cache is on by default; see README, event_cache=).
    Entry(
        "lmdb-cython-nocache",
        "twittercore LMDB, fan-out on read, Cython merge, event_cache=0",
        "harness.adapters:StoreTarget",
        {"kernel": "cython", "durable": False, "event_cache": 0},
    ),
    Entry(
        "lmdb-write-nocache",
        "twittercore LMDB, fan-out on write, event_cache=0",
        "harness.adapters:StoreTarget",
        {"kernel": "cython", "durable": False, "fanout": "write", "event_cache": 0},
    ),
    Entry(
        "sqlite",
        "SQLite query: author IN (SELECT followee ...) ORDER BY id DESC, WAL",
        "baselines.sqlite_query:SQLiteQuery",
        family="baseline",
    ),
    Entry(
        "redis-zsets",
        "Redis sorted sets, Mastodon fan-out on write (trim 800), hiredis",
        "baselines.redis_zsets:RedisZsets",
        family="baseline",
        needs_redis=True,
        max_edges=12_000_000,
    ),
    # The Redis backend on a real 3-master cluster (harness/redis_cluster.py).
    # Not in --quick: starting the cluster and loading it one round trip per
    # bucket run costs more than CI's budget for the whole comparison.
    Entry(
        "redis-read",
        "twittercore Redis Cluster (3 masters), fan-out on read, Cython merge",
        "harness.redis_target:RedisStoreTarget",
        {"kernel": "cython", "fanout": "read"},
        needs_cluster=True,
        quick=False,
        max_edges=12_000_000,
    ),
    Entry(
        "redis-write",
        "twittercore Redis Cluster (3 masters), fan-out on write (windows kept by the store's worker)",
        "harness.redis_target:RedisStoreTarget",
        {"kernel": "cython", "fanout": "write"},
        needs_cluster=True,
        quick=False,
        max_edges=12_000_000,
    ),
    Entry(
        "redis-hybrid",
        "twittercore Redis Cluster (3 masters), hybrid (celebrities: > users/10 followers)",
        "harness.redis_target:RedisStoreTarget",
        {"kernel": "cython", "fanout": "hybrid", "celebrity_fraction": 0.1},
        needs_cluster=True,
        quick=False,
        max_edges=12_000_000,
    ),
    Entry(
        "heapq-dicts",
        "pure-Python dicts + heapq.merge",
        "baselines.heapq_dicts:HeapqDicts",
        family="baseline",
        max_edges=50_000_000,
    ),
]


def select(only: str | None, extra: list[str]) -> list[Entry]:
    """The entries named in ``only`` (comma-separated; all when None), plus ``extra`` ones."""
    entries = list(ENTRIES)
    for spec in extra:
        name, _, factory = spec.partition("=")
        if not name or ":" not in factory:
            raise ValueError(f"--extra-impl {spec!r}: expected NAME=module:Class")
        entries.append(Entry(name, f"extra: {factory}", factory, family="extra"))
    if only:
        wanted = [n.strip() for n in only.split(",") if n.strip()]
        known = {e.name for e in entries}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise ValueError(f"--only: unknown implementation(s) {unknown}; known: {sorted(known)}")
        entries = [e for e in entries if e.name in wanted]
    return entries
