"""The node's HTTP API: the Mastodon-compatible client API, a minimal admin client API and the
node-to-node protocol.

Mastodon (per-account tokens, as ``twittercore serve``; node/mastodon.py):
every ``/api/v1/...`` path the server app serves (accounts with the admin
token, statuses, home and account timelines, follows, streaming), with home and
account-timeline reads made fresh first (``Node.fresh``).

The minimal API (every write needs ``Authorization: Bearer <admin token>``):

    POST /api/v1/users {name}                a user whose home is this node
    POST /api/v1/follow {sink, source}       sink must live here; source anywhere
    POST /api/v1/unfollow {sink, source}
    POST /api/v1/publish {source, text}      committed here before the reply
    GET  /node/v1/home?user=&max_id=&since_id=&limit=
    GET  /api/v1/users/{id}/timeline?max_id=&since_id=&limit=

Its timeline ids are merge keys ``hlc << 48 | source`` as decimal strings, newest
first; a page shows only events at or below the node's watermark for it (no
fresh wait).  Use one of the two client APIs per node: both allocate user ids.

Peers (same bearer token): ``/node/v1/push`` (links plus the origin's
promise; an empty push is the heartbeat), ``/node/v1/heartbeat`` (the same),
``/node/v1/chain`` (a range of one chain), ``/node/v1/frontiers``,
``/node/v1/subscribe``, ``/node/v1/promise`` (a promise for a fresh read),
``/node/v1/members`` (membership gossip: POST a member list, get ours back),
``/node/v1/stats``, ``/node/v1/admin/isolate``.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import Error, InvalidArgumentError, NotFoundError, StoreError
from ..server.app import create_app as create_server_app
from ..server.http import ApiError, form, json_response, read_body
from .chain import Link, key_of, split_key, split_status_id
from .core import Node
from .mastodon import NodeAccounts, NodeView
from .membership import Membership

__all__ = ["create_app"]

MAX_PAGE = 200
MAX_TEXT = 5000
#: A push of 500 links of 5000 characters each, and then some.
MAX_PEER_BODY = 8 << 20


async def peer_body(request: Request) -> dict[str, Any]:
    raw = await read_body(request, MAX_PEER_BODY)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "body: malformed JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body: expected a JSON object")
    return body


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ApiError(422, f"{what}: expected an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 40:
        number = int(value)
    else:
        raise ApiError(422, f"{what}: expected an integer")
    if number < 0:
        raise ApiError(422, f"{what}: expected a non-negative integer")
    return number


def _opt_int(params: Any, name: str) -> int | None:
    value = params.get(name)
    return None if value in (None, "") else _int(value, name)


_MINIMAL = {"/api/v1/users", "/api/v1/follow", "/api/v1/unfollow", "/api/v1/publish"}
_MINIMAL_TIMELINE = re.compile(r"^/api/v1/users/[^/]+/timeline$")
_ACCOUNT_STATUSES = re.compile(r"^/api/v1/accounts/(\d{1,20})/statuses$")
_STATUS = re.compile(r"^/api/v1/statuses/(\d{1,20})$")


def create_app(node: Node) -> Any:
    """The node's ASGI app: the node routes and the Mastodon server app over :class:`NodeView`."""
    view = NodeView(node)
    masto = create_server_app(
        lambda: view,
        lambda: NodeAccounts(
            os.path.join(node.data, "accounts.sqlite3"), node.index, node.peers, node.store.max_user_number()
        ),
        admin_token=node.token,
    )
    server = masto.state.server
    own = _node_app(node)

    def fresh_sources(scope: dict[str, Any]) -> list[int]:
        path = scope["path"]
        match = _ACCOUNT_STATUSES.match(path)
        if match:
            return [int(match.group(1))]
        if path != "/api/v1/timelines/home":
            return []
        auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        if not auth.lower().startswith("bearer "):
            return []
        grant = server.state.grant(auth[7:].strip())
        if grant is None or grant.account is None:
            return []  # the server app answers 401
        return node.store.sources_of(grant.account)

    async def forwarded(id: int, scope: dict[str, Any], receive: Any, send: Any) -> bool:
        """A status this node does not hold but whose id names another home: ask that node (a status is
        public, so no token of ours is needed there)."""
        hlc, home = split_status_id(id)
        if home == node.index or home not in node.peers or node.store.event_at(hlc, home) is not None:
            return False
        assert node.client is not None
        try:
            reply = await node.client.get(f"{node.peers[home]}/api/v1/statuses/{id}", headers={"authorization": ""})
        except httpx.HTTPError as exc:
            response = json_response({"error": f"Service unavailable: node {home}: {type(exc).__name__}"}, 503)
        else:
            response = Response(reply.content, reply.status_code, media_type="application/json")
        await response(scope, receive, send)
        return True

    async def lifespan(receive: Any, send: Any) -> None:
        await receive()  # lifespan.startup
        try:
            await node.start()
            view.attach(asyncio.get_running_loop())
            server.open()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            server.close()
        finally:
            await node.stop()
        await send({"type": "lifespan.shutdown.complete"})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await lifespan(receive, send)
            return
        path = scope["path"]
        if path.startswith("/node/") or path in _MINIMAL or _MINIMAL_TIMELINE.match(path):
            await own(scope, receive, send)
            return
        if kind == "http" and scope["method"] == "GET" and server.store is not None:
            match = _STATUS.match(path)
            if match and await forwarded(int(match.group(1)), scope, receive, send):
                return
            sources = fresh_sources(scope)
            if sources:
                try:
                    await node.fresh(sources)
                except StoreError as exc:
                    await json_response({"error": f"Service unavailable: {exc}"}, 503)(scope, receive, send)
                    return
        await masto(scope, receive, send)

    app.view = view  # type: ignore[attr-defined]
    return app


