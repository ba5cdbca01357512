"""What makes a store node an *account*: the server's account state, as an interface.

The twittercore store only knows node ids and opaque payloads.  Usernames,
password hashes, OAuth applications, access tokens and authorization codes
live beside it, behind :class:`AccountState`.  The interface is kept small
(plain records in, plain records out, every method one short atomic step)
so that a second implementation, on Redis for a clustered store, is a page
of code; :class:`~twittercore.server.sqlite_state.SQLiteState` is the one
that ships.

Secrets (tokens, codes, client secrets) are stored as SHA-256 digests, so a
leaked state file leaks no credentials; each is shown once, when issued.
Passwords are hashed by the caller (:mod:`.auth`), never seen here in clear.

Registration is two steps so that a crash between the state and the store
cannot burn a username: :meth:`AccountState.begin_account` makes (or, on a
retry, returns) a *pending* account, the caller makes its self-edge in the
store, then :meth:`AccountState.finish_account` makes it visible.  A pending
account is invisible to every lookup and has no token.
"""

from __future__ import annotations

import abc
import hashlib
import re
import secrets
from dataclasses import dataclass

import twittercore

__all__ = [
    "Account",
    "Client",
    "Grant",
    "CodeGrant",
    "AccountState",
    "StateError",
    "USERNAME_RE",
    "digest",
    "new_secret",
    "register",
]

# Mastodon's rule for local usernames.
USERNAME_RE = re.compile(r"^[A-Za-z0-9_]{1,30}$")


class StateError(Exception):
    """A request the state cannot satisfy (e.g. a taken username); the message is for the client."""


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    created_at: float
    email: str | None = None


@dataclass(frozen=True)
class Client:
    """A registered OAuth application (``POST /api/v1/apps``)."""

    client_id: str
    name: str
    redirect_uris: tuple[str, ...]
    scopes: frozenset[str]
    website: str | None
    created_at: float
    id: int = 0


@dataclass(frozen=True)
class Grant:
    """What an access token grants: an account (None for an app-only token), scopes, its app."""

    account: int | None
    scopes: frozenset[str]
    client_id: str | None
    created_at: float


@dataclass(frozen=True)
class CodeGrant:
    """A redeemed authorization code: who consented to what, for which redirect, with which PKCE challenge."""

    client_id: str
    account: int
    scopes: frozenset[str]
    redirect_uri: str
    challenge: str | None
    challenge_method: str | None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class AccountState(abc.ABC):
    """Accounts, apps, tokens and codes.  Every method is one atomic step, safe across processes."""

    # -------------------------------------------------------------- accounts

    @abc.abstractmethod
    def begin_account(self, username: str, email: str | None, password_hash: str | None) -> Account:
        """Create a pending account, or return the pending one of that name (a retried registration).

        Raises :class:`StateError` when the username (case-insensitively) or
        the email belongs to a finished account.
        """

    @abc.abstractmethod
    def finish_account(self, id: int) -> None:
        """Make a pending account visible.  Idempotent."""

    @abc.abstractmethod
    def account(self, id: int) -> Account | None:
        """A finished account by id."""

    @abc.abstractmethod
    def account_by_name(self, username: str) -> Account | None:
        """A finished account by username, case-insensitively."""

    @abc.abstractmethod
    def accounts_by_prefix(self, prefix: str, limit: int) -> list[Account]:
        """Finished accounts whose username starts with ``prefix`` (case-insensitively), by username."""

    @abc.abstractmethod
    def account_count(self) -> int:
        """How many finished accounts there are."""

    @abc.abstractmethod
    def account_ids(self) -> list[int]:
        """Every finished account's id, ascending."""

    @abc.abstractmethod
    def login(self, name: str) -> tuple[Account, str | None] | None:
        """The finished account whose username or email is ``name``, and its password hash."""

    # ---------------------------------------------------------- apps, tokens

    @abc.abstractmethod
    def create_client(
        self, name: str, redirect_uris: tuple[str, ...], scopes: frozenset[str], website: str | None
    ) -> tuple[Client, str]:
        """Register an app; returns it and its clear client secret."""

    @abc.abstractmethod
    def client(self, client_id: str, secret: str | None = None) -> Client | None:
        """The app with this id (and, if ``secret`` is given, that secret)."""

    @abc.abstractmethod
    def issue_token(self, account: int | None, scopes: frozenset[str], client_id: str | None) -> str:
        """A new access token; returns it in clear (only its digest is kept)."""

    @abc.abstractmethod
    def grant(self, token: str) -> Grant | None:
        """What the token grants; None if it is unknown or revoked."""

    @abc.abstractmethod
    def revoke_token(self, token: str, client_id: str) -> bool:
        """Revoke a token issued to this app; False if it was issued to another (revoking an unknown token succeeds)."""

    @abc.abstractmethod
    def issue_code(self, grant: CodeGrant) -> str:
        """A single-use authorization code for ``grant``, valid for ten minutes."""

    @abc.abstractmethod
    def redeem_code(self, code: str) -> CodeGrant | None:
        """The code's grant, consuming the code; None if unknown, used or expired."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections.  Idempotent."""


def register(
    state: AccountState,
    store: twittercore.Store,
    username: object,
    email: str | None = None,
    password_hash: str | None = None,
    scopes: frozenset[str] = frozenset({"read", "write", "follow"}),
    crash: object = None,
) -> tuple[Account, str]:
    """Create an account, its self-edge and a token; resumable after a crash at any step.

    ``crash`` is the fault-injection hook (:func:`.faults.crash_point`) tests
    use to kill the process between the steps.  Blocking: run it in a thread.
    """
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise StateError("Validation failed: Username must be 1 to 30 letters, digits or underscores")
    account = state.begin_account(username, email, password_hash)
    if callable(crash):
        crash("register:pending")
    # The self-edge: an account's home timeline includes its own posts.
    # follow() is idempotent, so a resumed registration just repeats it.
    store.follow(account.id, account.id)
    if callable(crash):
        crash("register:followed")
    state.finish_account(account.id)
    return account, state.issue_token(account.id, scopes, None)
