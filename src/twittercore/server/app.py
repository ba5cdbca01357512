"""A Mastodon-compatible HTTP server on an embedded twittercore store.

The store does the hard part (one total order of ids, the home-timeline merge,
snapshot paging, tailing across processes, exactly-once keyed publishes);
the server only speaks Mastodon's client API (and Twitter's v1.1 subset) on
top of it.  The mapping:

* an account is a store node (its id is the node id) plus a record in the
  server's account state (username, password hash, tokens): ``state.py``;
* a status is an event whose payload is compact JSON: ``entities.py``;
* following is a store edge ``follow(sink=follower, source=followee)``; each
  account follows itself from birth so that, as on Mastodon, its home
  timeline includes its own posts.  That self-edge is hidden from the
  followers/following lists and counts, and cannot be removed;
* streams are fed by the store's ``changes`` feed, one waiter per worker
  process: ``streaming.py``.

The modules: ``http.py`` (errors, parsing, paging, CORS), ``render.py``
(JSON and its caches), ``auth.py`` (tokens, scopes, passwords),
``routes/`` (one module per Mastodon resource, OAuth among them),
``streaming.py``, ``twitter.py``; this one assembles the app.

Run it with ``twittercore serve --data DIR`` (see docs/server.md), or build
the app in-process with :func:`create_app` (tests do, on ``:memory:`` and LMDB).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

import twittercore

from . import streaming, twitter
from .context import Server
from .http import WORKER_HEADER, ApiError, cors_origin, cors_preflight, cors_send, json_response, worker_send
from .routes import ROUTES as MASTODON_ROUTES
from .routes.oauth import OAuthError, oauth_body
from .routes.statuses import home_timeline
from .sqlite_state import SQLiteState
from .state import AccountState

__all__ = ["create_app", "app_from_env", "ApiError", "ROUTES", "paths", "open_state"]

logger = logging.getLogger("twittercore.server")

ROUTES = [*MASTODON_ROUTES, *streaming.ROUTES, *twitter.ROUTES]


def _twitter(request: Request) -> bool:
    return bool(request.scope["path"].startswith("/1.1/"))


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if isinstance(exc, OAuthError):
        return json_response(oauth_body(exc), exc.status)
    if _twitter(request):
        return twitter.twitter_error(exc.status, exc.message, getattr(exc, "code", None))
    return json_response({"error": exc.message}, exc.status, exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "Record not found", 405: "Method not allowed"}.get(exc.status_code, str(exc.detail))
    if _twitter(request):
        return twitter.twitter_error(
            exc.status_code, "Sorry, that page does not exist." if exc.status_code == 404 else message
        )
    return json_response({"error": message}, exc.status_code, getattr(exc, "headers", None))


async def store_error(request: Request, exc: Exception) -> Response:
    # Handlers validate first, so these mean a request the store refused.
    if isinstance(exc, twittercore.NotFoundError):
        status, message = 404, "Record not found"
    elif isinstance(exc, twittercore.InvalidArgumentError):
        status, message = 422, f"Validation failed: {exc}"
    else:
        logger.warning("store error: %s", exc)
        status, message = 503, "The store failed; try again"
    if _twitter(request):
        return twitter.twitter_error(status, message)
    return json_response({"error": message}, status)


async def server_error(request: Request, exc: Exception | None) -> Response:
    logger.exception("internal error", exc_info=exc)
    return json_response({"error": "Internal server error"}, 500)


class App(Starlette):
    """Starlette, with CORS as Mastodon sends it and a shortcut for the hottest route.

    ``GET /api/v1/timelines/home`` is most of a Mastodon server's traffic
    (tens of reads per post).  It skips the router's scan of every route and
    the middleware stack: on a page served from the caches those cost about a
    fifth of the request.  Errors are rendered exactly as on the slow path.
    """

    _pid: bytes = b""
    _pid_of: int = -1

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            pid = os.getpid()
            if pid != self._pid_of:  # workers are forked or spawned after the app is built
                self._pid, self._pid_of = str(pid).encode(), pid
            if cors_origin(scope) is not None:
                preflight = cors_preflight(scope)
                if preflight is not None:
                    await preflight(scope, receive, send)
                    return
                send = cors_send(send)
            if scope["path"] == "/api/v1/timelines/home" and scope["method"] == "GET":
                scope["app"] = self
                request = Request(scope, receive)
                try:
                    response = await home_timeline(request)
                except ApiError as exc:
                    response = await api_error(request, exc)
                except twittercore.Error as exc:
                    response = await store_error(request, exc)
                except Exception as exc:
                    response = await server_error(request, exc)
                # The hot path names its worker without a send wrapper (a coroutine per message).
                response.raw_headers.append((WORKER_HEADER, self._pid))
                await response(scope, receive, send)
                return
            send = worker_send(send, self._pid)
        await super().__call__(scope, receive, send)


def create_app(
    store_target: str | Callable[[], twittercore.Store],
    state_path: str | Callable[[], AccountState] = ":memory:",
    *,
    admin_token: str | None = None,
    store_options: dict[str, Any] | None = None,
    heartbeat: float = 15.0,
) -> Starlette:
    """Build the app.  The store and the account state open when the app starts.

    ``store_target`` is anything ``twittercore.open`` takes (``":memory:"``, a
    directory, a ``scheme://`` URL a backend serves), or a callable returning an
    open :class:`twittercore.Store` (``store_options`` then do not apply); ``state_path`` is where
    accounts and tokens live (see :func:`open_state`), or a callable returning
    any :class:`~twittercore.server.state.AccountState`.
    """
    opener: Callable[[], AccountState] = state_path if callable(state_path) else (lambda: open_state(state_path))
    server = Server(store_target, opener, admin_token, store_options or {}, heartbeat)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Opened in the worker process itself (LMDB must not cross a fork).
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


def open_state(target: str) -> AccountState:
    """The account state at ``target``: a ``redis://`` or ``redis+cluster://`` URL
    (:class:`~.redis_state.RedisState`, for servers that share only a Redis store),
    else a SQLite file (``":memory:"`` for a throwaway one)."""
    if target.lower().startswith(("redis://", "redis+cluster://")):
        from .redis_state import RedisState

        return RedisState(target)
    return SQLiteState(target)


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
    if os.environ.get("TWITTERCORE_STATE"):
        state = os.environ["TWITTERCORE_STATE"]
    options = json.loads(os.environ.get("TWITTERCORE_STORE_OPTIONS", "{}"))
    return create_app(
        store,
        state,
        admin_token=os.environ.get("TWITTERCORE_ADMIN_TOKEN") or None,
        store_options=options,
        heartbeat=float(os.environ.get("TWITTERCORE_HEARTBEAT") or 15.0),
    )
