"""The account state in one SQLite file next to the store (see :mod:`.state` for the interface).

SQLite in WAL mode with a busy timeout is safe for several worker processes
sharing one data dir: every worker opens its own connection, and each
change is one short transaction.  A state file written by an older version
of the server (accounts and tokens only) is upgraded in place on open.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .state import Account, AccountState, Client, CodeGrant, Grant, StateError, digest, new_secret

__all__ = ["SQLiteState", "CODE_TTL"]

#: How long an authorization code may be redeemed (Doorkeeper's default).
CODE_TTL = 600.0

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    username   TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    digest     TEXT PRIMARY KEY,
    account    INTEGER NOT NULL,   -- 0: an app-only token (client_credentials)
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS clients (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id     TEXT NOT NULL UNIQUE,
    secret        TEXT NOT NULL,   -- digest
    name          TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,   -- newline-separated
    scopes        TEXT NOT NULL,   -- space-separated
    website       TEXT,
    created_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS codes (
    digest         TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    account        INTEGER NOT NULL,
    scopes         TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    challenge      TEXT,
    challenge_method TEXT,
    expires_at     REAL NOT NULL
);
"""

# Columns added since the first release; added to an older file on open.
_UPGRADES = {
    "accounts": [
        ("ready", "INTEGER NOT NULL DEFAULT 1"),  # 0 while a registration is half done
        ("email", "TEXT"),
        ("password", "TEXT"),  # argon2 hash, or NULL: no password login
    ],
    "tokens": [
        ("scopes", "TEXT NOT NULL DEFAULT 'read write follow'"),
        ("client_id", "TEXT"),
    ],
}

_ACCOUNT = "SELECT id, username, created_at, email FROM accounts"


def _unlocked(step: Callable[[], object], patience: float = 15.0) -> None:
    """Run ``step``, again while another process holds the lock it needs.

    Workers starting together all open the new file at once. Switching it to
    WAL takes an exclusive lock, and SQLite answers SQLITE_BUSY for it without
    calling the busy handler when another connection is mid-switch, so
    ``busy_timeout`` alone does not make the start-up race safe.
    """
    deadline = time.monotonic() + patience
    delay = 0.005
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


