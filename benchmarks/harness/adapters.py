"""twittercore's own stores behind the :class:`~harness.target.Target` protocol.

One adapter serves every store (memory, LMDB with either merge kernel, every
fan-out strategy): they share the public :class:`twittercore.Store` API, and
the timed calls go straight to it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import twittercore

from .target import Skip, Target

_GRAPH_BATCH = 100_000
_POST_BATCH = 10_000


class StoreTarget(Target):
    """``twittercore.open(target, **options)``; ``target`` ``"lmdb"`` means a directory in workdir."""

    def __init__(
        self,
        *,
        workdir: str,
        target: str = "lmdb",
        workload: dict[str, Any] | None = None,
        celebrity_fraction: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(workdir=workdir)
        self.fanout = options.get("fanout", "read")
        if celebrity_fraction is not None:
            # Scale with the workload, so the quick run has celebrities too.
            options["celebrity_threshold"] = max(1, int((workload or {}).get("users", 10_000) * celebrity_fraction))
        self.threshold = options.get("celebrity_threshold")
        where = os.path.join(workdir, "store") if target == "lmdb" else target
        try:
            self.store = twittercore.open(where, **options)
        except ImportError as exc:
            raise Skip(f"{where!r} needs a module that is not there yet ({exc})") from None
        except (twittercore.ConfigurationError, NotImplementedError) as exc:
            raise Skip(f"twittercore.open(..., {options}) is not available yet: {exc}") from None
        self._offset = 0

    def load_graph(self, pairs: list[tuple[int, int]]) -> None:
        for start in range(0, len(pairs), _GRAPH_BATCH):
            self.store.follow_many(pairs[start : start + _GRAPH_BATCH])
        # Each effective follow took a position; the first post gets the next one.
        self._offset = self.store.last_id()

    def bulk_posts(self, items: Sequence[tuple[int, bytes]]) -> None:
        for start in range(0, len(items), _POST_BATCH):
            self.store.publish_many(items[start : start + _POST_BATCH])

    def publish(self, source: int, payload: bytes) -> Any:
        return self.store.publish(source, payload)

    def home(self, sink: int, limit: int, max_id: int | None = None) -> Sequence[Any]:
        return self.store.home(sink, limit, max_id=max_id)

    def timeline(self, source: int, limit: int) -> Sequence[Any]:
        return self.store.timeline(source, limit)

    def follow(self, sink: int, source: int) -> None:
        self.store.follow(sink, source)

    def unfollow(self, sink: int, source: int) -> None:
        self.store.unfollow(sink, source)

    def delivered_to(self, followers: int) -> int:
        if self.fanout == "hybrid":
            return followers if self.threshold is None or followers <= self.threshold else 0
        return super().delivered_to(followers)

    def post_index(self, id: int) -> int:
        return id - self._offset - 1

    def close(self) -> None:
        self.store.close()
