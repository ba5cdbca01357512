"""Accounts: registration, profiles, lookup and search, following, relationships, account timelines."""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import twittercore

from ..auth import bearer, hash_password, optional_viewer, viewer
from ..context import server_of
from ..entities import relationship_json
from ..faults import crash_point
from ..http import (
    DEFAULT_LIMIT,
    MAX_ACCOUNT_LIMIT,
    MAX_LIMIT,
    ApiError,
    base_url,
    flag,
    form,
    json_response,
    not_found,
    paging,
    parse_id,
    parse_limit,
    path_id,
    text_field,
)
from ..render import page_of_statuses
from ..state import StateError, register

__all__ = ["ROUTES"]

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


async def create_account(request: Request) -> Response:
    """Registration, guarded by the admin token (there is no open sign-up).

    A retry of a registration that died half way (account row written, its
    self-edge not) completes it: see :func:`..state.register`.
    """
    server = server_of(request)
    token = bearer(request)
    if not server.admin_token:
        raise ApiError(
            403, "This action is not allowed: registrations are closed (start the server with an admin token)"
        )
    if not token:
        raise ApiError(401, "The access token is invalid")
    if not hmac.compare_digest(token.encode(), server.admin_token.encode()):
        raise ApiError(403, "This action is not allowed: registration needs the admin token")
    params = await form(request)
    username = params.get("username")
    email = text_field(params, "email", 320)
    if email is not None and not _EMAIL.match(email):
        raise ApiError(422, "Validation failed: Email is invalid")
    password = text_field(params, "password", 72)
    if password is not None and len(password) < 8:
        raise ApiError(422, "Validation failed: Password is too short (minimum is 8 characters)")
    hashed = None if password is None else await run_in_threadpool(hash_password, password)
    try:
        account, access_token = await run_in_threadpool(
            register, server.state, server.store, username, email, hashed, crash=crash_point
        )
    except StateError as exc:
        raise ApiError(422, str(exc)) from None
    return json_response(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "scope": "read write follow",
            "created_at": int(account.created_at),
        }
    )


async def verify_credentials(request: Request) -> Response:
    server = server_of(request)
    me = viewer(request, "read:accounts")
    body = dict(server.renderer(request).account(me))
    body["source"] = {
        "privacy": "public",
        "sensitive": False,
        "language": None,
        "note": "",
        "fields": [],
        "follow_requests_count": 0,
    }
    return json_response(body)


async def get_account(request: Request) -> Response:
    server = server_of(request)
    return json_response(server.renderer(request).account(server.account(path_id(request))))


def _local_name(request: Request, acct: str) -> str | None:
    """``name``, ``@name`` or ``name@this.host`` as a username; None for another domain."""
    name = acct.strip().lstrip("@")
    name, _, domain = name.partition("@")
    if domain and domain.lower() not in (request.headers.get("host", "").lower(), urlsplit(base_url(request)).hostname):
        return None  # another server's account: this one federates with no one
    return name


async def lookup(request: Request) -> Response:
    server = server_of(request)
    acct = request.query_params.get("acct")
    if not acct:
        raise ApiError(400, "acct: required (a username, or username@this.domain)")
    name = _local_name(request, acct)
    found = None if name is None else server.state.account_by_name(name)
    if found is None:
        raise not_found()
    return json_response(server.renderer(request).account(found))


def _status_ref(request: Request, q: str) -> int | None:
    """A status id from ``q``: a bare id, or this server's URL of a status."""
    if q.isascii() and q.isdigit():
        return parse_id(q) if len(q) <= 20 else None
    if q.startswith(base_url(request) + "/"):
        tail = q.rstrip("/").rsplit("/", 1)[-1]
        if tail.isascii() and tail.isdigit() and len(tail) <= 20:
            return parse_id(tail)
    return None


async def search(request: Request) -> Response:
    """Mastodon's v2 search over what this server knows: accounts by username prefix, statuses by id or URL."""
    server = server_of(request)
    optional_viewer(request, "read:search")
    q = request.query_params
    text = (q.get("q") or "").strip()
    if not text:
        raise ApiError(400, "q: required (what to search for)")
    kind = q.get("type") or None
    if kind not in (None, "accounts", "statuses", "hashtags"):
        raise ApiError(400, f"type: expected accounts, statuses or hashtags, got {kind[:20]!r}")
    limit = parse_limit(request, DEFAULT_LIMIT, MAX_LIMIT)
    offset_text = q.get("offset") or "0"
    if not (offset_text.isascii() and offset_text.isdigit()) or len(offset_text) > 6:
        raise ApiError(400, f"offset: expected a small non-negative integer, got {offset_text[:20]!r}")
    offset = int(offset_text)
    flag(q, "resolve", status=400)  # accepted for clients' sake; there is nothing remote to resolve
    renderer = server.renderer(request)
    accounts: list[Any] = []
    statuses: list[Any] = []
    if kind in (None, "accounts"):
        name = _local_name(request, text)
        if name and re.fullmatch(r"[A-Za-z0-9_]{1,30}", name):
            found = server.state.accounts_by_prefix(name, offset + limit)[offset:]
            accounts = [renderer.account(a) for a in found]
    if kind in (None, "statuses") and offset == 0:
        id = _status_ref(request, text)
        if id is not None:
            try:
                rendered = renderer.status(server.store.event(id))
            except twittercore.NotFoundError:
                rendered = None
            if rendered is not None:
                statuses = [rendered]
    return json_response({"accounts": accounts, "statuses": statuses, "hashtags": []})


