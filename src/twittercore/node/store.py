"""A node's durable state: its users, the chains it holds, follows and subscriptions (SQLite, WAL, fsync per commit).

Everything a node acknowledges is committed here before its HTTP reply, so a
SIGKILL loses nothing acknowledged.  The store holds whole chains only from
their first link (links are applied strictly in sequence), so a chain's head
is also its contiguous frontier.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator

from ..errors import InvalidArgumentError, StoreError
from .chain import GENESIS, HLC_SHIFT, NODE_SHIFT, Link, link_hash, user_id

__all__ = ["NodeStore", "Head"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS events (
    source INTEGER NOT NULL, seq INTEGER NOT NULL, hlc INTEGER NOT NULL,
    prev BLOB NOT NULL, hash BLOB NOT NULL, payload BLOB NOT NULL, late INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (source, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_key ON events (hlc, source);
CREATE TABLE IF NOT EXISTS follows (sink INTEGER NOT NULL, source INTEGER NOT NULL,
    PRIMARY KEY (sink, source)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscribers (source INTEGER NOT NULL, node INTEGER NOT NULL,
    PRIMARY KEY (source, node)) WITHOUT ROWID;
"""

#: How far ahead of the clock the persisted ceiling runs (ms): a restart jumps the clock at most this far
#: (all nodes follow it, their clocks freeze until the wall catches up); a write every ~CEILING_MS/2.
CEILING_MS = 250

Head = tuple[int, int, bytes]  # (seq, hlc, hash) of a chain's newest link


class NodeStore:
    def __init__(self, data: str, index: int, durable: bool = True) -> None:
        os.makedirs(data, exist_ok=True)
        self.index = index
        try:
            self.db = sqlite3.connect(os.path.join(data, "node.sqlite3"), isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"node: cannot open the store in {data}: {exc}") from exc
        stored = self._meta("index")
        if stored is None:
            self._set_meta("index", index)
        elif stored != index:
            raise StoreError(f"node: {data} belongs to node index {stored}, not {index}")
        self.heads: dict[int, Head] = {}
        self._load_heads()

    def _load_heads(self) -> None:
        self.heads.clear()
        rows = self.db.execute(
            "SELECT e.source, e.seq, e.hlc, e.hash FROM events e "
            "JOIN (SELECT source, max(seq) AS s FROM events GROUP BY source) m ON e.source = m.source AND e.seq = m.s"
        )
        for source, seq, hlc, digest in rows:
            self.heads[source] = (seq, hlc, digest)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction (one fsync) for many applied links."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            self._load_heads()
            raise
        self.db.execute("COMMIT")

    # -- meta and the clock ceiling

    def _meta(self, key: str) -> int | None:
        row = self.db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def clock_floor(self) -> int:
        """The clock a restarted node starts from: past every promise its heartbeats could have made."""
        own = max((h[1] for s, h in self.heads.items() if s >> NODE_SHIFT == self.index), default=0)
        return max(own, self._meta("ceiling") or 0)

    def ceiling(self) -> int:
        return self._meta("ceiling") or 0

    def raise_ceiling(self, clock: int) -> int:
        value = clock + (CEILING_MS << HLC_SHIFT)
        self._set_meta("ceiling", value)
        return value

    # -- users

    def create_user(self, name: str) -> int:
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            raise InvalidArgumentError("node: a user name is 1 to 64 characters")
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            if self.db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise InvalidArgumentError(f"node: user {name!r} exists")
            n = (self.db.execute("SELECT count(*) FROM users").fetchone()[0]) + 1
            uid = user_id(self.index, n)
            self.db.execute("INSERT INTO users VALUES (?, ?)", (uid, name))
        return uid

    def user(self, uid: int) -> str | None:
        row = self.db.execute("SELECT name FROM users WHERE id = ?", (uid,)).fetchone()
        return None if row is None else row[0]

    # -- follows (local sinks) and subscribers (local sources -> follower nodes)

    def follow(self, sink: int, source: int) -> bool:
        return self.db.execute("INSERT OR IGNORE INTO follows VALUES (?, ?)", (sink, source)).rowcount == 1

    def unfollow(self, sink: int, source: int) -> bool:
        return self.db.execute("DELETE FROM follows WHERE sink = ? AND source = ?", (sink, source)).rowcount == 1

    def sources_of(self, sink: int) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT source FROM follows WHERE sink = ? ORDER BY source", (sink,))]

    def followed_sources(self) -> set[int]:
        """Every source some local user follows: the chains this node must hold."""
        return {r[0] for r in self.db.execute("SELECT DISTINCT source FROM follows")}

    def subscribe(self, source: int, node: int) -> None:
        self.db.execute("INSERT OR IGNORE INTO subscribers VALUES (?, ?)", (source, node))

    def unsubscribe(self, source: int, node: int) -> None:
        self.db.execute("DELETE FROM subscribers WHERE source = ? AND node = ?", (source, node))

    def subscribers(self) -> dict[int, set[int]]:
        """node index -> the local sources it subscribes to."""
        out: dict[int, set[int]] = {}
        for source, node in self.db.execute("SELECT source, node FROM subscribers"):
            out.setdefault(node, set()).add(source)
        return out

    # -- chains

    def append_local(self, source: int, payload: bytes, hlc: int) -> Link:
        seq, _, prev = self.heads.get(source, (0, 0, GENESIS))
        link = Link(source, seq + 1, hlc, prev, link_hash(prev, seq + 1, hlc, source, payload), payload)
        self._insert(link, late=False)
        return link

    def apply(self, link: Link, late: bool) -> str:
        """Apply the next link of a chain: "applied", "dup" (held already, same hash), "gap", "bad" or "fork"."""
        seq, _, prev = self.heads.get(link.source, (0, 0, GENESIS))
        if link.seq <= seq:
            row = self.db.execute(
                "SELECT hash FROM events WHERE source = ? AND seq = ?", (link.source, link.seq)
            ).fetchone()
            return "dup" if row is not None and row[0] == link.hash else "fork"
        if link.seq > seq + 1:
            return "gap"
        if not link.verify(prev):
            return "bad"
        self._insert(link, late)
        return "applied"

    def _insert(self, link: Link, late: bool) -> None:
        self.db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
            (link.source, link.seq, link.hlc, link.prev_hash, link.hash, link.payload, int(late)),
        )
        self.heads[link.source] = (link.seq, link.hlc, link.hash)

    def chain(self, source: int, after: int, limit: int) -> list[Link]:
        rows = self.db.execute(
            "SELECT source, seq, hlc, prev, hash, payload FROM events WHERE source = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (source, after, limit),
        )
        return [Link(*r) for r in rows]

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM events").fetchone()[0]

    def view(
        self,
        sources: Iterable[int],
        horizon: int,
        below: tuple[int, int] | None,
        above: tuple[int, int] | None,
        limit: int,
    ) -> list[tuple[int, int, int, bytes, int]]:
        """Newest first: (source, seq, hlc, payload, late) of the sources' events with hlc <= horizon,
        key < below and key > above."""
        sources = list(sources)
        if not sources:
            return []
        marks = ",".join("?" * len(sources))
        sql = f"SELECT source, seq, hlc, payload, late FROM events WHERE source IN ({marks}) AND hlc <= ?"
        params: list[int] = [*sources, horizon]
        if below is not None:
            sql += " AND (hlc, source) < (?, ?)"
            params += below
        if above is not None:
            sql += " AND (hlc, source) > (?, ?)"
            params += above
        sql += " ORDER BY hlc DESC, source DESC LIMIT ?"
        params.append(limit)
        return list(self.db.execute(sql, params))
