"""Pure-Python baseline: dicts of lists and ``heapq.merge`` (what one writes in an afternoon)."""

from __future__ import annotations

import heapq
from bisect import bisect_right
from itertools import islice
from typing import Any

from harness.target import Target


class HeapqDicts(Target):
    """``following[sink]`` is a set, ``log[source]`` an ascending list of ids, ``posts[id]`` a row."""

    def __init__(self, *, workdir: str, **options: Any) -> None:
        super().__init__(workdir=workdir)
        self.following: dict[int, set[int]] = {}
        self.logs: dict[int, list[int]] = {}
        self.posts: list[tuple[int, int, bytes]] = [(0, 0, b"")]  # ids start at 1

    def load_graph(self, pairs: list[tuple[int, int]]) -> None:
        for sink, source in pairs:
            self.following.setdefault(sink, set()).add(source)

    def publish(self, source: int, payload: bytes) -> int:
        id = len(self.posts)
        self.posts.append((id, source, payload))
        self.logs.setdefault(source, []).append(id)
        return id

    def _newest(self, log: list[int], max_id: int | None) -> Any:
        end = len(log) if max_id is None else bisect_right(log, max_id)
        return (log[i] for i in range(end - 1, -1, -1))

    def home(self, sink: int, limit: int, max_id: int | None = None) -> list[tuple[int, int, bytes]]:
        logs = self.logs
        runs = [self._newest(logs[s], max_id) for s in self.following.get(sink, ()) if s in logs]
        posts = self.posts
        return [posts[i] for i in islice(heapq.merge(*runs, reverse=True), limit)]

    def timeline(self, source: int, limit: int) -> list[tuple[int, int, bytes]]:
        return [self.posts[i] for i in islice(self._newest(self.logs.get(source, []), None), limit)]

    def follow(self, sink: int, source: int) -> None:
        self.following.setdefault(sink, set()).add(source)

    def unfollow(self, sink: int, source: int) -> None:
        self.following.get(sink, set()).discard(source)