async def relationships(request: Request) -> Response:
    server = server_of(request)
    me = viewer(request, "read:follows")
    ids = request.query_params.getlist("id[]") + request.query_params.getlist("id")
    store = server.store
    out = []
    for text in ids[:MAX_ACCOUNT_LIMIT]:
        id = parse_id(text, "id[]")
        if id is None or server.state.account(id) is None:
            continue  # as Mastodon: unknown accounts are left out
        out.append(
            relationship_json(
                id, id != me.id and store.is_following(me.id, id), id != me.id and store.is_following(id, me.id)
            )
        )
    return json_response(out)


async def account_statuses(request: Request) -> Response:
    server = server_of(request)

    def work() -> Response:
        account = server.account(path_id(request))
        q = request.query_params
        if flag(q, "pinned", status=400) or flag(q, "only_media", status=400):
            return json_response([])  # no pins, no media on this server
        page = paging(request)
        events = [] if page is None else server.store.timeline(account.id, **page)
        return page_of_statuses(request, server.cache, server.renderer(request), events)

    return await server.run(work)


async def follow(request: Request) -> Response:
    return await _set_follow(request, True)


async def unfollow(request: Request) -> Response:
    return await _set_follow(request, False)


async def _set_follow(request: Request, on: bool) -> Response:
    server = server_of(request)
    me = viewer(request, "write:follows")
    target = server.account(path_id(request))
    if target.id == me.id:
        # The self-edge carries the account's own posts into its home timeline.
        raise ApiError(403, "This action is not allowed: an account cannot follow or unfollow itself")
    change = server.store.follow if on else server.store.unfollow
    await run_in_threadpool(change, me.id, target.id)
    store = server.store
    return json_response(
        relationship_json(target.id, store.is_following(me.id, target.id), store.is_following(target.id, me.id))
    )


async def followers(request: Request) -> Response:
    return _account_list(request, server_of(request).store.sinks)


async def following(request: Request) -> Response:
    return _account_list(request, server_of(request).store.sources)


def _account_list(request: Request, edges: Callable[..., list[int]]) -> Response:
    """Followers/following, by ascending account id.

    As on Mastodon, ``max_id`` here is an opaque cursor to be taken from the
    Link header (Mastodon's are internal follow-record ids); this server's is
    the last account id of the previous page, so a page costs O(limit) even
    for an account with millions of followers.
    """
    server = server_of(request)
    account = server.account(path_id(request))
    limit = parse_limit(request, 40, MAX_ACCOUNT_LIMIT)
    after = parse_id(request.query_params.get("max_id"), "max_id")
    # One extra, since the hidden self-edge may be among them.
    ids = edges(account.id, limit=limit + 1, after=after)
    page = [i for i in ids if i != account.id][:limit]
    renderer = server.renderer(request)
    body = [a for a in map(renderer.account_by_id, page) if a is not None]
    headers = {}
    if len(page) == limit:
        keep = [(k, v) for k, v in request.query_params.multi_items() if k != "max_id"]
        url = f"{base_url(request)}{request.scope['path']}?{urlencode(keep + [('max_id', str(page[-1]))])}"
        headers["Link"] = f'<{url}>; rel="next"'
    return json_response(body, headers=headers)


ROUTES = [
    Route("/api/v1/accounts", create_account, methods=["POST"]),
    Route("/api/v1/accounts/verify_credentials", verify_credentials, methods=["GET"]),
    Route("/api/v1/accounts/lookup", lookup, methods=["GET"]),
    Route("/api/v1/accounts/relationships", relationships, methods=["GET"]),
    Route("/api/v1/accounts/{id}", get_account, methods=["GET"]),
    Route("/api/v1/accounts/{id}/statuses", account_statuses, methods=["GET"]),
    Route("/api/v1/accounts/{id}/follow", follow, methods=["POST"]),
    Route("/api/v1/accounts/{id}/unfollow", unfollow, methods=["POST"]),
    Route("/api/v1/accounts/{id}/followers", followers, methods=["GET"]),
    Route("/api/v1/accounts/{id}/following", following, methods=["GET"]),
    Route("/api/v2/search", search, methods=["GET"]),
]
