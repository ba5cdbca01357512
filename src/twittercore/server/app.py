"""A Mastodon-compatible HTTP server on an embedded twittercore store.

The store does the hard part (one total order of ids, the home-timeline merge,
snapshot paging, tailing across processes); this module only speaks
Mastodon's client API on top of it.  The mapping:

* an account is a store node (its id is the node id) plus a row in the
  server's SQLite state (username, bearer token): see ``state.py``;
* a status is an event whose payload is compact JSON: see ``entities.py``;
* following is a store edge ``follow(sink=follower, source=followee)``; each
  account follows itself from birth so that, as on Mastodon, its home
  timeline includes its own posts.  That self-edge is hidden from the
  followers/following lists and counts, and cannot be removed;
* ``/api/v1/streaming/user`` is a server-sent-event stream fed by the store's
  ``changes`` feed (one poller per worker process: see ``Hub``).

Every write acts as the account of the bearer token and nothing else; errors
are Mastodon's ``{"error": "..."}`` with Mastodon's status codes.

Run it with ``twittercore serve --data DIR`` (see README.md), or build the app
in-process with :func:`create_app` (tests do, on ``:memory:`` and LMDB).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import twittercore
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .entities import (
    MAX_CHARS,
    account_json,
    decode_status,
    dumps,
    encode_status,
    iso,
    relationship_json,
    status_json,
)
from .state import Account, State, StateError

__all__ = ["create_app", "app_from_env", "ApiError"]

logger = logging.getLogger("twittercore.server")

VERSION = f"4.3.0 (compatible; twittercore {twittercore.__version__})"
DEFAULT_LIMIT, MAX_LIMIT = 20, 40  # Mastodon's page sizes for statuses
MAX_ACCOUNT_LIMIT = 80  # ... and for account lists
VISIBILITIES = ("public", "unlisted")  # what this server can honour (see README)
KEY_WAIT = 5.0  # how long a retried Idempotency-Key waits for the first request


class ApiError(Exception):
    """Raised by a handler; rendered as Mastodon's ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status, headers, media_type="application/json")


def not_found() -> ApiError:
    return ApiError(404, "Record not found")


def parse_id(text: str | None, what: str = "id") -> int | None:
    """A decimal id as an int; None if absent.  Ids on the wire are strings."""
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 20 or int(text) > twittercore.MAX_NODE:
        raise ApiError(400, f"{what}: expected a numeric id string, got {text[:40]!r}")
    return int(text)


def path_id(request: Request, name: str = "id") -> int:
    """The id in the URL; an id that cannot exist is simply not found."""
    text = request.path_params[name]
    if not (text.isascii() and text.isdigit()) or len(text) > 20 or int(text) > twittercore.MAX_NODE:
        raise not_found()
    return int(text)


def parse_limit(request: Request, default: int, largest: int) -> int:
    text = request.query_params.get("limit")
    if text is None or text == "":
        return default
    try:
        limit = int(text)
    except ValueError:
        raise ApiError(400, f"limit: expected an integer, got {text[:40]!r}") from None
    # Mastodon clamps rather than refuses.
    return max(1, min(limit, largest))


def truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "t", "on", "yes")