def _node_app(node: Node) -> Starlette:
    def check_token(request: Request) -> None:
        if node.token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {node.token}".encode()):
            raise ApiError(401, "The access token is invalid")

    def peer(request: Request) -> None:
        check_token(request)
        if node.isolated:
            raise ApiError(503, "isolated")

    def page(request: Request, sources: list[int]) -> Response:
        params = request.query_params
        max_id, since_id = _opt_int(params, "max_id"), _opt_int(params, "since_id")
        limit = _opt_int(params, "limit") or 20
        limit = min(limit, MAX_PAGE)
        rows = node.view(
            sources,
            None if max_id is None else split_key(max_id),
            None if since_id is None else split_key(since_id),
            limit,
        )
        return json_response(
            [
                {
                    "id": str(key_of(hlc, source)),
                    "account": str(source),
                    "seq": seq,
                    "hlc": hlc,
                    "content": payload.decode("utf-8", "replace"),
                    "late": bool(late),
                }
                for source, seq, hlc, payload, late in rows
            ]
        )

    async def create_user(request: Request) -> Response:
        check_token(request)
        body = await form(request)
        name = body.get("name")
        if not isinstance(name, str):
            raise ApiError(422, "name: expected a string")
        uid = node.store.create_user(name)
        return json_response({"id": str(uid), "name": name, "node": node.name})

    async def follow(request: Request) -> Response:
        check_token(request)
        body = await form(request)
        sink, source = _int(body.get("sink"), "sink"), _int(body.get("source"), "source")
        on = request.url.path.endswith("/follow")
        changed = node.follow(sink, source) if on else node.unfollow(sink, source)
        return json_response({"sink": str(sink), "source": str(source), "following": on, "changed": changed})

    async def publish(request: Request) -> Response:
        check_token(request)
        body = await form(request)
        text = body.get("text")
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            raise ApiError(422, f"text: expected a string of at most {MAX_TEXT} characters")
        link = node.publish(_int(body.get("source"), "source"), text.encode("utf-8", "surrogatepass"))
        return json_response({"id": str(link.key), "seq": link.seq, "hlc": link.hlc, "hash": link.hash.hex()})

    async def home(request: Request) -> Response:
        user = _int(request.query_params.get("user"), "user")
        node._local_user(user)
        return page(request, node.store.sources_of(user))

    async def timeline(request: Request) -> Response:
        user = _int(request.path_params["id"], "id")
        node._known_home(user)
        return page(request, [user])

    async def push(request: Request) -> Response:
        peer(request)
        body = await peer_body(request)
        origin = _int(body.get("origin"), "origin")
        if origin not in node.peers:
            raise ApiError(422, f"origin {origin}: not a peer")
        links = [Link.from_wire(obj) for obj in body.get("links") or []]
        node.receive(links)
        heads = {_int(k, "heads"): _int(v, "heads") for k, v in (body.get("heads") or {}).items()}
        node.note_promise(origin, _int(body.get("clock"), "clock"), heads)
        if links:
            node.ask_promises(besides=origin)
        # Our own promise rides back on the reply: a peer that pokes us gets it in one round trip.
        return json_response(node.promise_for(origin))

    async def chain(request: Request) -> Response:
        peer(request)
        params = request.query_params
        source = _int(params.get("source"), "source")
        after = _opt_int(params, "after") or 0
        limit = min(_opt_int(params, "limit") or 500, 5000)
        return json_response(node.chain_reply(source, after, limit))

    async def frontiers(request: Request) -> Response:
        peer(request)
        body = await peer_body(request)
        sources = body.get("sources")
        if not isinstance(sources, list) or len(sources) > 100_000:
            raise ApiError(422, "sources: expected a list")
        origin = body.get("origin")
        return json_response(
            node.frontiers([_int(s, "sources") for s in sources], None if origin is None else _int(origin, "origin"))
        )

    async def subscribe(request: Request) -> Response:
        peer(request)
        body = await peer_body(request)
        node.subscribe(
            _int(body.get("node"), "node"), _int(body.get("source"), "source"), body.get("on", True) is not False
        )
        return json_response({"ok": True})

    async def promise(request: Request) -> Response:
        peer(request)
        body = await peer_body(request)
        sources = body.get("sources")
        if not isinstance(sources, list) or len(sources) > 100_000:
            raise ApiError(422, "sources: expected a list")
        return json_response(node.promise_of([_int(s, "sources") for s in sources]))

    async def stats(request: Request) -> Response:
        return json_response(node.stats())

    async def members(request: Request) -> Response:
        """Push-pull gossip: fold the caller's member list in, answer with ours (GET: just ours)."""
        peer(request)
        if request.method == "POST":
            body = await peer_body(request)
            announced = Membership.from_wire(body.get("members"))
            refused = node.learn(announced)
            sender = body.get("from")
            # The caller's own entry must be what we now hold: if another node holds that index at an
            # equal or newer incarnation, the caller is a second node with a taken index.
            if isinstance(sender, int) and sender in announced:
                known = node.membership.members.get(sender)
                where = known.url if known is not None else node.membership.own_url
                if sender in refused or where != announced[sender].url:
                    if sender not in refused:
                        node.membership.conflicts += 1
                    raise ApiError(
                        409, f"node index {sender} is already taken (by {where}); start it with another --index"
                    )
        return json_response({"members": node.membership.to_wire()})

    async def isolate(request: Request) -> Response:
        check_token(request)
        body = await form(request)
        node.isolated = bool(body.get("isolated", True))
        return json_response({"isolated": node.isolated})

    routes = [
        Route("/api/v1/users", create_user, methods=["POST"]),
        Route("/api/v1/follow", follow, methods=["POST"]),
        Route("/api/v1/unfollow", follow, methods=["POST"]),
        Route("/api/v1/publish", publish, methods=["POST"]),
        Route("/node/v1/home", home),
        Route("/api/v1/users/{id}/timeline", timeline),
        Route("/node/v1/push", push, methods=["POST"]),
        Route("/node/v1/heartbeat", push, methods=["POST"]),
        Route("/node/v1/chain", chain),
        Route("/node/v1/frontiers", frontiers, methods=["POST"]),
        Route("/node/v1/subscribe", subscribe, methods=["POST"]),
        Route("/node/v1/promise", promise, methods=["POST"]),
        Route("/node/v1/stats", stats),
        Route("/node/v1/members", members, methods=["GET", "POST"]),
        Route("/node/v1/admin/isolate", isolate, methods=["POST"]),
    ]

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return json_response({"error": exc.message}, exc.status, exc.headers)

    async def library_error(request: Request, exc: Exception) -> Response:
        status = 404 if isinstance(exc, NotFoundError) else 422 if isinstance(exc, InvalidArgumentError) else 500
        return json_response({"error": str(exc)}, status)

    return Starlette(routes=routes, exception_handlers={ApiError: api_error, Error: library_error})
