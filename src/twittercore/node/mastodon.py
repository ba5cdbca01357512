"""The Mastodon-compatible API on a node: the server app (``twittercore.server``) over the node's local view.

:class:`NodeView` implements the :class:`~twittercore.store.Store` protocol on
a :class:`~twittercore.node.core.Node`, so the existing server runs unchanged
on top of it:

* an account is a node user: :class:`NodeAccounts` (the server's SQLite
  account state) hands out ids ``node_index << 40 | n``, so any node can tell a
  user's home node from the id, and accounts homed on another node are known
  here by id alone (as a remote account, with a placeholder username);
* a status id is :func:`~.chain.status_id`, the merge key ``(hlc, node)`` in 64
  bits: ids are in the merge order on every node, so Mastodon's
  ``max_id``/``since_id``/``min_id`` paging is key paging;
* reads show only events at or below the node's watermark for their sources
  (no late insert behind a reader: G3, G4); the node app makes home and
  account-timeline reads *fresh* first (:meth:`Node.fresh`), so a read also
  holds every publish acknowledged before it began, on any node;
* a delete is a tombstone link in the author's chain, so every copy learns it
  in chain order;
* streaming (``changes``/``wait``) delivers in merge order up to the horizon.

The node's state lives on its event loop thread (one SQLite connection, no
locks).  The server calls the store from worker threads too (publish, follow,
register): those calls are run on the loop and waited for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Container, Sequence
from typing import Any, TypeVar

from .._types import Deletion, Event
from ..errors import NotFoundError, StoreError
from ..server.sqlite_state import SQLiteState
from ..server.state import Account
from ..store import Change, Store
from .chain import HLC_SHIFT, NODE_SHIFT, home_index, split_status_id, status_id
from .core import Node

__all__ = ["NodeView", "NodeAccounts"]

T = TypeVar("T")

#: The source-space bounds that a status id bound stands for (a node's sources span [n << 40, (n+1) << 40)).
_NODES = 1 << 8


def _at_or_below(id: int) -> tuple[int, int]:
    """The exclusive ``(hlc, source)`` bound below which lie exactly the events with status id <= ``id``."""
    hlc, node = split_status_id(id)
    return hlc, (node + 1) << NODE_SHIFT


def _above(id: int) -> tuple[int, int]:
    """The exclusive ``(hlc, source)`` bound above which lie exactly the events with status id > ``id``."""
    hlc, node = split_status_id(id)
    return hlc, ((node + 1) << NODE_SHIFT) - 1


def _event(source: int, hlc: int, payload: bytes) -> Event:
    return Event(status_id(hlc, source), source, payload, (hlc >> HLC_SHIFT) / 1000)


class NodeView(Store):
    """The Store protocol over one node's local view (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._changed = threading.Condition()
        self._position = 0
        node.on_change = self._note_change

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the node's event loop (the app's lifespan calls this on it)."""
        self.loop, self._loop_thread = loop, threading.get_ident()
        self._note_change()

    def _run(self, work: Callable[..., T], *args: Any) -> T:
        if self._loop_thread is None or threading.get_ident() == self._loop_thread:
            return work(*args)
        assert self.loop is not None
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def step() -> None:
            try:
                done.set_result(work(*args))
            except BaseException as exc:
                done.set_exception(exc)

        try:
            self.loop.call_soon_threadsafe(step)
        except RuntimeError as exc:  # the loop closed under a straggling worker
            raise StoreError("node: the node is stopping") from exc
        return done.result(timeout=30)

    # -- positions: the hub's waiter thread reads these without touching the node

    def _note_change(self) -> None:
        # The watermark over every followed source: nothing at or below it can still arrive for any sink,
        # so it is a safe start for a new stream.  Kept monotone for wait().
        mark = status_id(self.node.watermark(), (_NODES - 1) << NODE_SHIFT)
        with self._changed:
            if mark > self._position:
                self._position = mark
                self._changed.notify_all()

    def _last_seq(self) -> int:
        with self._changed:
            return self._position

    def _wait(self, after: int, timeout: float | None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._position > after or self._closed, timeout)

    def _close(self) -> None:
        with self._changed:
            self._changed.notify_all()  # the node owns its store; only the waiters need to hear

    def _check(self) -> None:
        pass

    # -- graph

    def _follow_many(self, pairs: list[tuple[int, int]]) -> int:
        return self._run(self._follow_on_loop, pairs, True)

    def _unfollow_many(self, pairs: list[tuple[int, int]]) -> int:
        return self._run(self._follow_on_loop, pairs, False)

    def _follow_on_loop(self, pairs: list[tuple[int, int]], on: bool) -> int:
        node, changed = self.node, 0
        for sink, source in pairs:
            if on and sink == source and home_index(sink) == node.index:
                # The server's registration makes the self-edge first: that is when the node learns the user.
                node.store.ensure_user(sink, f"acct:{sink}")
            changed += node.follow(sink, source) if on else node.unfollow(sink, source)
        return changed

    def _is_following(self, sink: int, source: int) -> bool:
        return self._run(self.node.store.is_following, sink, source)

    def _sources(self, sink: int, limit: int | None, after: int | None) -> list[int]:
        out = [s for s in self._run(self.node.store.sources_of, sink) if after is None or s > after]
        return out if limit is None else out[:limit]

    def _sinks(self, source: int, limit: int | None, after: int | None) -> list[int]:
        return self._run(self.node.store.sinks_of, source, limit, after)

    def _source_count(self, sink: int) -> int:
        return len(self._run(self.node.store.sources_of, sink))

    def _sink_count(self, source: int) -> int:
        return self._run(self.node.store.sink_count, source)

    # -- events

    def _publish_many(self, items: list[tuple[int, bytes]], keys: list[bytes | None] | None) -> Sequence[Event]:
        def work() -> list[Event]:
            out = []
            for n, (source, payload) in enumerate(items):
                link = self.node.publish(source, payload, None if keys is None else keys[n])
                out.append(_event(source, link.hlc, link.payload))
            return out

        return self._run(work)

    def _find(self, id: int) -> tuple[int, int, int, bytes] | None:
        hlc, node = split_status_id(id)
        return self.node.store.event_at(hlc, node)

    def _event(self, id: int) -> Event | None:
        found = self._run(self._find, id)
        return None if found is None else _event(found[0], found[2], found[3])

    def _delete(self, id: int) -> Event | None:
        def work() -> Event | None:
            found = self._find(id)
            if found is None:
                return None
            source, seq, hlc, payload = found
            if home_index(source) != self.node.index:
                # Only the home node writes a chain; the server checks authorship before it gets here.
                raise NotFoundError(f"node: event {id} belongs to node {home_index(source)}")
            self.node.delete(source, seq)
            return _event(source, hlc, payload)

        return self._run(work)

    def _timeline_count(self, source: int) -> int:
        return self._run(self.node.store.live_count, source)

    # -- reads

    def _view_page(self, sources: list[int], limit: int, lo: int, hi: int, oldest: bool) -> list[Event]:
        rows = self.node.view_page(sources, _at_or_below(hi), _above(lo) if lo else None, limit, oldest)
        return [_event(source, hlc, payload) for source, _seq, hlc, payload, _late in rows]

    def _timeline(self, source: int, limit: int, lo: int, hi: int, oldest: bool) -> list[Event]:
        return self._run(self._view_page, [source], limit, lo, hi, oldest)

    def _home(self, sink: int, limit: int, lo: int, hi: int, oldest: bool) -> list[Event]:
        return self._run(lambda: self._view_page(self._synced_sources(sink), limit, lo, hi, oldest))

    def _synced_sources(self, sink: int) -> list[int]:
        """The sink's sources, less remote ones this node has no promise for yet.

        The read's fresh wait (app.py) covered every source followed when the read arrived, so a source
        with no promise is one a follow added while the read was under way: the read is ordered before
        that follow, instead of its horizon dropping to 0 and the page coming back empty (the lab's
        partition run caught that: one page of a user's home without the user's own posts).
        """
        node = self.node
        return [s for s in node.store.sources_of(sink) if home_index(s) == node.index or node.src_clock.get(s, 0) > 0]

    def _changes(self, sink: int, after: int, limit: int) -> tuple[list[Change], int]:
        return self._run(self._changes_on_loop, sink, after, limit)

    def _changes_on_loop(self, sink: int, after: int, limit: int) -> tuple[list[Change], int]:
        node = self.node
        sources = node.store.sources_of(sink)
        horizon = node.horizon(sources)
        rows = node.store.changes(sources, horizon, _above(after), limit)
        items: list[Change] = []
        for source, _seq, hlc, payload, tomb, deleted in rows:
            if tomb:
                target = node.store.link_at(source, tomb)
                if target is not None:
                    items.append(Deletion(status_id(hlc, source), status_id(target[0], source), source))
            elif not deleted:
                items.append(_event(source, hlc, payload))
        if len(rows) == limit:
            return items, status_id(rows[-1][2], rows[-1][0])
        # Nothing at or below the horizon can still arrive for these sources.
        return items, max(after, status_id(horizon, (_NODES - 1) << NODE_SHIFT))


class NodeAccounts(SQLiteState):
    """The server's account state on a node: ids carry the node index; other nodes' accounts are known by id."""

    def __init__(self, path: str, index: int, peers: Container[int], floor: int = 0) -> None:
        super().__init__(path)
        self.index, self.peers = index, peers
        base = (index << NODE_SHIFT) + floor

        def seed(db: Any) -> None:
            # AUTOINCREMENT continues from max(sqlite_sequence, max rowid): start this node's ids at its base.
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'accounts'").fetchone()
            if row is None:
                db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('accounts', ?)", (base,))
            elif row[0] < base:
                db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'accounts'", (base,))

        self._tx(seed)

    def account(self, id: int) -> Account | None:
        home = home_index(id)
        if home != self.index:
            if home not in self.peers or id & ((1 << NODE_SHIFT) - 1) == 0:
                return None
            # A remote account: its home node knows its name; ids are all a follower here needs.
            return Account(id, f"user{id & ((1 << NODE_SHIFT) - 1)}_node{home}", 0.0)
        return super().account(id)
