"""A minimal web service on an embedded store: post, follow, read a home timeline.

Run it (needs the ``server`` extra for Starlette and uvicorn)::

    python examples/web_app.py --data /tmp/feed --port 8080
    curl -X POST localhost:8080/users/2/posts -d 'hello'
    curl -X POST localhost:8080/users/1/follows/2
    curl localhost:8080/users/1/home

The store is opened once per process and shared by every request; it is safe
to share between threads, and several processes may open the same directory.
Every bad id or payload is a ``twittercore.Error`` that the handler turns into
a 4xx: the store rejected it and changed nothing.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import twittercore


def create_app(target: str) -> Starlette:
    store: twittercore.Store | None = None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal store
        with twittercore.open(target) as store:
            yield

    def event_json(event: twittercore.Event) -> dict[str, object]:
        return {"id": str(event.id), "author": event.source, "text": event.payload.decode(errors="replace")}

    async def post(request: Request) -> JSONResponse:
        key = request.headers.get("Idempotency-Key")  # a retried POST returns the same post
        event = store.publish(int(request.path_params["user"]), await request.body(), key=key)
        return JSONResponse(event_json(event), status_code=201)

    async def follow(request: Request) -> JSONResponse:
        changed = store.follow(int(request.path_params["user"]), int(request.path_params["other"]))
        return JSONResponse({"following": True, "changed": changed})

    async def home(request: Request) -> JSONResponse:
        # ?before=ID pages to older posts; the library's max_id is inclusive, as Twitter's.
        before = request.query_params.get("before")
        max_id = None if before is None else int(before) - 1
        page = store.home(int(request.path_params["user"]), limit=20, max_id=max_id)
        return JSONResponse([event_json(e) for e in page])

    async def rejected(request: Request, exc: Exception) -> JSONResponse:
        status = 404 if isinstance(exc, twittercore.NotFoundError) else 422
        return JSONResponse({"error": str(exc)}, status_code=status)

    return Starlette(
        routes=[
            Route("/users/{user:int}/posts", post, methods=["POST"]),
            Route("/users/{user:int}/follows/{other:int}", follow, methods=["POST"]),
            Route("/users/{user:int}/home", home),
        ],
        exception_handlers={twittercore.Error: rejected, ValueError: rejected},
        lifespan=lifespan,
    )


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="feed-data", help="the store's directory")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    uvicorn.run(create_app(args.data), host="127.0.0.1", port=args.port)