class SQLiteState(AccountState):
    """Accounts, apps, tokens and codes in SQLite (one connection per process)."""

    def __init__(self, path: str) -> None:
        # One connection shared by the event loop and the thread pool, so a lock
        # serialises its use; every call is a short statement.
        self._db = sqlite3.connect(path, timeout=10.0, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._closed = False
        with self._lock:
            self._db.execute("PRAGMA busy_timeout = 10000")
            if path != ":memory:":
                _unlocked(lambda: self._db.execute("PRAGMA journal_mode = WAL"))
                self._db.execute("PRAGMA synchronous = NORMAL")
            _unlocked(lambda: self._db.executescript(_SCHEMA))  # commits by itself: before the upgrade's transaction
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for table, columns in _UPGRADES.items():
                    have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                    for name, decl in columns:
                        if name not in have:
                            self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
                self._db.execute("CREATE INDEX IF NOT EXISTS accounts_email ON accounts(email COLLATE NOCASE)")
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        # Accounts, once finished, and tokens never change (tokens can be
        # revoked: see grant()), so each worker caches accounts.
        self._by_id: dict[int, Account] = {}

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _tx(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one write transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchone()
            except OverflowError:
                # An id beyond SQLite's 64-bit integers (a client's made-up id)
                # names no row; the lookup finds nothing rather than failing.
                return None

    # -------------------------------------------------------------- accounts

    def begin_account(self, username: str, email: str | None, password_hash: str | None) -> Account:
        def work(db: sqlite3.Connection) -> Account:
            row = db.execute(
                "SELECT id, username, created_at, ready FROM accounts WHERE username = ?", (username,)
            ).fetchone()
            if row is not None and row[3]:
                raise StateError("Validation failed: Username has already been taken")
            if (
                email is not None
                and db.execute(
                    "SELECT 1 FROM accounts WHERE email = ? COLLATE NOCASE AND ready = 1", (email,)
                ).fetchone()
            ):
                raise StateError("Validation failed: Email has already been taken")
            if row is not None:
                # A registration that died half way: resume it with this request's details.
                db.execute("UPDATE accounts SET email = ?, password = ? WHERE id = ?", (email, password_hash, row[0]))
                return Account(row[0], row[1], row[2], email)
            now = time.time()
            cur = db.execute(
                "INSERT INTO accounts (username, created_at, ready, email, password) VALUES (?, ?, 0, ?, ?)",
                (username, now, email, password_hash),
            )
            return Account(int(cur.lastrowid or 0), username, now, email)

        return self._tx(work)

    def finish_account(self, id: int) -> None:
        with self._lock:
            self._db.execute("UPDATE accounts SET ready = 1 WHERE id = ?", (id,))

    def account(self, id: int) -> Account | None:
        found = self._by_id.get(id)
        if found is None:
            row = self._one(f"{_ACCOUNT} WHERE id = ? AND ready = 1", (id,))
            if row is not None:
                found = self._by_id[id] = Account(*row)
        return found

    def account_by_name(self, username: str) -> Account | None:
        row = self._one(f"{_ACCOUNT} WHERE username = ? AND ready = 1", (username,))
        return None if row is None else Account(*row)

    def accounts_by_prefix(self, prefix: str, limit: int) -> list[Account]:
        # Usernames are [A-Za-z0-9_]: escape LIKE's wildcards, then match the prefix.
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._lock:
            rows = self._db.execute(
                f"{_ACCOUNT} WHERE username LIKE ? ESCAPE '\\' AND ready = 1 ORDER BY username COLLATE NOCASE LIMIT ?",
                (pattern, limit),
            ).fetchall()
        return [Account(*row) for row in rows]

    def account_count(self) -> int:
        return int(self._one("SELECT count(*) FROM accounts WHERE ready = 1", ())[0])

    def account_ids(self) -> list[int]:
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT id FROM accounts WHERE ready = 1 ORDER BY id")]

    def login(self, name: str) -> tuple[Account, str | None] | None:
        row = self._one(
            "SELECT id, username, created_at, email, password FROM accounts "
            "WHERE (username = ? OR email = ? COLLATE NOCASE) AND ready = 1 ORDER BY username = ? DESC LIMIT 1",
            (name, name, name),
        )
        return None if row is None else (Account(*row[:4]), row[4])

    # ---------------------------------------------------------- apps, tokens

    def create_client(
        self, name: str, redirect_uris: tuple[str, ...], scopes: frozenset[str], website: str | None
    ) -> tuple[Client, str]:
        client_id, secret, now = new_secret(), new_secret(), time.time()

        def work(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "INSERT INTO clients (client_id, secret, name, redirect_uris, scopes, website, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (client_id, digest(secret), name, "\n".join(redirect_uris), " ".join(sorted(scopes)), website, now),
            )
            return int(cur.lastrowid or 0)

        id = self._tx(work)
        return Client(client_id, name, redirect_uris, scopes, website, now, id), secret

    def client(self, client_id: str, secret: str | None = None) -> Client | None:
        row = self._one(
            "SELECT client_id, name, redirect_uris, scopes, website, created_at, id, secret FROM clients WHERE client_id = ?",
            (client_id,),
        )
        if row is None or (secret is not None and digest(secret) != row[7]):
            return None
        return Client(row[0], row[1], tuple(row[2].split("\n")), frozenset(row[3].split()), row[4], row[5], row[6])

    def issue_token(self, account: int | None, scopes: frozenset[str], client_id: str | None) -> str:
        token = new_secret()
        with self._lock:
            self._db.execute(
                "INSERT INTO tokens (digest, account, created_at, scopes, client_id) VALUES (?, ?, ?, ?, ?)",
                (digest(token), account or 0, time.time(), " ".join(sorted(scopes)), client_id),
            )
        return token

    def grant(self, token: str) -> Grant | None:
        row = self._one("SELECT account, scopes, client_id, created_at FROM tokens WHERE digest = ?", (digest(token),))
        if row is None:
            return None
        return Grant(row[0] or None, frozenset(row[1].split()), row[2], row[3])

    def revoke_token(self, token: str, client_id: str) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT client_id FROM tokens WHERE digest = ?", (digest(token),)).fetchone()
            if row is None:
                return True  # RFC 7009: revoking an unknown token is not an error
            if row[0] != client_id:
                return False
            db.execute("DELETE FROM tokens WHERE digest = ?", (digest(token),))
            return True

        return self._tx(work)

    def issue_code(self, grant: CodeGrant) -> str:
        code = new_secret()
        with self._lock:
            self._db.execute(
                "INSERT INTO codes (digest, client_id, account, scopes, redirect_uri, challenge, challenge_method, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (digest(code), grant.client_id, grant.account, " ".join(sorted(grant.scopes)), grant.redirect_uri,
                 grant.challenge, grant.challenge_method, time.time() + CODE_TTL),
            )  # fmt: skip
        return code

    def redeem_code(self, code: str) -> CodeGrant | None:
        def work(db: sqlite3.Connection) -> CodeGrant | None:
            key = digest(code)
            row = db.execute(
                "SELECT client_id, account, scopes, redirect_uri, challenge, challenge_method, expires_at FROM codes WHERE digest = ?",
                (key,),
            ).fetchone()
            db.execute("DELETE FROM codes WHERE digest = ? OR expires_at < ?", (key, time.time()))
            if row is None or row[6] < time.time():
                return None
            return CodeGrant(row[0], row[1], frozenset(row[2].split()), row[3], row[4], row[5])

        return self._tx(work)
