"""Statuses and timelines: post (exactly once with an Idempotency-Key), read, delete, home, account."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import twittercore

from ..auth import viewer
from ..context import server_of
from ..entities import MAX_CHARS, decode_status, encode_status
from ..faults import crash_point
from ..http import ApiError, flag, form, json_response, not_found, paging, path_id, text_field
from ..render import page_of_statuses

__all__ = ["ROUTES", "home_timeline"]

VISIBILITIES = ("public", "unlisted")  # what this server can honour (see docs/server.md)
MAX_KEY = 255  # bytes: the store's limit for an idempotency key

# Parameters Mastodon accepts that this server cannot honour: refusing them
# (422, as Mastodon refuses what it cannot do) beats silently posting
# something other than what was asked.
_UNSUPPORTED = {
    "in_reply_to_id": "replies are not supported here",
    "scheduled_at": "scheduled statuses are not supported here",
    "media_ids": "no media attachment with this id (this server has no media)",
    "poll": "polls are not supported here",
    "quote_id": "quotes are not supported here",
}


def idempotency_key(request: Request) -> bytes | None:
    """The Idempotency-Key header as bytes (the store scopes it to the account)."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    raw = key.encode("latin-1")  # the header's bytes as sent
    if not 0 < len(raw) <= MAX_KEY:
        raise ApiError(422, f"Idempotency-Key: expected 1 to {MAX_KEY} bytes")
    return raw


async def post_status(request: Request) -> Response:
    server = server_of(request)
    me = viewer(request, "write:statuses")
    params = await form(request)
    text = params.get("status")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(422, "Validation failed: Text can't be blank")
    if len(text) > MAX_CHARS:
        raise ApiError(422, f"Validation failed: Text character limit of {MAX_CHARS} exceeded")
    for name, why in _UNSUPPORTED.items():
        value = params.get(name)
        if value not in (None, "", []) and not (name == "poll" and value == {}):
            raise ApiError(422, f"Validation failed: {name}: {why}")
    visibility = text_field(params, "visibility", 20, "public")
    if visibility not in VISIBILITIES:
        raise ApiError(
            422,
            f"Validation failed: visibility {str(visibility)[:20]!r} is not supported here (use public or unlisted)",
        )
    spoiler = text_field(params, "spoiler_text", MAX_CHARS, "")
    language = text_field(params, "language", 16)
    sensitive = flag(params, "sensitive")
    key = idempotency_key(request)
    payload = encode_status(text, visibility or "public", sensitive, spoiler or "", language)
    if key is not None:
        crash_point("post:before")
    try:
        # With a key the store records it in the event's own transaction: a
        # retry (on any worker, after any crash) returns this same event.
        event = await run_in_threadpool(server.store.publish, me.id, payload, key)
    except twittercore.NotFoundError:
        raise not_found() from None  # a retry of a status posted, then deleted
    if key is not None:
        crash_point("post:published")
    return json_response(server.renderer(request).status(event))


async def get_status(request: Request) -> Response:
    server = server_of(request)

    def work() -> Response:
        try:
            event = server.store.event(path_id(request))
        except twittercore.NotFoundError:
            raise not_found() from None
        rendered = server.renderer(request).status(event)
        if rendered is None:
            raise not_found()
        return json_response(rendered)

    return await server.run(work)


async def delete_status(request: Request) -> Response:
    server = server_of(request)
    me = viewer(request, "write:statuses")
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
    assert rendered is not None
    rendered["text"] = body["t"]  # Mastodon returns the source for delete-and-redraft
    return json_response(rendered)


async def home_timeline(request: Request) -> Response:
    server = server_of(request)

    def work() -> Response:
        me = viewer(request, "read:statuses")
        page = paging(request)
        events = [] if page is None else server.store.home(me.id, **page)
        return page_of_statuses(request, server.cache, server.renderer(request), events)

    return await server.run(work)


ROUTES = [
    Route("/api/v1/statuses", post_status, methods=["POST"]),
    Route("/api/v1/statuses/{id}", get_status, methods=["GET"]),
    Route("/api/v1/statuses/{id}", delete_status, methods=["DELETE"]),
    Route("/api/v1/timelines/home", home_timeline, methods=["GET"]),
]
