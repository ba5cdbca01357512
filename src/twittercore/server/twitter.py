"""Twitter's v1.1 REST subset on the same store: the API the project's brief names.

Tweets are the same events as Mastodon statuses (a tweet is a status, ids
agree), users the same accounts; authentication is the same bearer token
(OAuth 2 ``Authorization: Bearer``).  Paging is Twitter's, which is the
store's own: ``count`` (default 20, at most 200), ``since_id`` exclusive,
``max_id`` inclusive.  ``followers/ids`` and ``friends/ids`` page with
cursors: ``cursor=-1`` starts, ``next_cursor`` continues, ``0`` means
done; a cursor is opaque (here, the last id of the previous page, so a page
costs O(count)); ``previous_cursor`` is always 0 (no backward paging).
Errors are Twitter's ``{"errors": [{"code": n, "message": text}]}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import twittercore

from .auth import viewer
from .context import Server, server_of
from .entities import decode_status, encode_status
from .http import ApiError, form, json_response, parse_id
from .state import Account

__all__ = ["ROUTES", "twitter_error"]

MAX_TWEET = 280
MAX_COUNT = 200
MAX_IDS = 5000

# HTTP status -> Twitter's error code for the generic cases.
_CODES = {400: 44, 401: 89, 403: 200, 404: 34, 413: 44, 415: 44, 422: 44, 503: 130}


def twitter_error(status: int, message: str, code: int | None = None) -> Response:
    return json_response({"errors": [{"code": code or _CODES.get(status, 131), "message": message}]}, status)


class TwitterError(ApiError):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(status, message)
        self.code = code


def _date(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%a %b %d %H:%M:%S +0000 %Y")


def _user(server: Server, account: Account) -> dict[str, Any]:
    store, id = server.store, account.id
    own = 1 if store.is_following(id, id) else 0  # the hidden self-edge
    return {
        "id": id,
        "id_str": str(id),
        "name": account.username,
        "screen_name": account.username,
        "location": "",
        "description": "",
        "url": None,
        "entities": {"description": {"urls": []}},
        "protected": False,
        "followers_count": store.sink_count(id) - own,
        "friends_count": store.source_count(id) - own,
        "listed_count": 0,
        "created_at": _date(account.created_at),
        "favourites_count": 0,
        "verified": False,
        "statuses_count": store.timeline_count(id),
        "default_profile": True,
        "default_profile_image": True,
    }


def _tweet(server: Server, event: twittercore.Event, users: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    user = users.get(event.source)
    if user is None:
        account = server.state.account(event.source)
        if account is None:
            return None  # a node another embedder wrote
        user = users[event.source] = _user(server, account)
    body = decode_status(event.payload)
    return {
        "created_at": _date(event.time),
        "id": event.id,
        "id_str": str(event.id),
        "text": body["t"],
        "truncated": False,
        "entities": {"hashtags": [], "symbols": [], "user_mentions": [], "urls": []},
        "source": "twittercore",
        "in_reply_to_status_id": None,
        "in_reply_to_status_id_str": None,
        "in_reply_to_user_id": None,
        "in_reply_to_user_id_str": None,
        "in_reply_to_screen_name": None,
        "user": user,
        "geo": None,
        "coordinates": None,
        "place": None,
        "contributors": None,
        "is_quote_status": False,
        "retweet_count": 0,
        "favorite_count": 0,
        "favorited": False,
        "retweeted": False,
        "lang": body.get("l") or "und",
    }


def _tweets(server: Server, events: list[twittercore.Event]) -> list[dict[str, Any]]:
    users: dict[int, dict[str, Any]] = {}
    return [t for t in (_tweet(server, e, users) for e in events) if t is not None]


def _target(server: Server, params: Any, default: Account | None) -> Account:
    """The user named by ``user_id`` or ``screen_name`` (default: ``default``)."""
    user_id, name = params.get("user_id"), params.get("screen_name")
    if user_id:
        found = server.state.account(parse_id(user_id, "user_id") or 0)
    elif name:
        found = server.state.account_by_name(str(name).lstrip("@"))
    else:
        found = default
    if found is None:
        raise TwitterError(404, 50, "User not found.")
    return found


def _count(params: Any, default: int, largest: int) -> int:
    text = params.get("count")
    if text in (None, ""):
        return default
    if not (isinstance(text, str) and text.isascii() and text.isdigit() and len(text) < 10):
        raise TwitterError(400, 44, f"count parameter is invalid: {str(text)[:20]!r}")
    return max(1, min(int(text), largest))


def _event(server: Server, id: int | None) -> twittercore.Event:
    try:
        if id is None:
            raise twittercore.NotFoundError("no id")
        return server.store.event(id)
    except twittercore.NotFoundError:
        raise TwitterError(404, 144, "No status found with that ID.") from None


def _route_id(request: Request) -> int | None:
    text = request.path_params.get("id") or request.query_params.get("id")
    if not (
        isinstance(text, str)
        and text.isascii()
        and text.isdigit()
        and len(text) <= 20
        and int(text) <= twittercore.MAX_NODE
    ):
        return None
    return int(text)


async def update(request: Request) -> Response:
    server = server_of(request)
    me = viewer(request, "write:statuses")
    params = await form(request)
    text = params.get("status")
    if not isinstance(text, str) or not text.strip():
        raise TwitterError(403, 170, "Missing required parameter: status.")
    if len(text) > MAX_TWEET:
        raise TwitterError(403, 186, f"Tweet needs to be a bit shorter (at most {MAX_TWEET} characters).")
    for name in ("in_reply_to_status_id", "media_ids", "attachment_url"):
        if params.get(name) not in (None, ""):
            raise TwitterError(400, 44, f"{name} parameter is invalid: replies and media are not supported here")
    event = await run_in_threadpool(server.store.publish, me.id, encode_status(text))
    return json_response(_tweet(server, event, {}))


async def destroy(request: Request) -> Response:
    server = server_of(request)
    me = viewer(request, "write:statuses")
    event = _event(server, _route_id(request))
    if event.source != me.id:
        raise TwitterError(403, 183, "You may not delete another user's status.")
    try:
        await run_in_threadpool(server.store.delete, event.id)
    except twittercore.NotFoundError:
        raise TwitterError(404, 144, "No status found with that ID.") from None
    return json_response(_tweet(server, event, {}))


async def show(request: Request) -> Response:
    server = server_of(request)
    viewer(request, "read:statuses")
    tweet = _tweet(server, _event(server, _route_id(request)), {})
    if tweet is None:
        raise TwitterError(404, 144, "No status found with that ID.")
    return json_response(tweet)


def _paging(params: Any) -> dict[str, Any]:
    return {
        "limit": _count(params, 20, MAX_COUNT),
        "max_id": parse_id(params.get("max_id"), "max_id"),  # inclusive, as the store's
        "since_id": parse_id(params.get("since_id"), "since_id"),
    }


async def home_timeline(request: Request) -> Response:
    server = server_of(request)

    def work() -> Response:
        me = viewer(request, "read:statuses")
        return json_response(_tweets(server, server.store.home(me.id, **_paging(request.query_params))))

    return await server.run(work)


async def user_timeline(request: Request) -> Response:
    server = server_of(request)

    def work() -> Response:
        me = viewer(request, "read:statuses")
        user = _target(server, request.query_params, me)
        return json_response(_tweets(server, server.store.timeline(user.id, **_paging(request.query_params))))

    return await server.run(work)


async def _friendship(request: Request, on: bool) -> Response:
    server = server_of(request)
    me = viewer(request, "write:follows")
    params = await form(request)
    target = _target(server, params, None)
    if target.id == me.id:
        raise TwitterError(403, 158, "You can't follow yourself.")
    await run_in_threadpool(server.store.follow if on else server.store.unfollow, me.id, target.id)
    return json_response(_user(server, target))


async def create_friendship(request: Request) -> Response:
    return await _friendship(request, True)


async def destroy_friendship(request: Request) -> Response:
    return await _friendship(request, False)


def _ids(request: Request, followers: bool) -> Response:
    server = server_of(request)
    me = viewer(request, "read:follows")
    q = request.query_params
    user = _target(server, q, me)
    count = _count(q, MAX_IDS, MAX_IDS)
    cursor_text = q.get("cursor") or "-1"
    if cursor_text == "-1":
        after = None
    elif (
        cursor_text.isascii()
        and cursor_text.isdigit()
        and len(cursor_text) <= 20
        and int(cursor_text) <= twittercore.MAX_NODE
    ):
        after = int(cursor_text)
    else:
        raise TwitterError(400, 44, f"cursor parameter is invalid: {cursor_text[:20]!r}")
    edges = server.store.sinks if followers else server.store.sources
    # One extra for the hidden self-edge, one more to know whether a next page exists.
    ids = [i for i in edges(user.id, limit=count + 2, after=after) if i != user.id]
    page, more = ids[:count], len(ids) > count
    next_cursor = page[-1] if more and page else 0
    stringify = q.get("stringify_ids", "").lower() in ("1", "true", "t")
    return json_response(
        {
            "ids": [str(i) for i in page] if stringify else page,
            "next_cursor": next_cursor,
            "next_cursor_str": str(next_cursor),
            "previous_cursor": 0,
            "previous_cursor_str": "0",
            "total_count": None,
        }
    )


async def follower_ids(request: Request) -> Response:
    return _ids(request, True)


async def friend_ids(request: Request) -> Response:
    return _ids(request, False)


async def verify_credentials(request: Request) -> Response:
    server = server_of(request)
    return json_response(_user(server, viewer(request, "read:accounts")))


ROUTES = [
    Route("/1.1/statuses/update.json", update, methods=["POST"]),
    Route("/1.1/statuses/destroy/{id}.json", destroy, methods=["POST"]),
    Route("/1.1/statuses/show.json", show, methods=["GET"]),
    Route("/1.1/statuses/show/{id}.json", show, methods=["GET"]),
    Route("/1.1/statuses/home_timeline.json", home_timeline, methods=["GET"]),
    Route("/1.1/statuses/user_timeline.json", user_timeline, methods=["GET"]),
    Route("/1.1/friendships/create.json", create_friendship, methods=["POST"]),
    Route("/1.1/friendships/destroy.json", destroy_friendship, methods=["POST"]),
    Route("/1.1/followers/ids.json", follower_ids, methods=["GET"]),
    Route("/1.1/friends/ids.json", friend_ids, methods=["GET"]),
    Route("/1.1/account/verify_credentials.json", verify_credentials, methods=["GET"]),
]
