"""Redis baseline: Mastodon's home feeds (fan-out on write into sorted sets).

Each post is added to every follower's home sorted set (score = member = id)
and the set is trimmed to the newest 800 (``ZREMRANGEBYRANK key 0 -801``);
bodies live in one hash.  A read is ``ZREVRANGEBYSCORE home max -inf LIMIT 0
n`` then ``HMGET`` of the bodies: two round trips, as Mastodon's
``HomeFeed#get`` then the status fetch.  Following merges the source's recent
posts into the home set, unfollowing removes them (Mastodon's MergeWorker and
UnmergeWorker).  redis-py with hiredis; the harness starts the server.

Keys: ``f:<sink>`` the sources a sink follows, ``r:<source>`` its followers
(sets), ``u:<source>`` the source's posts (sorted set), ``h:<sink>`` the
home feed, ``b`` the bodies (``id -> 8-byte author + payload``).  Ids are
assigned by the client in ingest order, as Mastodon's Snowflake ids are by
the application.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from harness.target import Skip, Target

WINDOW = 800  # Mastodon's FeedManager::MAX_ITEMS in the brief; Twitter's figure too
MERGE_ON_FOLLOW = WINDOW // 4  # as Mastodon's merge_into_home
_AUTHOR = struct.Struct("<Q")
_BATCH = 5_000  # commands per pipeline while bulk loading


class RedisZsets(Target):
    fanout = "write"

    def __init__(self, *, workdir: str, redis_url: str | None = None, **options: Any) -> None:
        super().__init__(workdir=workdir)
        if not redis_url:
            raise Skip("no redis-server was started for this run")
        try:
            import redis
        except ImportError:
            raise Skip("redis-py is not installed (pip install 'twittercore[redis]')") from None
        self.r = redis.Redis.from_url(redis_url)
        self.r.flushall()
        self.next_id = 1
        self.followers: dict[int, set[int]] = {}  # only to build the homes while bulk loading

    # ------------------------------------------------------------- loading
    def load_graph(self, pairs: list[tuple[int, int]]) -> None:
        following: dict[int, list[int]] = {}
        for sink, source in pairs:
            following.setdefault(sink, []).append(source)
            self.followers.setdefault(source, set()).add(sink)
        pipe = self.r.pipeline(transaction=False)
        for n, (sink, sources) in enumerate(following.items(), 1):
            pipe.sadd(f"f:{sink}", *sources)
            if n % _BATCH == 0:
                pipe.execute()
        for n, (source, sinks) in enumerate(self.followers.items(), 1):
            pipe.sadd(f"r:{source}", *sinks)
            if n % _BATCH == 0:
                pipe.execute()
        pipe.execute()

    def bulk_posts(self, items: Sequence[tuple[int, bytes]]) -> None:
        """Load as a backfill would: each home gets its newest 800 in one ZADD (untimed).

        The result equals one fan-out per post followed by trims, because the
        whole graph is in before any post.
        """
        first = self.next_id
        self.next_id += len(items)
        pipe = self.r.pipeline(transaction=False)
        bodies: dict[int, bytes] = {}
        by_author: dict[int, dict[int, int]] = {}
        for offset, (source, payload) in enumerate(items):
            id = first + offset
            bodies[id] = _AUTHOR.pack(source) + payload
            by_author.setdefault(source, {})[id] = id
            if len(bodies) == 1000:
                pipe.hset("b", mapping=bodies)
                bodies = {}
        if bodies:
            pipe.hset("b", mapping=bodies)
        for source, ids in by_author.items():
            pipe.zadd(f"u:{source}", ids)
        pipe.execute()
        homes: dict[int, dict[int, int]] = {}
        for offset in range(len(items) - 1, -1, -1):  # newest first, stop at the window
            id = first + offset
            for sink in self.followers.get(items[offset][0], ()):
                home = homes.get(sink)
                if home is None:
                    home = homes[sink] = {}
                if len(home) < WINDOW:
                    home[id] = id
        for n, (sink, home) in enumerate(homes.items(), 1):
            pipe.zadd(f"h:{sink}", home)
            pipe.zremrangebyrank(f"h:{sink}", 0, -(WINDOW + 1))
            if n % 500 == 0:
                pipe.execute()
        pipe.execute()

    def after_ingest(self) -> None:
        self.followers = {}  # from here on the graph lives in Redis only

    # --------------------------------------------------------- timed calls
    def publish(self, source: int, payload: bytes) -> int:
        id = self.next_id
        self.next_id += 1
        sinks = self.r.smembers(f"r:{source}")  # the application's follower query
        pipe = self.r.pipeline(transaction=False)
        pipe.hset("b", id, _AUTHOR.pack(source) + payload)
        pipe.zadd(f"u:{source}", {id: id})
        for sink in sinks:
            key = b"h:" + sink
            pipe.zadd(key, {id: id})
            pipe.zremrangebyrank(key, 0, -(WINDOW + 1))
        pipe.execute()
        return id

    def _rows(self, ids: list[bytes]) -> list[tuple[int, int, bytes]]:
        if not ids:
            return []
        values = self.r.hmget("b", ids)
        return [(int(i), _AUTHOR.unpack_from(v)[0], v[8:]) for i, v in zip(ids, values)]

    def home(self, sink: int, limit: int, max_id: int | None = None) -> list[tuple[int, int, bytes]]:
        top = "+inf" if max_id is None else max_id
        return self._rows(self.r.zrevrangebyscore(f"h:{sink}", top, "-inf", start=0, num=limit))

    def timeline(self, source: int, limit: int) -> list[tuple[int, int, bytes]]:
        return self._rows(self.r.zrevrange(f"u:{source}", 0, limit - 1))

    def follow(self, sink: int, source: int) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.sadd(f"f:{sink}", source)
        pipe.sadd(f"r:{source}", sink)
        pipe.zrevrange(f"u:{source}", 0, MERGE_ON_FOLLOW - 1)
        recent = pipe.execute()[2]
        pipe = self.r.pipeline(transaction=False)
        if recent:
            pipe.zadd(f"h:{sink}", {id: int(id) for id in recent})
            pipe.zremrangebyrank(f"h:{sink}", 0, -(WINDOW + 1))
        pipe.execute()

    def unfollow(self, sink: int, source: int) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.srem(f"f:{sink}", source)
        pipe.srem(f"r:{source}", sink)
        pipe.zrange(f"u:{source}", 0, -1)
        ids = pipe.execute()[2]
        if ids:
            self.r.zrem(f"h:{sink}", *ids)

    # ---------------------------------------------------------- bookkeeping
    def memory_elsewhere(self) -> int:
        return int(self.r.info("memory")["used_memory"])

    def close(self) -> None:
        self.r.close()
