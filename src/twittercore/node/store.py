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
from .chain import GENESIS, HLC_SHIFT, NODE_SHIFT, Link, link_hash, tombstone_target, user_id

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
CREATE TABLE IF NOT EXISTS members (idx INTEGER PRIMARY KEY, url TEXT NOT NULL, incarnation INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pubkeys (source INTEGER NOT NULL, key BLOB NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (source, key)) WITHOUT ROWID;
"""

# Columns added since the first version; added to an older file on open.
#   tomb: for a tombstone link, the seq it deletes (0 otherwise); deleted: 1 once a tombstone named it.
_UPGRADES = [("tomb", "INTEGER NOT NULL DEFAULT 0"), ("deleted", "INTEGER NOT NULL DEFAULT 0")]

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
            have = {row[1] for row in self.db.execute("PRAGMA table_info(events)")}
            for name, decl in _UPGRADES:
                if name not in have:
                    self.db.execute(f"ALTER TABLE events ADD COLUMN {name} {decl}")
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

    def next_incarnation(self) -> int:
        """This node's incarnation for this start: one more than the last start's, persisted first."""
        value = (self._meta("incarnation") or 0) + 1
        self._set_meta("incarnation", value)
        return value

    def members(self) -> dict[int, tuple[str, int]]:
        """The membership last learned (index -> (url, incarnation)), so a restart knows its peers."""
        return {i: (u, n) for i, u, n in self.db.execute("SELECT idx, url, incarnation FROM members")}

    def save_member(self, index: int, url: str, incarnation: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO members VALUES (?, ?, ?)", (index, url, incarnation))

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
            uid = user_id(self.index, self.max_user_number() + 1)
            self.db.execute("INSERT INTO users VALUES (?, ?)", (uid, name))
        return uid

    def max_user_number(self) -> int:
        """The highest local number of a user of this node (the next one is one more)."""
        row = self.db.execute("SELECT max(id) FROM users").fetchone()
        return 0 if row[0] is None else row[0] - (self.index << NODE_SHIFT)

    def ensure_user(self, uid: int, name: str) -> None:
        """A user whose id another allocator chose (the Mastodon API's account state)."""
        try:
            self.db.execute("INSERT OR IGNORE INTO users VALUES (?, ?)", (uid, name))
        except sqlite3.IntegrityError as exc:
            raise InvalidArgumentError(f"node: user {uid}: the name {name!r} is taken") from exc
        if self.user(uid) != name:
            raise InvalidArgumentError(f"node: user {uid} exists under another name ({self.user(uid)!r})")

    def own_sources(self) -> list[int]:
        """This node's users, and any chain of ours it holds (a user row can be missing from an old copy)."""
        users = {r[0] for r in self.db.execute("SELECT id FROM users")}
        users |= set(self.heads)
        return sorted(u for u in users if u >> NODE_SHIFT == self.index)

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

    def is_following(self, sink: int, source: int) -> bool:
        return (
            self.db.execute("SELECT 1 FROM follows WHERE sink = ? AND source = ?", (sink, source)).fetchone()
            is not None
        )

    def sinks_of(self, source: int, limit: int | None, after: int | None) -> list[int]:
        """This node's users following ``source`` (other nodes' followers are not known here)."""
        rows = self.db.execute(
            "SELECT sink FROM follows WHERE source = ? AND sink > ? ORDER BY sink LIMIT ?",
            (source, -1 if after is None else after, -1 if limit is None else limit),
        )
        return [r[0] for r in rows]

    def sink_count(self, source: int) -> int:
        return int(self.db.execute("SELECT count(*) FROM follows WHERE source = ?", (source,)).fetchone()[0])

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
        target = tombstone_target(link.payload)
        self.db.execute(
            "INSERT INTO events (source, seq, hlc, prev, hash, payload, late, tomb) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (link.source, link.seq, link.hlc, link.prev_hash, link.hash, link.payload, int(late), target),
        )
        if target:
            self.db.execute("UPDATE events SET deleted = 1 WHERE source = ? AND seq = ?", (link.source, target))
        self.heads[link.source] = (link.seq, link.hlc, link.hash)

    # -- publish keys (a retried publish returns the first one's link)

    def keyed(self, source: int, key: bytes) -> int | None:
        row = self.db.execute("SELECT seq FROM pubkeys WHERE source = ? AND key = ?", (source, key)).fetchone()
        return None if row is None else row[0]

    def record_key(self, source: int, key: bytes, seq: int) -> None:
        self.db.execute("INSERT INTO pubkeys VALUES (?, ?, ?)", (source, key, seq))

    # -- single events, for the Mastodon API

    def event_at(self, hlc: int, node: int) -> tuple[int, int, int, bytes] | None:
        """(source, seq, hlc, payload) of the live (not deleted, not a tombstone) event at ``hlc`` from ``node``."""
        row: tuple[int, int, int, bytes] | None = self.db.execute(
            "SELECT source, seq, hlc, payload FROM events WHERE hlc = ? AND source >= ? AND source < ? "
            "AND tomb = 0 AND deleted = 0",
            (hlc, node << NODE_SHIFT, (node + 1) << NODE_SHIFT),
        ).fetchone()
        return row

    def link_at(self, source: int, seq: int) -> tuple[int, int, bytes, int] | None:
        """(hlc, seq, payload, deleted) of one link of a chain."""
        row: tuple[int, int, bytes, int] | None = self.db.execute(
            "SELECT hlc, seq, payload, deleted FROM events WHERE source = ? AND seq = ?", (source, seq)
        ).fetchone()
        return row

    def live_count(self, source: int) -> int:
        return int(
            self.db.execute(
                "SELECT count(*) FROM events WHERE source = ? AND tomb = 0 AND deleted = 0", (source,)
            ).fetchone()[0]
        )

    def changes(
        self, sources: list[int], horizon: int, above: tuple[int, int], limit: int
    ) -> list[tuple[int, int, int, bytes, int, int]]:
        """Oldest first: (source, seq, hlc, payload, tomb, deleted) of every link with key > above, hlc <= horizon."""
        if not sources:
            return []
        marks = ",".join("?" * len(sources))
        return list(
            self.db.execute(
                f"SELECT source, seq, hlc, payload, tomb, deleted FROM events WHERE source IN ({marks}) "
                "AND hlc <= ? AND (hlc, source) > (?, ?) ORDER BY hlc, source LIMIT ?",
                [*sources, horizon, *above, limit],
            )
        )

    def chain(self, source: int, after: int, limit: int) -> list[Link]:
        rows = self.db.execute(
            "SELECT source, seq, hlc, prev, hash, payload FROM events WHERE source = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (source, after, limit),
        )
        return [Link(*r) for r in rows]

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM events").fetchone()[0])

    def view(
        self,
        sources: Iterable[int],
        horizon: int,
        below: tuple[int, int] | None,
        above: tuple[int, int] | None,
        limit: int,
        oldest: bool = False,
    ) -> list[tuple[int, int, int, bytes, int]]:
        """Newest first: (source, seq, hlc, payload, late) of the sources' live events with hlc <= horizon,
        key < below and key > above; the newest ``limit`` of them, or with ``oldest`` the oldest."""
        sources = list(sources)
        if not sources:
            return []
        marks = ",".join("?" * len(sources))
        sql = (
            f"SELECT source, seq, hlc, payload, late FROM events WHERE source IN ({marks}) AND hlc <= ? "
            "AND tomb = 0 AND deleted = 0"
        )
        params: list[int] = [*sources, horizon]
        if below is not None:
            sql += " AND (hlc, source) < (?, ?)"
            params += below
        if above is not None:
            sql += " AND (hlc, source) > (?, ?)"
            params += above
        sql += f" ORDER BY hlc {'ASC' if oldest else 'DESC'}, source {'ASC' if oldest else 'DESC'} LIMIT ?"
        params.append(limit)
        rows = list(self.db.execute(sql, params))
        if oldest:
            rows.reverse()
        return rows