async def form(request: Request) -> dict[str, Any]:
    """Request parameters from a JSON or urlencoded body, or the query string (Mastodon takes all three)."""
    raw = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    params: dict[str, Any] = dict(request.query_params)
    if not raw:
        return params
    if kind == "application/json":
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "body: malformed JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "body: expected a JSON object")
        params.update(body)
    elif kind in ("application/x-www-form-urlencoded", ""):
        try:
            params.update(parse_qsl(raw.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            raise ApiError(400, "body: not UTF-8") from None
    else:
        raise ApiError(415, f"body: unsupported content type {kind!r} (send JSON or a urlencoded form)")
    return params


class Server:
    """The per-process state every handler shares: the store, the SQLite state, the hub."""

    def __init__(self, store_target: str, state_path: str, admin_token: str | None, store_options: dict[str, Any], poll: float, heartbeat: float) -> None:
        self.store_target = store_target
        self.state_path = state_path
        self.admin_token = admin_token
        self.store_options = store_options
        self.poll = poll
        self.heartbeat = heartbeat
        self.store: twittercore.Store | None = None
        self.state: State | None = None
        self.hub: Hub | None = None
        self.cache = PageCache()
        self._instance_stats: tuple[float, dict[str, int]] = (0.0, {})

    def open(self) -> None:
        # Opened in the worker process itself (LMDB must not cross a fork).
        self.store = twittercore.open(self.store_target, **self.store_options)
        self.state = State(self.state_path)
        self.hub = Hub(self, self.poll)

    def close(self) -> None:
        if self.hub is not None:
            self.hub.stop()
        if self.state is not None:
            self.state.close()
        if self.store is not None:
            self.store.close()

    # ------------------------------------------------------------------ auth

    def viewer(self, request: Request, required: bool = True) -> Account | None:
        """The account of the request's bearer token (401 if required and missing or invalid)."""
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not token and request.scope["path"].startswith("/api/v1/streaming"):
            # Browsers cannot set headers on EventSource: Mastodon takes a query parameter there.
            token = request.query_params.get("access_token", "")
        if not token:
            if required:
                raise ApiError(401, "The access token is invalid")
            return None
        account = self.state.account_for_token(token)
        if account is None and required:
            raise ApiError(401, "The access token is invalid")
        return account

    def account(self, id: int) -> Account:
        found = self.state.account(id)
        if found is None:
            raise not_found()
        return found

    # ------------------------------------------------------------- rendering

    def renderer(self, request: Request) -> "Renderer":
        return Renderer(self, base_url(request))

    def create_account(self, username: str) -> tuple[Account, str]:
        """Create an account and its self-edge (blocking: run it in a thread)."""
        account, token = self.state.create_account(username)
        self.store.follow(account.id, account.id)
        return account, token


def base_url(request: Request) -> str:
    # From the scope directly: building request.url costs more than the home read.
    scope = request.scope
    host = request.headers.get("host")
    if not host:
        server = scope.get("server") or ("localhost", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope['scheme']}://{host}"


class Renderer:
    """Renders entities for one response, computing each account's JSON once."""

    def __init__(self, server: Server, base: str) -> None:
        self.server = server
        self.base = base
        self._accounts: dict[int, dict[str, Any] | None] = {}

    def account(self, account: Account) -> dict[str, Any]:
        cached = self._accounts.get(account.id)
        if cached is None:
            store = self.server.store
            id = account.id
            own = 1 if store.is_following(id, id) else 0  # the hidden self-edge
            newest = store.timeline(id, limit=1)
            cached = self._accounts[id] = account_json(
                self.base,
                account,
                followers=store.sink_count(id) - own,
                following=store.source_count(id) - own,
                statuses=store.timeline_count(id),
                last_status_at=iso(newest[0].time)[:10] if newest else None,
            )
        return cached

    def account_by_id(self, id: int) -> dict[str, Any] | None:
        if id not in self._accounts:
            found = self.server.state.account(id)
            if found is None:
                self._accounts[id] = None  # a node another embedder wrote: not an account
                return None
            return self.account(found)
        return self._accounts[id]

    def status(self, event: twittercore.Event, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        author = self.account_by_id(event.source)
        if author is None:
            return None
        return status_json(self.base, event.id, event.time, body or decode_status(event.payload), author)


class PageCache:
    """Pre-encoded JSON for the hot path: timeline pages and streamed statuses.

    A status never changes once posted, so its JSON is encoded once per
    process and kept, split around its embedded account.  The embedded
    account carries counts that do change: it is re-rendered at most every
    ``ACCOUNT_TTL`` seconds (single-entity endpoints always render fresh).
    This turns a 20-status page from ~1 ms of Python into a few dict lookups.
    """

    ACCOUNT_TTL = 1.0
    SIZE = 50_000  # statuses kept per process (~1 KiB each)
    _MARK = "__account__"
    _SPLIT = b'"account":"__account__"'

    def __init__(self) -> None:
        self._statuses: dict[tuple[str, int], tuple[bytes, bytes, int]] = {}
        self._accounts: dict[tuple[str, int], tuple[float, bytes | None]] = {}

    def account(self, renderer: Renderer, id: int) -> bytes | None:
        key = (renderer.base, id)
        now = time.monotonic()
        hit = self._accounts.get(key)
        if hit is None or now - hit[0] > self.ACCOUNT_TTL:
            rendered = renderer.account_by_id(id)
            hit = self._accounts[key] = (now, None if rendered is None else dumps(rendered))
        return hit[1]

    def status(self, renderer: Renderer, event: twittercore.Event) -> bytes | None:
        key = (renderer.base, event.id)
        parts = self._statuses.get(key)
        if parts is None:
            # URLs name the author: render with the real username, account spliced in later.
            author = renderer.server.state.account(event.source)
            if author is None:
                return None
            body = status_json(renderer.base, event.id, event.time, decode_status(event.payload), {"username": author.username})
            body["account"] = self._MARK
            head, tail = dumps(body).split(self._SPLIT)
            parts = self._statuses[key] = (head + b'"account":', tail, event.source)
            if len(self._statuses) > self.SIZE:
                for old in list(itertools.islice(self._statuses, self.SIZE // 2)):
                    del self._statuses[old]
        account = self.account(renderer, parts[2])
        if account is None:
            return None
        return parts[0] + account + parts[1]

    def page(self, renderer: Renderer, events: list[twittercore.Event]) -> bytes:
        # One flat join: no intermediate copy of each status.
        pieces = [b"["]
        for event in events:
            parts = self._statuses.get((renderer.base, event.id))
            if parts is None:
                rendered = self.status(renderer, event)
                if rendered is not None:
                    pieces += (rendered, b",")
                continue
            account = self.account(renderer, parts[2])
            if account is not None:
                pieces += (parts[0], account, parts[1], b",")
        if len(pieces) > 1:
            pieces.pop()  # the trailing comma
        pieces.append(b"]")
        return b"".join(pieces)


def link_header(request: Request, newest: str, oldest: str | None) -> str:
    """Mastodon's Link header: rel=next pages to older items (max_id), rel=prev to newer (min_id)."""
    keep = [(k, v) for k, v in request.query_params.multi_items() if k not in ("max_id", "since_id", "min_id")]
    url = f"{base_url(request)}{request.scope['path']}?{urlencode(keep) + '&' if keep else ''}"
    links = []
    if oldest is not None:
        links.append(f'<{url}max_id={quote(oldest)}>; rel="next"')
    if newest:
        links.append(f'<{url}min_id={quote(newest)}>; rel="prev"')
    return ", ".join(links)


def page_of_statuses(request: Request, server: Server, events: list[twittercore.Event]) -> Response:
    body = server.cache.page(server.renderer(request), events)
    headers = {}
    if events:
        headers["Link"] = link_header(request, str(events[0].id), str(events[-1].id))
    return Response(body, 200, headers, media_type="application/json")


def paging(request: Request) -> dict[str, Any] | None:
    """Mastodon's paging parameters as the store's (None: the page is empty).

    Mastodon's ``max_id`` is exclusive ("lesser than"), the store's inclusive
    (Twitter's), so it shifts by one; ``since_id`` and ``min_id`` agree.
    """
    q = request.query_params
    max_id = parse_id(q.get("max_id"), "max_id")
    if max_id == 0:
        return None  # nothing is below id 0
    return {
        "limit": parse_limit(request, DEFAULT_LIMIT, MAX_LIMIT),
        "max_id": None if max_id is None else max_id - 1,
        "since_id": parse_id(q.get("since_id"), "since_id"),
        "min_id": parse_id(q.get("min_id"), "min_id"),
    }


# ====================================================================== handlers


async def post_status(request: Request) -> Response:
    server: Server = request.app.state.server
    me = server.viewer(request)
    params = await form(request)
    text = params.get("status")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(422, "Validation failed: Text can't be blank")
    if len(text) > MAX_CHARS:
        raise ApiError(422, f"Validation failed: Text character limit of {MAX_CHARS} exceeded")
    visibility = params.get("visibility") or "public"
    if visibility not in VISIBILITIES:
        raise ApiError(422, f"Validation failed: visibility {str(visibility)[:20]!r} is not supported here (use public or unlisted)")
    spoiler = params.get("spoiler_text") or ""
    language = params.get("language") or None
    if not isinstance(spoiler, str) or len(spoiler) > MAX_CHARS or not (language is None or isinstance(language, str) and len(language) <= 16):
        raise ApiError(422, "Validation failed: spoiler_text or language is malformed")
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= 256:
        raise ApiError(422, "Idempotency-Key: expected 1 to 256 characters")
    payload = encode_status(text, visibility, truthy(params.get("sensitive", False)), spoiler, language, key)

    if key is None:
        event = await run_in_threadpool(server.store.publish, me.id, payload)
        return json_response(server.renderer(request).status(event))

    # Idempotency-Key: the first request to claim (account, key) publishes; a
    # retry (even on another worker) returns that same status instead of a copy.
    owned, status_id = await run_in_threadpool(server.state.claim_key, me.id, key)
    if owned:
        try:
            event = await run_in_threadpool(server.store.publish, me.id, payload)
        except BaseException:
            await run_in_threadpool(server.state.settle_key, me.id, key, None)
            raise
        await run_in_threadpool(server.state.settle_key, me.id, key, event.id)
        return json_response(server.renderer(request).status(event))
    if status_id is None:
        status_id = await wait_for_key(server, me.id, key)
    try:
        event = server.store.event(status_id)
    except twittercore.NotFoundError:
        raise not_found() from None  # posted, then deleted
    return json_response(server.renderer(request).status(event))


async def wait_for_key(server: Server, account: int, key: str) -> int:
    """Wait for the request that claimed ``key`` to publish; recover if it died."""
    deadline = time.monotonic() + KEY_WAIT
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        status_id = await run_in_threadpool(server.state.keyed_status, account, key)
        if status_id is not None:
            return status_id
    # The claimer may have died between publish and recording the id: the key
    # travels in the payload, so look for it among the account's newest posts.
    for event in server.store.timeline(account, limit=MAX_LIMIT):
        if decode_status(event.payload).get("k") == key:
            await run_in_threadpool(server.state.settle_key, account, key, event.id)
            return event.id
    raise ApiError(409, "Idempotency-Key: another request with this key is still being processed")


async def get_status(request: Request) -> Response:
    server: Server = request.app.state.server
    try:
        event = server.store.event(path_id(request))
    except twittercore.NotFoundError:
        raise not_found() from None
    rendered = server.renderer(request).status(event)
    if rendered is None:
        raise not_found()
    return json_response(rendered)


async def delete_status(request: Request) -> Response:
    server: Server = request.app.state.server
    me = server.viewer(request)
    id = path_id(request)
    try:
        event = server.store.event(id)
    except twittercore.NotFoundError:
        raise not_found() from None
    if event.source != me.id:
        raise ApiError(403, "This action is not allowed")
    try:
        await run_in_threadpool(server.store.delete, id)
    except twittercore.NotFoundError:
        raise not_found() from None  # a concurrent delete won
    body = decode_status(event.payload)
    rendered = server.renderer(request).status(event, body)
    rendered["text"] = body["t"]  # Mastodon returns the source for delete-and-redraft
    return json_response(rendered)


async def home_timeline(request: Request) -> Response:
    server: Server = request.app.state.server
    me = server.viewer(request)
    page = paging(request)
    events = [] if page is None else server.store.home(me.id, **page)
    return page_of_statuses(request, server, events)


async def account_statuses(request: Request) -> Response:
    server: Server = request.app.state.server
    account = server.account(path_id(request))
    q = request.query_params
    if truthy(q.get("pinned", "")) or truthy(q.get("only_media", "")):
        return json_response([])  # no pins, no media on this server
    page = paging(request)
    events = [] if page is None else server.store.timeline(account.id, **page)
    return page_of_statuses(request, server, events)


async def get_account(request: Request) -> Response:
    server: Server = request.app.state.server
    return json_response(server.renderer(request).account(server.account(path_id(request))))


async def verify_credentials(request: Request) -> Response:
    server: Server = request.app.state.server
    me = server.viewer(request)
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


async def follow(request: Request) -> Response:
    return await _set_follow(request, True)


async def unfollow(request: Request) -> Response:
    return await _set_follow(request, False)


async def _set_follow(request: Request, on: bool) -> Response:
    server: Server = request.app.state.server
    me = server.viewer(request)
    target = server.account(path_id(request))
    if target.id == me.id:
        # The self-edge carries the account's own posts into its home timeline.
        raise ApiError(403, "This action is not allowed: an account cannot follow or unfollow itself")
    change = server.store.follow if on else server.store.unfollow
    await run_in_threadpool(change, me.id, target.id)
    store = server.store
    return json_response(relationship_json(target.id, store.is_following(me.id, target.id), store.is_following(target.id, me.id)))


async def followers(request: Request) -> Response:
    return _account_list(request, request.app.state.server.store.sinks)


async def following(request: Request) -> Response:
    return _account_list(request, request.app.state.server.store.sources)


def _account_list(request: Request, edges: Any) -> Response:
    """Followers/following, by ascending account id.

    As on Mastodon, ``max_id`` here is an opaque cursor to be taken from the
    Link header (Mastodon's are internal follow-record ids); this server's is
    the last account id of the previous page, so a page costs O(limit) even
    for an account with millions of followers.
    """
    server: Server = request.app.state.server
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


async def create_account(request: Request) -> Response:
    """Registration, guarded by the admin token (there is no open sign-up)."""
    server: Server = request.app.state.server
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not server.admin_token:
        raise ApiError(403, "This action is not allowed: registrations are closed (start the server with an admin token)")
    if not token:
        raise ApiError(401, "The access token is invalid")
    if not hmac.compare_digest(token.encode(), server.admin_token.encode()):
        raise ApiError(403, "This action is not allowed: registration needs the admin token")
    params = await form(request)
    username = params.get("username")
    try:
        account, access_token = await run_in_threadpool(server.create_account, username)
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


def _stats(server: Server) -> dict[str, int]:
    # Counting walks every account: cache it a minute, as Mastodon does.
    stamp, stats = server._instance_stats
    if time.monotonic() - stamp > 60 or not stats:
        ids = server.state.account_ids()
        stats = {"user_count": len(ids), "status_count": sum(map(server.store.timeline_count, ids)), "domain_count": 0}
        server._instance_stats = (time.monotonic(), stats)
    return stats


_STATUS_LIMITS = {"max_characters": MAX_CHARS, "max_media_attachments": 0, "characters_reserved_per_url": 23}


async def instance_v1(request: Request) -> Response:
    server: Server = request.app.state.server
    host = request.url.netloc
    return json_response(
        {
            "uri": host,
            "title": "twittercore",
            "short_description": "A Mastodon-compatible example server on a twittercore store",
            "description": "A Mastodon-compatible example server on a twittercore store",
            "email": "",
            "version": VERSION,
            "urls": {"streaming_api": f"{'wss' if request.url.scheme == 'https' else 'ws'}://{host}"},
            "stats": _stats(server),
            "thumbnail": None,
            "languages": ["en"],
            "registrations": False,
            "approval_required": False,
            "invites_enabled": False,
            "configuration": {"statuses": _STATUS_LIMITS},
            "contact_account": None,
            "rules": [],
        }
    )


async def instance_v2(request: Request) -> Response:
    server: Server = request.app.state.server
    host = request.url.netloc
    return json_response(
        {
            "domain": host,
            "title": "twittercore",
            "version": VERSION,
            "api_versions": {"mastodon": 2},  # Mastodon 4.3's API level, which clients check
            "source_url": "https://github.com/",
            "description": "A Mastodon-compatible example server on a twittercore store",
            "usage": {"users": {"active_month": _stats(server)["user_count"]}},
            "thumbnail": {"url": f"{base_url(request)}/thumbnail.png"},
            "languages": ["en"],
            "configuration": {
                "urls": {"streaming": f"{'wss' if request.url.scheme == 'https' else 'ws'}://{host}"},
                "accounts": {"max_featured_tags": 0},
                "statuses": _STATUS_LIMITS,
                "media_attachments": {"supported_mime_types": [], "image_size_limit": 0, "video_size_limit": 0},
                "polls": {"max_options": 0, "max_characters_per_option": 0, "min_expiration": 0, "max_expiration": 0},
                "translation": {"enabled": False},
            },
            "registrations": {"enabled": False, "approval_required": False, "message": None},
            "contact": {"email": "", "account": None},
            "rules": [],
        }
    )


# ===================================================================== streaming


class Subscriber:
    __slots__ = ("sink", "cursor", "queue", "base")

    def __init__(self, sink: int, cursor: int, base: str) -> None:
        self.sink = sink
        self.cursor = cursor
        self.base = base  # for the URLs in rendered statuses
        self.queue: asyncio.Queue[list[bytes] | None] = asyncio.Queue()


class Hub:
    """One poller per worker process feeds every stream connected to it.

    ``store.subscribe`` would park one thread per connection; instead one task
    watches the store's newest position (a cheap read that sees commits of
    other processes too) and, when it moves, pulls each subscriber's
    ``changes`` from its own cursor.  The store guarantees nothing can appear
    behind a cursor later, so no event is missed or repeated (G3).
    """

    MAX_BACKLOG = 1000  # batches queued for one slow client before it is dropped

    def __init__(self, server: Server, poll: float) -> None:
        self.server = server
        self.poll = poll
        self.subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._dirty = False

    def join(self, sink: int, after: int | None, base: str) -> Subscriber:
        store = self.server.store
        sub = Subscriber(sink, store.last_id() if after is None else after, base)
        self.subscribers.add(sub)
        self._dirty = True  # a resuming client may be behind: catch it up at once
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return sub

    def leave(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        store = self.server.store
        seen = -1
        try:
            while self.subscribers:
                last = store.last_id()
                if last != seen or self._dirty:
                    self._dirty = False
                    seen = last
                    for sub in list(self.subscribers):
                        self._pump(sub)
                await asyncio.sleep(self.poll)
        except (twittercore.Error, OSError) as exc:
            # The store failed (or closed at shutdown): end every stream rather
            # than leave it silent; clients reconnect with Last-Event-ID and
            # lose nothing.
            logger.warning("streaming hub stopped: %s", exc)
            for sub in list(self.subscribers):
                sub.queue.put_nowait(None)
            self.subscribers.clear()

    def _pump(self, sub: Subscriber) -> None:
        store = self.server.store
        while True:
            items, sub.cursor = store.changes(sub.sink, sub.cursor)
            if items:
                if sub.queue.qsize() > self.MAX_BACKLOG:
                    sub.queue.put_nowait(None)  # too slow: end the stream, the client resumes
                    self.subscribers.discard(sub)
                    return
                renderer = Renderer(self.server, sub.base)  # fresh counts per batch
                sub.queue.put_nowait([sse(item, renderer) for item in items])
            if len(items) < 1024:
                return


def sse(item: twittercore.Change, renderer: Renderer) -> bytes:
    """One change as an SSE message; ``id:`` lets a client resume with Last-Event-ID."""
    if isinstance(item, twittercore.Deletion):
        return f"id: {item.seq}\nevent: delete\ndata: {item.id}\n\n".encode()
    status = renderer.server.cache.status(renderer, item)
    if status is None:
        return f"id: {item.id}\n\n".encode()  # not ours to show, but keep the cursor moving
    return b"id: %d\nevent: update\ndata: %s\n\n" % (item.id, status)


async def stream_user(request: Request) -> Response:
    server: Server = request.app.state.server
    me = server.viewer(request)
    resume = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    after = parse_id(resume, "Last-Event-ID")
    sub = server.hub.join(me.id, after, base_url(request))

    async def body() -> AsyncIterator[bytes]:
        # One pending get() survives heartbeats: cancelling a get() on every
        # timeout (asyncio.wait_for) can race with a put and drop a batch.
        getter: asyncio.Future[list[bytes] | None] | None = None
        try:
            yield b":)\n\n"  # Mastodon's greeting: tells the client the stream is live
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(sub.queue.get())
                done, _ = await asyncio.wait((getter,), timeout=server.heartbeat)
                if not done:
                    yield b":thump\n\n"  # Mastodon's heartbeat keeps proxies from closing us
                    continue
                batch, getter = getter.result(), None
                if batch is None:
                    return
                yield b"".join(batch)
        finally:
            if getter is not None:
                getter.cancel()
            server.hub.leave(sub)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


async def streaming_health(request: Request) -> Response:
    return Response("OK", media_type="text/plain")


# ======================================================================= the app


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return json_response({"error": exc.message}, exc.status)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "Record not found", 405: "Method not allowed"}.get(exc.status_code, str(exc.detail))
    return json_response({"error": message}, exc.status_code, getattr(exc, "headers", None))


async def store_error(request: Request, exc: Exception) -> Response:
    # Handlers validate first, so these mean a request the store refused.
    if isinstance(exc, twittercore.NotFoundError):
        return json_response({"error": "Record not found"}, 404)
    if isinstance(exc, twittercore.InvalidArgumentError):
        return json_response({"error": f"Validation failed: {exc}"}, 422)
    return json_response({"error": "The store failed; try again"}, 503)


async def server_error(request: Request, exc: Exception | None) -> Response:
    return json_response({"error": "Internal server error"}, 500)


ROUTES = [
    Route("/api/v1/statuses", post_status, methods=["POST"]),
    Route("/api/v1/statuses/{id}", get_status, methods=["GET"]),
    Route("/api/v1/statuses/{id}", delete_status, methods=["DELETE"]),
    Route("/api/v1/timelines/home", home_timeline, methods=["GET"]),
    Route("/api/v1/accounts", create_account, methods=["POST"]),
    Route("/api/v1/accounts/verify_credentials", verify_credentials, methods=["GET"]),
    Route("/api/v1/accounts/{id}", get_account, methods=["GET"]),
    Route("/api/v1/accounts/{id}/statuses", account_statuses, methods=["GET"]),
    Route("/api/v1/accounts/{id}/follow", follow, methods=["POST"]),
    Route("/api/v1/accounts/{id}/unfollow", unfollow, methods=["POST"]),
    Route("/api/v1/accounts/{id}/followers", followers, methods=["GET"]),
    Route("/api/v1/accounts/{id}/following", following, methods=["GET"]),
    Route("/api/v1/instance", instance_v1, methods=["GET"]),
    Route("/api/v2/instance", instance_v2, methods=["GET"]),
    Route("/api/v1/streaming/user", stream_user, methods=["GET"]),
    Route("/api/v1/streaming/health", streaming_health, methods=["GET"]),
]


class App(Starlette):
    """Starlette, with a shortcut for the hottest route.

    ``GET /api/v1/timelines/home`` is most of a Mastodon server's traffic
    (tens of reads per post).  It skips the router's scan of every route and
    the middleware stack: on a page served from the caches those cost about a
    fifth of the request.  Errors are rendered exactly as on the slow path.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/v1/timelines/home" and scope["method"] == "GET":
            scope["app"] = self
            request = Request(scope, receive)
            try:
                response = await home_timeline(request)
            except ApiError as exc:
                response = await api_error(request, exc)
            except twittercore.Error as exc:
                response = await store_error(request, exc)
            except Exception:
                response = await server_error(request, None)
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    store_target: str,
    state_path: str = ":memory:",
    *,
    admin_token: str | None = None,
    store_options: dict[str, Any] | None = None,
    poll: float = 0.005,
    heartbeat: float = 15.0,
) -> Starlette:
    """Build the app.  The store and the SQLite state open when the app starts.

    ``store_target`` is anything ``twittercore.open`` takes (``":memory:"``, a
    directory); ``state_path`` is the SQLite file for accounts and tokens.
    """
    server = Server(store_target, state_path, admin_token, store_options or {}, poll, heartbeat)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        server.open()
        try:
            yield
        finally:
            server.close()

    app = App(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers={
            ApiError: api_error,
            HTTPException: http_error,
            twittercore.Error: store_error,
            Exception: server_error,
        },
    )
    app.state.server = server
    return app


def paths(data_dir: str) -> tuple[str, str]:
    """Where a data dir keeps the store and the server state."""
    return os.path.join(data_dir, "store"), os.path.join(data_dir, "server.sqlite3")


def app_from_env() -> Starlette:
    """The uvicorn factory for ``twittercore serve``: settings come from the
    environment so that every worker process builds the same app."""
    data = os.environ["TWITTERCORE_DATA"]
    store, state = paths(data)
    if os.environ.get("TWITTERCORE_STORE"):
        store = os.environ["TWITTERCORE_STORE"]
    options = json.loads(os.environ.get("TWITTERCORE_STORE_OPTIONS", "{}"))
    return create_app(store, state, admin_token=os.environ.get("TWITTERCORE_ADMIN_TOKEN") or None, store_options=options)
