"""twittercore's Redis backend behind the :class:`~harness.target.Target` protocol.

``twittercore.open("redis+cluster://...", fanout=...)`` on the cluster the
parent started for this run (:mod:`harness.redis_cluster`).  The timed calls
go straight to the public :class:`twittercore.Store` API, as for LMDB.

Two things differ from :class:`~harness.adapters.StoreTarget`:

- ids are ``clock << 10 | bucket``, increasing in commit order but not
  dense, so the post index of an id is looked up among the ids the ingest
  got back (one sorted array, not a dict: its memory counts in the footprint);
- fan-out on write is asynchronous here: publishes enter the buckets'
  feeds and the store's worker thread copies them into windows.  After the
  timed ingest, ``after_ingest`` runs the worker until it is current, and the
  ingest phase counts that time in deliveries/s (``fanout_async``), so the
  row is compared with designs that fan out inside the publish on equal
  terms; the reads that follow are then answered from the windows.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Sequence
from typing import Any

from .adapters import StoreTarget
from .target import Skip

_GRAPH_BATCH = 20_000
_POST_BATCH = 5_000


class RedisStoreTarget(StoreTarget):
    def __init__(
        self,
        *,
        workdir: str,
        redis_url: str | None = None,
        workload: dict[str, Any] | None = None,
        celebrity_fraction: float | None = None,
        **options: Any,
    ) -> None:
        if not redis_url:
            raise Skip("no Redis Cluster was started for this run")
        try:
            import redis  # noqa: F401
        except ImportError:
            raise Skip("redis-py is not installed (pip install 'twittercore[redis]')") from None
        super().__init__(
            workdir=workdir, target=redis_url, workload=workload, celebrity_fraction=celebrity_fraction, **options
        )
        self.requested_fanout = self.fanout
        self.fanout_async = getattr(self.store, "_windows", None) is not None
        if self.fanout != "read" and not self.fanout_async:
            self.fanout = "read"  # a store without windows merges at read time: say so, claim no deliveries
        self._ids = array("Q")  # id of post i of the ingest, ascending

    def load_graph(self, pairs: list[tuple[int, int]]) -> None:
        for start in range(0, len(pairs), _GRAPH_BATCH):
            self.store.follow_many(pairs[start : start + _GRAPH_BATCH])

    def bulk_posts(self, items: Sequence[tuple[int, bytes]]) -> None:
        for start in range(0, len(items), _POST_BATCH):
            self._ids.extend(e.id for e in self.store.publish_many(items[start : start + _POST_BATCH]))

    def publish(self, source: int, payload: bytes) -> Any:
        event = self.store.publish(source, payload)
        self._ids.append(event.id)
        return event

    def after_ingest(self) -> None:
        windows = getattr(self.store, "_windows", None)
        if windows is not None:
            windows.settle()

    def post_index(self, id: int) -> int:
        i = bisect.bisect_left(self._ids, id)
        if i == len(self._ids) or self._ids[i] != id:
            return -1  # not a post of the ingest: the cross-check reports the row
        return i

    def memory_elsewhere(self) -> int:
        return sum(int(m.info("memory")["used_memory"]) for m in self.store._r.masters())

    def extra_results(self) -> dict[str, Any]:
        router = self.store._r
        return {
            "requested_fanout": self.requested_fanout,
            "served_fanout": self.fanout,
            "masters": len(router.masters()),
            "round_trips": router.round_trips,
            "commands": router.commands,
        }
