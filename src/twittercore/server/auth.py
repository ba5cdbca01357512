"""Who is asking and what they may do: bearer tokens, OAuth scopes, password hashes.

Scopes are Mastodon's: the top-level ``read``, ``write``, ``follow``,
``push`` and ``profile``, and the granular ``read:statuses``,
``write:follows``, ...  An endpoint names the granular scope it needs; a
token holding that scope, its top-level parent, or (for follows) the legacy
``follow`` scope passes.  Too narrow a token is a 403 ``This action is
outside the authorized scopes``; an app-only token (client credentials) on
an endpoint that acts as a user is a 422, as on Mastodon.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request

from .http import ApiError
from .state import Account, Grant

__all__ = [
    "SCOPES",
    "parse_scopes",
    "allows",
    "bearer",
    "viewer",
    "optional_viewer",
    "hash_password",
    "check_password",
]

_GRANULAR = {
    "read": (
        "accounts",
        "blocks",
        "bookmarks",
        "favourites",
        "filters",
        "follows",
        "lists",
        "mutes",
        "notifications",
        "search",
        "statuses",
    ),
    "write": (
        "accounts",
        "blocks",
        "bookmarks",
        "conversations",
        "favourites",
        "filters",
        "follows",
        "lists",
        "media",
        "mutes",
        "notifications",
        "reports",
        "statuses",
    ),
}
_FOLLOW = frozenset({"read:blocks", "write:blocks", "read:follows", "write:follows", "read:mutes", "write:mutes"})
#: Every scope an app may ask for.
SCOPES = frozenset(
    {"read", "write", "follow", "push", "profile"}
    | {f"{top}:{part}" for top, parts in _GRANULAR.items() for part in parts}
)


def parse_scopes(text: Any, default: str = "read") -> frozenset[str]:
    """A space-separated scope list (Mastodon also takes ``+`` and arrays); unknown scopes are a 422."""
    if text is None or text == "":
        text = default
    if isinstance(text, list):
        text = " ".join(str(t) for t in text)
    if not isinstance(text, str):
        raise ApiError(422, "Validation failed: scopes: expected a space-separated string")
    scopes = frozenset(text.replace("+", " ").split())
    unknown = scopes - SCOPES
    if unknown:
        raise ApiError(
            422,
            f"Validation failed: Scopes {' '.join(sorted(unknown))[:80]!r} are not known (known: read, write, follow, push, profile and read:*/write:*)",
        )
    return scopes


def allows(scopes: frozenset[str], needed: str) -> bool:
    """Whether a token with ``scopes`` may do what needs the granular scope ``needed``."""
    if needed in scopes or needed.split(":")[0] in scopes:
        return True
    if needed in _FOLLOW and "follow" in scopes:
        return True
    return needed == "read:accounts" and "profile" in scopes


def bearer(request: Request) -> str:
    """The request's bearer token ('' if none)."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not token and request.scope["path"].startswith("/api/v1/streaming"):
        # Browsers cannot set headers on EventSource or WebSocket: Mastodon takes a query parameter there.
        token = request.query_params.get("access_token", "")
    return token


#: Seconds a worker trusts a token it has looked up; a token revoked through
#: another worker stops working within this time (at once on the same worker).
GRANT_TTL = 1.0
_GRANTS_KEPT = 100_000


def _grant(request: Request, token: str) -> Grant:
    server = request.app.state.server
    cache: dict[str, tuple[float, Grant]] = server.grants
    now = time.monotonic()
    hit = cache.get(token)
    if hit is not None and now - hit[0] < GRANT_TTL:
        return hit[1]
    grant = server.state.grant(token)
    if grant is None:
        cache.pop(token, None)
        raise ApiError(401, "The access token is invalid")
    if len(cache) >= _GRANTS_KEPT:
        cache.clear()
    cache[token] = (now, grant)
    return grant  # type: ignore[no-any-return]


def forget(request: Request, token: str) -> None:
    """Drop a revoked token from this worker's cache."""
    request.app.state.server.grants.pop(token, None)


def viewer(request: Request, needed: str, token: str | None = None) -> Account:
    """The account acting in this request; 401/403/422 unless its token grants ``needed``."""
    token = bearer(request) if token is None else token
    if not token:
        raise ApiError(401, "The access token is invalid")
    grant = _grant(request, token)
    if not allows(grant.scopes, needed):
        raise ApiError(403, "This action is outside the authorized scopes")
    if grant.account is None:
        raise ApiError(422, "This method requires an authenticated user")
    account = request.app.state.server.state.account(grant.account)
    if account is None:
        raise ApiError(401, "The access token is invalid")
    return account  # type: ignore[no-any-return]


def optional_viewer(request: Request, needed: str) -> Account | None:
    """As :func:`viewer` when a token is sent; None for an anonymous request."""
    token = bearer(request)
    if not token:
        return None
    grant = _grant(request, token)
    if not allows(grant.scopes, needed):
        raise ApiError(403, "This action is outside the authorized scopes")
    return None if grant.account is None else request.app.state.server.state.account(grant.account)


# -------------------------------------------------------------- passwords
# argon2id with OWASP's minimum parameters (19 MiB, 2 passes): ~20 ms a hash
# here, which keeps logins cheap on a small machine and guesses expensive.

_hasher: Any = None


def _argon2() -> Any:
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher

        _hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
    return _hasher


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (blocking, ~20 ms: run it in a thread)."""
    return _argon2().hash(password)  # type: ignore[no-any-return]


_DUMMY: list[str] = []


def check_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``; takes as long when there is no such user (blocking)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = _argon2()
    if stored is None:
        if not _DUMMY:
            _DUMMY.append(hasher.hash("not a password"))
        stored, password = _DUMMY[0], "still not a password"
        try:
            hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            pass
        return False
    try:
        return bool(hasher.verify(stored, password))
    except (VerificationError, InvalidHashError):
        return False
