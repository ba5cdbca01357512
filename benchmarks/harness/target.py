"""The small protocol every implementation under test speaks (a *target*).

A target is built by its registry factory inside a fresh child process, as
``factory(workdir=..., workload=..., **options)``; ``workdir`` is an empty
private directory (its files count as the target's disk footprint) and
``workload`` the workload's parameters (a dict: users, posts, ...).

Ids: a target assigns its own ids, but every target receives the same ordered
ingest (graph first, then posts in order), and :meth:`Target.post_index` maps
an id back to the post's index in that ingest.  The cross-check compares
pages by post index, source and payload, never by raw id: twittercore gives
each effective follow a position too, so its post ids are offset by the graph.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

Row = tuple[int, int, bytes]  # (id, source, payload)


class Target:
    """Base class with the defaults; subclasses override what they do differently."""

    #: "read" (merge at read time), "write" (each publish is delivered to
    #: followers) or "hybrid" (delivered except from celebrities).
    fanout = "read"

    def __init__(self, *, workdir: str, **options: Any) -> None:
        self.workdir = workdir

    # -- load (untimed): the same ordered ingest for everyone
    def load_graph(self, pairs: list[tuple[int, int]]) -> None:
        """Apply ``(sink, source)`` follows in order (untimed); called once per chunk of the graph."""
        raise NotImplementedError

    def bulk_posts(self, items: Sequence[tuple[int, bytes]]) -> None:
        """Publish ``items`` in order, batched as the target likes (untimed); called per chunk."""
        for source, payload in items:
            self.publish(source, payload)

    def after_ingest(self) -> None:
        """Called once every post is in (the ids are now fixed)."""

    # -- timed calls
    def publish(self, source: int, payload: bytes) -> Any:
        """One post, committed on its own (as an application's request would)."""
        raise NotImplementedError

    def home(self, sink: int, limit: int, max_id: int | None = None) -> Sequence[Any]:
        """Newest first; ``max_id`` inclusive.  Items index like ``(id, source, payload, ...)``."""
        raise NotImplementedError

    def timeline(self, source: int, limit: int) -> Sequence[Any]:
        raise NotImplementedError

    def follow(self, sink: int, source: int) -> None:
        raise NotImplementedError

    def unfollow(self, sink: int, source: int) -> None:
        raise NotImplementedError

    # -- bookkeeping
    def delivered_to(self, followers: int) -> int:
        """How many deliveries one publish by a source with ``followers`` makes."""
        return followers if self.fanout == "write" else 0

    def post_index(self, id: int) -> int:
        """The index, in the ordered ingest, of the post with this id."""
        return id - 1

    def memory_elsewhere(self) -> int:
        """Bytes held outside this process (a server's memory); 0 for embedded targets."""
        return 0

    def extra_results(self) -> dict[str, Any]:
        """Target-specific numbers for the result JSON (under ``"extra"``), read after the timed phases."""
        return {}

    def close(self) -> None:
        pass

    # -- helpers
    @staticmethod
    def rows(page: Sequence[Any]) -> list[Row]:
        return [(item[0], item[1], item[2]) for item in page]

    def disk_bytes(self) -> int:
        """Bytes allocated on disk under ``workdir`` (sparse files count what they use)."""
        total = 0
        for root, _dirs, files in os.walk(self.workdir):
            for name in files:
                try:
                    total += os.stat(os.path.join(root, name)).st_blocks * 512
                except OSError:
                    pass
        return total


class Skip(Exception):
    """Raised by a factory when its implementation cannot run here (the reason is shown)."""
