"""Live timelines: server-sent events at ``/api/v1/streaming/user``, WebSocket at ``/api/v1/streaming``.

One :class:`Hub` per worker process feeds every stream connected to it.  A
single waiter thread blocks in the store's own :meth:`~twittercore.Store.wait`
(which wakes on commits of any process); when the store moves it hands the
event loop one wake-up, and the loop pulls each subscriber's ``changes``
from that subscriber's own cursor.  So an idle server does no work at all
(no polling: the thread sleeps in ``wait``), there is no thread per
connection, and since nothing can appear behind a cursor later, no event
is missed or repeated (G3).

A store that waits on a network (``Store.remote``: Redis) is not read on the
event loop: one *pump* thread runs every pull instead (one, so cursors move
in order) and hands the loop the rendered batches, so a slow or partitioned
master delays streams, never the worker's other requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

import twittercore

from .auth import viewer
from .context import Server, server_of
from .http import ApiError, base_url, json_response, parse_id
from .render import Renderer

__all__ = ["Hub", "ROUTES"]

logger = logging.getLogger("twittercore.server")


class Subscriber:
    """One stream's cursor and outbox.  ``frame`` renders a change for this stream's transport."""

    __slots__ = ("sink", "cursor", "queue", "base", "frame")

    def __init__(self, sink: int, cursor: int | None, base: str, frame: Any) -> None:
        self.sink = sink
        self.cursor = cursor  # None until the first pump reads the store's last id
        self.base = base  # for the URLs in rendered statuses
        self.frame = frame
        self.queue: asyncio.Queue[list[Any] | None] = asyncio.Queue()


class Hub:
    """One waiter thread per worker process; fan-out on the event loop (see the module docs)."""

    MAX_BACKLOG = 1000  # batches queued for one slow client before it is dropped
    #: How long one ``store.wait`` blocks before the waiter re-checks that it
    #: is still wanted; bounds how long shutdown waits for the thread.
    WAIT_SLICE = 0.5

    def __init__(self, server: Server) -> None:
        self.server = server
        self.subscribers: set[Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._wanted = False  # any subscribers: read by the waiter thread
        self._pumps = 0  # _pump_all runs begun: the waiter reads it (see _wait_loop)
        self._pumper: ThreadPoolExecutor | None = None  # remote stores: the one pump thread

    def join(self, sink: int, after: int | None, base: str, frame: Any) -> Subscriber:
        sub = Subscriber(sink, after, base, frame)
        self.subscribers.add(sub)
        self._loop = asyncio.get_running_loop()
        # A resuming client may be behind: catch it up at once.
        if self.server.store.remote:
            self._schedule(lambda: self._pump(sub))
        else:
            self._pump(sub)
        with self._lock:
            self._wanted = True
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(target=self._wait_loop, name="twittercore-hub", daemon=True)
                self._thread.start()
        return sub

    def leave(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        if not self.subscribers:
            with self._lock:
                self._wanted = False

    def stop(self) -> None:
        """Stop the waiter (before the store closes: it must not read a closed store)."""
        self._stopped.set()
        with self._lock:
            thread = self._thread
            pumper, self._pumper = self._pumper, None
        if thread is not None:
            thread.join(timeout=self.WAIT_SLICE + 1)
        if pumper is not None:
            pumper.shutdown(wait=True, cancel_futures=True)  # a pull in flight ends within the store's timeout

    def _wait_loop(self) -> None:
        store = self.server.store
        try:
            seen = store.last_id()
            # A commit between a join's cursor and this read would wake no
            # one: pump once from here so every subscriber starts level.
            self._schedule(self._pump_all)
            while not self._stopped.is_set():
                with self._lock:
                    if not self._wanted:
                        self._thread = None
                        return
                if store.wait(seen, self.WAIT_SLICE):
                    # Deliver at once: on a store whose last_id() is slow (the
                    # Redis one closes every bucket, tens of ms) pumping only
                    # after it would hold every stream back that long.
                    begun = self._pumps
                    self._schedule(self._pump_all)
                    seen = store.last_id()
                    # A pump that began before last_id() returned may have
                    # missed a commit at or below ``seen``, which the next
                    # wait(seen) would not report: pump again, unless none
                    # began (the one scheduled then starts after ``seen``).
                    if self._pumps != begun:
                        self._schedule(self._pump_all)
        except (twittercore.Error, OSError, RuntimeError) as exc:
            # The store failed (or closed at shutdown), or the loop is gone:
            # end every stream rather than leave it silent; clients reconnect
            # with Last-Event-ID and lose nothing.
            logger.warning("streaming hub stopped: %s", exc)
            loop = self._loop
            if loop is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(self._end_all)
                except RuntimeError:
                    pass
        with self._lock:
            self._thread = None

    def _schedule(self, work: Any) -> None:
        """Run a pull: on the event loop, or for a remote store in the pump thread."""
        loop = self._loop
        if loop is None or self._stopped.is_set():
            return
        if not self.server.store.remote:
            loop.call_soon_threadsafe(work)
            return
        with self._lock:
            if self._pumper is None:
                self._pumper = ThreadPoolExecutor(1, thread_name_prefix="twittercore-pump")
            pumper = self._pumper
        try:
            pumper.submit(self._logged, work)
        except RuntimeError:  # shut down meanwhile
            pass

    @staticmethod
    def _logged(work: Any) -> None:
        try:
            work()
        except Exception:  # an executor would keep it in a future nobody reads
            logger.exception("streaming hub: a pull failed")

    def _on_loop(self, work: Any, *args: Any) -> None:
        """``work(*args)`` on the event loop (called from the pump thread or the loop itself)."""
        if not self.server.store.remote:
            work(*args)
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(work, *args)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def _end_all(self) -> None:
        for sub in list(self.subscribers):
            sub.queue.put_nowait(None)
        self.subscribers.clear()

    def _pump_all(self) -> None:
        self._pumps += 1
        try:
            for sub in list(self.subscribers):
                self._pump(sub)
        except twittercore.Error as exc:
            logger.warning("streaming hub: %s", exc)
            self._on_loop(self._end_all)

    def _pump(self, sub: Subscriber) -> None:
        store = self.server.store
        if sub.cursor is None:
            sub.cursor = store.last_id()
        while True:
            items, sub.cursor = store.changes(sub.sink, sub.cursor)
            if items:
                if sub.queue.qsize() > self.MAX_BACKLOG:
                    self._on_loop(sub.queue.put_nowait, None)  # too slow: end the stream, the client resumes
                    self.subscribers.discard(sub)
                    return
                renderer = Renderer(store, self.server.state, sub.base)  # fresh counts per batch
                self._on_loop(sub.queue.put_nowait, [sub.frame(item, renderer, self.server) for item in items])
            if len(items) < 1024:
                return


# ----------------------------------------------------------------- SSE


def sse(item: twittercore.Change, renderer: Renderer, server: Server) -> bytes:
    """One change as an SSE message; ``id:`` lets a client resume with Last-Event-ID."""
    if isinstance(item, twittercore.Deletion):
        return f"id: {item.seq}\nevent: delete\ndata: {item.id}\n\n".encode()
    status = server.cache.status(renderer, item)
    if status is None:
        return f"id: {item.id}\n\n".encode()  # not ours to show, but keep the cursor moving
    return b"id: %d\nevent: update\ndata: %s\n\n" % (item.id, status)


async def stream_user(request: Request) -> Response:
    server = server_of(request)
    me = viewer(request, "read:statuses")
    resume = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    after = parse_id(resume, "Last-Event-ID")
    sub = server.hub.join(me.id, after, base_url(request), sse)

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


# ----------------------------------------------------------- WebSocket
# Mastodon's protocol: the token comes as ?access_token= or as the
# Sec-WebSocket-Protocol; ?stream=user subscribes at once; the client sends
# {"type": "subscribe"|"unsubscribe", "stream": "user"}; each event is
# {"stream": ["user"], "event": "update"|"delete", "payload": <string>}
# where an update's payload is the Status JSON as a string.


def ws_frame(item: twittercore.Change, renderer: Renderer, server: Server) -> str | None:
    if isinstance(item, twittercore.Deletion):
        return json.dumps({"stream": ["user"], "event": "delete", "payload": str(item.id)})
    status = server.cache.status(renderer, item)
    if status is None:
        return None
    return f'{{"stream":["user"],"event":"update","payload":{json.dumps(status.decode())}}}'


async def stream_websocket(websocket: WebSocket) -> None:
    server = server_of(websocket)
    protocol = websocket.headers.get("sec-websocket-protocol")
    token = websocket.query_params.get("access_token") or (protocol or "").split(",")[0].strip()
    try:
        me = viewer(websocket, "read:statuses", token=token)  # type: ignore[arg-type]
    except ApiError as exc:
        # Refused before the handshake completes: the client sees Mastodon's
        # HTTP status and error body where the server can send them.
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(json_response({"error": exc.message}, exc.status))
        else:
            await websocket.close(code=4000 + exc.status, reason=exc.message[:120])
        return
    await websocket.accept(subprotocol=protocol.split(",")[0].strip() if protocol else None)
    base = base_url(websocket)  # type: ignore[arg-type]
    sub: Subscriber | None = None
    if websocket.query_params.get("stream") == "user":
        sub = server.hub.join(me.id, None, base, ws_frame)

    async def receive() -> dict[str, Any] | None:
        """The next control message; None when the client has gone."""
        while True:
            try:
                text = await websocket.receive_text()
            except (WebSocketDisconnect, RuntimeError, KeyError):
                return None
            try:
                message = json.loads(text)
            except ValueError:
                message = None
            if not isinstance(message, dict) or message.get("type") not in ("subscribe", "unsubscribe"):
                await websocket.send_text(
                    json.dumps(
                        {
                            "error": 'Unknown message: expected {"type": "subscribe"|"unsubscribe", "stream": "user"}',
                            "status": 400,
                        }
                    )
                )
                continue
            if message.get("stream") != "user":
                await websocket.send_text(
                    json.dumps({"error": "Unknown stream type (this server streams user only)", "status": 400})
                )
                continue
            return message

    control: asyncio.Task[dict[str, Any] | None] = asyncio.ensure_future(receive())
    getter: asyncio.Future[Any] | None = None
    try:
        while True:
            if sub is not None and getter is None:
                getter = asyncio.ensure_future(sub.queue.get())
            waiting: set[asyncio.Future[Any]] = {control} | ({getter} if getter is not None else set())
            done, _ = await asyncio.wait(waiting, timeout=server.heartbeat, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                continue  # keep-alive pings are uvicorn's (ws_ping_interval)
            if control in done:
                message = control.result()
                if message is None:
                    return
                if message["type"] == "subscribe" and sub is None:
                    sub = server.hub.join(me.id, None, base, ws_frame)
                elif message["type"] == "unsubscribe" and sub is not None:
                    server.hub.leave(sub)
                    if getter is not None:
                        getter.cancel()
                        getter = None
                    sub = None
                control = asyncio.ensure_future(receive())
            if getter is not None and getter in done:
                batch, getter = getter.result(), None
                if batch is None:
                    await websocket.close(code=1012)  # service restart: reconnect
                    return
                for frame in batch:
                    if frame is not None:
                        await websocket.send_text(frame)
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        control.cancel()
        if getter is not None:
            getter.cancel()
        if sub is not None:
            server.hub.leave(sub)


ROUTES = [
    Route("/api/v1/streaming/user", stream_user, methods=["GET"]),
    WebSocketRoute("/api/v1/streaming", stream_websocket),
]
