"""What a user would otherwise pick, written the way a typical application would.

* :mod:`.sqlite_query` - one SQL query over ``posts``/``follows`` (Django or Flask style);
* :mod:`.redis_zsets`  - Mastodon's home feeds: fan-out on write into sorted sets;
* :mod:`.heapq_dicts`  - pure-Python dicts and ``heapq.merge``.

Each is a :class:`harness.target.Target`; ids count posts from 1 in ingest order.
"""
