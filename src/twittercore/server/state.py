"""Server state that is not the timeline: accounts, bearer tokens, Idempotency-Keys.

The twittercore store only knows node ids and opaque payloads, so whatever
makes a node an *account* lives here, in one small SQLite file next to the
store.  SQLite in WAL mode with a busy timeout is safe for several worker
processes sharing one data dir: every worker opens its own connection, and
each change is one short transaction.

Tokens are kept as SHA-256 digests so a leaked state file does not leak
credentials; the clear token is shown once, when the account is created.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass

__all__ = ["Account", "State", "StateError", "USERNAME_RE", "IDEMPOTENCY_TTL"]

# Mastodon's rule for local usernames.
USERNAME_RE = re.compile(r"^[A-Za-z0-9_]{1,30}$")

# Mastodon keeps an Idempotency-Key for one hour; a retry after that is a new post.
IDEMPOTENCY_TTL = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    username   TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    digest     TEXT PRIMARY KEY,
    account    INTEGER NOT NULL REFERENCES accounts(id),
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    account    INTEGER NOT NULL,
    key        TEXT NOT NULL,
    status     INTEGER,            -- NULL while the first request is publishing
    created_at REAL NOT NULL,
    PRIMARY KEY (account, key)
);
"""


class StateError(Exception):
    """A request the state cannot satisfy (e.g. a taken username); the message is for the client."""


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    created_at: float


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class State:
    """Accounts, tokens and Idempotency-Keys in SQLite (one connection per process)."""

    def __init__(self, path: str) -> None:
        # One connection shared by the event loop and the thread pool, so a lock
        # serialises its use; every call is a short statement.
        self._db = sqlite3.connect(path, timeout=10.0, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA busy_timeout = 10000")
            if path != ":memory:":
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA)
        # Accounts and tokens never change once created, so each worker caches them.
        self._by_id: dict[int, Account] = {}
        self._by_token: dict[str, int] = {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -------------------------------------------------------------- accounts

    def create_account(self, username: str) -> tuple[Account, str]:
        """Create an account and its bearer token; returns ``(account, clear token)``."""
        if not isinstance(username, str) or not USERNAME_RE.match(username):
            raise StateError(
                "Validation failed: Username must be 1 to 30 letters, digits or underscores"
            )
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                cur = self._db.execute(
                    "INSERT INTO accounts (username, created_at) VALUES (?, ?)", (username, now)
                )
                account = Account(int(cur.lastrowid), username, now)
                self._db.execute(
                    "INSERT INTO tokens (digest, account, created_at) VALUES (?, ?, ?)",
                    (digest(token), account.id, now),
                )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                raise StateError("Validation failed: Username has already been taken") from None
        self._by_id[account.id] = account
        return account, token

    def account(self, id: int) -> Account | None:
        found = self._by_id.get(id)
        if found is None:
            with self._lock:
                row = self._db.execute(
                    "SELECT id, username, created_at FROM accounts WHERE id = ?", (id,)
                ).fetchone()
            if row is not None:
                found = self._by_id[id] = Account(*row)
        return found

    def account_ids(self) -> list[int]:
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT id FROM accounts ORDER BY id")]

    def account_by_name(self, username: str) -> Account | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, username, created_at FROM accounts WHERE username = ?", (username,)
            ).fetchone()
        return None if row is None else Account(*row)

    def account_for_token(self, token: str) -> Account | None:
        id = self._by_token.get(token)
        if id is None:
            with self._lock:
                row = self._db.execute(
                    "SELECT account FROM tokens WHERE digest = ?", (digest(token),)
                ).fetchone()
            if row is None:
                return None
            id = self._by_token[token] = int(row[0])
        return self.account(id)

    # ------------------------------------------------------- idempotency keys

    def claim_key(self, account: int, key: str) -> tuple[bool, int | None]:
        """Try to become the one request that publishes for ``(account, key)``.

        Returns ``(True, None)`` when this request owns the key and must publish,
        else ``(False, status_id_or_None)``: None means another request holds the
        key and has not finished yet.
        """
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT status, created_at FROM idempotency WHERE account = ? AND key = ?",
                    (account, key),
                ).fetchone()
                if row is not None and row[1] >= now - IDEMPOTENCY_TTL:
                    return False, row[0]
                self._db.execute(
                    "INSERT OR REPLACE INTO idempotency (account, key, status, created_at) VALUES (?, ?, NULL, ?)",
                    (account, key, now),
                )
                return True, None
            finally:
                self._db.execute("COMMIT")

    def settle_key(self, account: int, key: str, status: int | None) -> None:
        """Record the status published under a claimed key (None: give the claim up)."""
        with self._lock:
            if status is None:
                self._db.execute(
                    "DELETE FROM idempotency WHERE account = ? AND key = ? AND status IS NULL",
                    (account, key),
                )
            else:
                self._db.execute(
                    "UPDATE idempotency SET status = ? WHERE account = ? AND key = ?",
                    (status, account, key),
                )

    def keyed_status(self, account: int, key: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT status FROM idempotency WHERE account = ? AND key = ?", (account, key)
            ).fetchone()
        return None if row is None else row[0]
