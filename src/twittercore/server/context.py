"""The per-process state every handler shares: the store, the account state, the streaming hub."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

import twittercore

from .http import ApiError, base_url, not_found
from .render import PageCache, Renderer
from .state import Account, AccountState

T = TypeVar("T")

__all__ = ["Server", "server_of"]


class Server:
    """Opened in each worker process by the app's lifespan (LMDB must not cross a fork)."""

    def __init__(
        self,
        store_target: str | Callable[[], twittercore.Store],
        open_state: Callable[[], AccountState],
        admin_token: str | None,
        store_options: dict[str, Any],
        heartbeat: float,
    ) -> None:
        self.store_target = store_target
        self.open_state = open_state
        self.admin_token = admin_token
        self.store_options = store_options
        self.heartbeat = heartbeat
        self.store: twittercore.Store = None  # type: ignore[assignment]  # set by open()
        self.state: AccountState = None  # type: ignore[assignment]
        self.hub: Any = None
        self.cache = PageCache()
        self.grants: dict[str, Any] = {}  # token -> (looked up at, Grant): see auth.GRANT_TTL
        self._instance_stats: tuple[float, dict[str, int]] = (0.0, {})

    def open(self) -> None:
        from .streaming import Hub

        # A callable hands over a store object built elsewhere (a decentralised node's view: node/mastodon.py).
        target = self.store_target
        self.store = target() if callable(target) else twittercore.open(target, **self.store_options)
        self.state = self.open_state()
        self.hub = Hub(self)

    def close(self) -> None:
        if self.hub is not None:
            self.hub.stop()
        if self.state is not None:
            self.state.close()
        if self.store is not None:
            self.store.close()

    async def run(self, work: Callable[[], T]) -> T:
        """``work()``, inline when the store is local (microseconds; a thread hop
        would cost more), in the thread pool when it waits on a network
        (``Store.remote``), so a slow or partitioned Redis master stalls only the
        requests that need it, not every request of this worker."""
        if self.store.remote:
            return await run_in_threadpool(work)
        return work()

    def account(self, id: int) -> Account:
        found = self.state.account(id)
        if found is None:
            raise not_found()
        return found

    def renderer(self, request: Request) -> Renderer:
        return Renderer(self.store, self.state, base_url(request))

    def stats(self) -> dict[str, int]:
        # Counting walks every account: cache it a minute, as Mastodon does.
        stamp, stats = self._instance_stats
        if time.monotonic() - stamp > 60 or not stats:
            ids = self.state.account_ids()
            stats = {
                "user_count": len(ids),
                "status_count": sum(map(self.store.timeline_count, ids)),
                "domain_count": 0,
            }
            self._instance_stats = (time.monotonic(), stats)
        return stats


def server_of(request: Any) -> Server:
    server = request.app.state.server
    if server.store is None:
        raise ApiError(503, "The server is starting; try again")
    return server  # type: ignore[no-any-return]
