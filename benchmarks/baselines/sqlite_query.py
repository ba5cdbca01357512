"""SQLite baseline: the schema and query a typical Django or Flask app would have.

``posts(id, author, body)`` with an ``(author, id)`` index, ``follows(follower,
followee)``; the home timeline is one query, ``WHERE author IN (SELECT
followee ...) ORDER BY id DESC LIMIT n``.  WAL and ``synchronous=NORMAL``: a
commit survives a crash of the process but not of the machine, the same
durability the LMDB store gets with ``durable=False``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from harness.target import Target

SCHEMA = """
CREATE TABLE posts (id INTEGER PRIMARY KEY, author INTEGER NOT NULL, body BLOB NOT NULL);
CREATE INDEX posts_author_id ON posts (author, id);
CREATE TABLE follows (follower INTEGER NOT NULL, followee INTEGER NOT NULL,
                      PRIMARY KEY (follower, followee));
CREATE INDEX follows_followee ON follows (followee, follower);
"""

HOME = """
SELECT id, author, body FROM posts
WHERE author IN (SELECT followee FROM follows WHERE follower = ?) AND id <= ?
ORDER BY id DESC LIMIT ?
"""
TIMELINE = "SELECT id, author, body FROM posts WHERE author = ? ORDER BY id DESC LIMIT ?"

_NO_MAX = (1 << 63) - 1  # SQLite integers are signed 64-bit


class SQLiteQuery(Target):
    def __init__(self, *, workdir: str, **options: Any) -> None:
        super().__init__(workdir=workdir)
        self.db = sqlite3.connect(os.path.join(workdir, "twitter.sqlite3"))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def load_graph(self, pairs: list[tuple[int, int]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO follows VALUES (?, ?)", pairs)

    def bulk_posts(self, items: Sequence[tuple[int, bytes]]) -> None:
        with self.db:
            self.db.executemany("INSERT INTO posts (author, body) VALUES (?, ?)", items)

    def publish(self, source: int, payload: bytes) -> int:
        with self.db:  # one transaction per post, as one request would do
            return self.db.execute("INSERT INTO posts (author, body) VALUES (?, ?)", (source, payload)).lastrowid

    def home(self, sink: int, limit: int, max_id: int | None = None) -> list[Any]:
        return self.db.execute(HOME, (sink, _NO_MAX if max_id is None else max_id, limit)).fetchall()

    def timeline(self, source: int, limit: int) -> list[Any]:
        return self.db.execute(TIMELINE, (source, limit)).fetchall()

    def follow(self, sink: int, source: int) -> None:
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO follows VALUES (?, ?)", (sink, source))

    def unfollow(self, sink: int, source: int) -> None:
        with self.db:
            self.db.execute("DELETE FROM follows WHERE follower = ? AND followee = ?", (sink, source))

    def close(self) -> None:
        self.db.close()
