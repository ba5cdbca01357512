"""One node: publishing, receiving chains, the watermark, pushes, heartbeats and anti-entropy.

Everything here runs on the event loop thread and the store calls are
synchronous, so "take an hlc, commit the link" and "read the clock, read the
chain heads" can never interleave: a promise a node sends (its clock plus the
heads of the chains it pushes to that peer) always covers every link it has
committed with a smaller hlc.  See docs/nodes.md for the argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import httpx
import orjson

from ..errors import InvalidArgumentError, NotFoundError, StoreError
from .chain import HLC_SHIFT, MAX_NODES, Clock, Link, home_index, tombstone
from .membership import Member, Membership
from .store import CEILING_MS, NodeStore

__all__ = ["Node"]

HEARTBEAT_S = 0.1
REPAIR_S = 0.5
#: Push-pull membership gossip with one random peer this often (joins announce themselves at once).
GOSSIP_S = 2.0
#: How long a joining node keeps trying its seeds before it gives up starting.
JOIN_TIMEOUT_S = 20.0
PUSH_BATCH = 500
PULL_BATCH = 1000
#: A peer that does not take our pushes loses its queue past this; anti-entropy re-sends it.
QUEUE_CAP = 20_000
#: How long a fresh read waits for the promises of the origins it covers before it fails (strict mode).
FRESH_TIMEOUT_S = 2.0


class Node:
    def __init__(
        self,
        data: str,
        name: str,
        index: int,
        peers: list[str],
        token: str | None,
        consistency: str = "strict",
        staleness_ms: int = 1000,
        durable: bool = True,
        seeds: list[str] | None = None,
        advertise: str | None = None,
    ) -> None:
        if consistency not in ("strict", "bounded"):
            raise InvalidArgumentError(f"node: --consistency {consistency!r}: expected strict or bounded")
        self.seeds = [u.rstrip("/") for u in seeds or []]
        if peers and not 1 <= index <= len(peers):
            raise InvalidArgumentError(f"node: index {index} is not a position in --peers ({len(peers)} peers)")
        if not 1 <= index <= MAX_NODES:
            raise InvalidArgumentError(f"node: index {index}: expected 1..{MAX_NODES}")
        if not peers and not self.seeds:
            raise InvalidArgumentError("node: give --peers (the whole membership) or --join (any member's URL)")
        own_url = advertise.rstrip("/") if advertise else (peers[index - 1].rstrip("/") if peers else None)
        if self.seeds and own_url is None:
            raise InvalidArgumentError("node: --join needs --advertise (the URL the other nodes reach this one at)")
        self.data, self.name, self.index, self.token = data, name, index, token
        self.consistency, self.staleness_s = consistency, staleness_ms / 1000
        self.store = NodeStore(data, index, durable=durable)
        # Static entries at incarnation 0, then whatever gossip taught us before a restart (higher wins).
        self.membership = Membership(
            index,
            own_url,
            self.store.next_incarnation(),
            {i + 1: Member(u.rstrip("/"), 0) for i, u in enumerate(peers)},
        )
        self.membership.merge({i: Member(u, n) for i, (u, n) in self.store.members().items()})
        self.peers = self.membership.peers()
        self.clock = Clock(self.store.clock_floor())
        self.ceiling = self.store.raise_ceiling(self.clock.tick())
        self.subs = self.store.subscribers()
        self.queues: dict[int, list[Link]] = {n: [] for n in self.peers}
        self.wake: dict[int, asyncio.Event] = {}
        self.repair_now: asyncio.Event | None = None
        # remote source -> c: every link of it with hlc <= c is applied here (from its home's promises)
        self.src_clock: dict[int, int] = {}
        self.pending: dict[int, tuple[int, int]] = {}  # source -> (seq still missing, clock it unlocks)
        self.confirmed: dict[int, set[int]] = {}  # origin -> our subscriptions it listed last
        started = time.monotonic()
        self.heard: dict[int, float] = {n: started for n in self.peers}
        self.buffer: dict[int, dict[int, Link]] = {}
        self.shown: dict[int, int] = {}  # source -> highest horizon a view holding it was served with
        self.isolated = False
        self.counters = {
            "late": 0,
            "bytes_sent": 0,
            "pushes": 0,
            "pulls": 0,
            "applied": 0,
            "rejected": 0,
            "forks": 0,
            "send_errors": 0,
            "recovered": 0,  # links of our own chains taken back from peers at start (a stale store)
            "recovery_skipped": 0,  # peers that did not answer that start-up check
        }
        self.tasks: list[asyncio.Task[Any]] = []
        self.client: httpx.AsyncClient | None = None
        # Fresh reads: per origin, the readers waiting for a promise asked after they arrived (see fresh()).
        self.sync_waiters: dict[int, list[asyncio.Future[Any]]] = {n: [] for n in self.peers}
        self.sync_wake: dict[int, asyncio.Event] = {}
        #: Called (on the loop) after anything a view could show changed: a publish, applied links, a promise.
        self.on_change: Any = None

    # -- lifecycle

    async def start(self) -> None:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(2.0, connect=0.5), headers=headers)
        self.repair_now = asyncio.Event()
        await self._recover()
        for n in self.peers:
            self._start_peer(n)
        self.tasks.append(asyncio.create_task(self._repairer()))
        self.tasks.append(asyncio.create_task(self._gossiper()))
        if self.seeds:
            await self._join()

    async def _recover(self) -> None:
        """Take back links of our own chains that peers hold and we do not: a store restored from an older
        copy (a backup, a disk snapshot) would otherwise hand out sequence numbers its chains already used,
        and every peer would refuse the new links as forks.  Relayed links are checked by hash against our
        own head, like any other.  Best effort: peers that do not answer are skipped (docs/nodes.md)."""
        own = self.store.own_sources()
        for node in list(self.peers):
            try:
                reply = await self._post(node, "/node/v1/frontiers", {"sources": own, "origin": self.index})
            except (httpx.HTTPError, ValueError):
                self.counters["recovery_skipped"] += 1
                continue
            for key, seq in (reply.get("heads") or {}).items():
                source = int(key)
                if home_index(source) == self.index and int(seq) > self.store.heads.get(source, (0,))[0]:
                    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                        await self._pull_own(node, source)

    async def _pull_own(self, node: int, source: int) -> None:
        while True:
            reply = await self._chain_after_head(node, source)
            links = [Link.from_wire(obj) for obj in reply["links"]]
            with self.store.batch():
                if self.store.user(source) is None:
                    self.store.ensure_user(source, f"recovered-{source & ((1 << 40) - 1)}")
                for link in links:
                    if self.store.apply(link, False) != "applied":
                        return  # a gap or a link that does not hash onto ours: leave the rest to the peers
                    self.counters["recovered"] += 1
                    self.clock.observe(link.hlc)
            self.ceiling = self.store.raise_ceiling(self.clock.tick())
            if len(links) < PULL_BATCH:
                return

    def _start_peer(self, n: int) -> None:
        self.wake[n] = asyncio.Event()
        self.sync_wake[n] = asyncio.Event()
        self.tasks.append(asyncio.create_task(self._sender(n)))
        self.tasks.append(asyncio.create_task(self._syncer(n)))

    # -- membership (docs/nodes.md, "Identity and membership")

    def learn(self, members: dict[int, Member]) -> list[int]:
        """Merge a gossiped member list; new peers get their queues and tasks. Returns the refused indices."""
        changed, refused = self.membership.merge(members)
        for n in changed:
            member = self.membership.members[n]
            self.store.save_member(n, member.url, member.incarnation)
            new = n not in self.peers
            self.peers[n] = member.url
            if new:
                self.queues[n] = []
                self.heard[n] = time.monotonic()
                self.sync_waiters[n] = []
                if self.client is not None:
                    self._start_peer(n)
        return refused

    async def _exchange(self, url: str) -> list[int]:
        assert self.client is not None
        body = orjson.dumps({"from": self.index, "members": self.membership.to_wire()})
        self.counters["bytes_sent"] += len(body)
        response = await self.client.post(
            url + "/node/v1/members", content=body, headers={"content-type": "application/json"}
        )
        if response.status_code == 409:
            raise StoreError(f"node: {url} refused this node: {response.json().get('error', '')}")
        response.raise_for_status()
        return self.learn(Membership.from_wire(orjson.loads(response.content).get("members")))

    async def _join(self) -> None:
        """Ask the seeds for the membership (announcing ourselves), then announce to every member directly."""
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while True:
            for url in self.seeds:
                try:
                    await self._exchange(url)
                except (httpx.HTTPError, ValueError, InvalidArgumentError):
                    continue
                for n in list(self.peers):
                    with contextlib.suppress(httpx.HTTPError, ValueError, InvalidArgumentError, StoreError):
                        await self._exchange(self.peers[n])
                return
            if time.monotonic() > deadline:
                raise StoreError(f"node: no seed of --join answered within {JOIN_TIMEOUT_S:.0f} s: {self.seeds}")
            await asyncio.sleep(0.2)

    async def _gossiper(self) -> None:
        while True:
            await asyncio.sleep(GOSSIP_S)
            if self.isolated or not self.peers:
                continue
            with contextlib.suppress(httpx.HTTPError, ValueError, InvalidArgumentError, StoreError):
                await self._exchange(self.peers[random.choice(list(self.peers))])

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for waiters in self.sync_waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(StoreError(f"node: {self.name} is stopping"))
        if self.client is not None:
            await self.client.aclose()
        self.store.close()

    # -- the clock's promises

    def promise(self) -> int:
        """A clock value no later link of ours will reach, persisted first (the ceiling) so a restart keeps it."""
        value = self.clock.tick()
        if value > self.ceiling - ((CEILING_MS // 2) << HLC_SHIFT):
            self.ceiling = self.store.raise_ceiling(value)
        return value

    def promise_for(self, node: int) -> dict[str, Any]:
        heads = {str(s): self.store.heads.get(s, (0, 0, b""))[0] for s in self.subs.get(node, ())}
        return {"origin": self.index, "clock": self.promise(), "heads": heads}

    # -- client operations

    def _local_user(self, uid: int) -> None:
        if home_index(uid) != self.index or self.store.user(uid) is None:
            raise NotFoundError(f"node: user {uid} does not live on {self.name}")

    def _known_home(self, uid: int) -> None:
        if home_index(uid) != self.index and home_index(uid) not in self.peers:
            raise InvalidArgumentError(f"node: user {uid} belongs to no node of this membership")

    def publish(self, source: int, payload: bytes, key: bytes | None = None) -> Link:
        """Append to a local user's chain, committed before it returns.  With ``key``, a retry returns
        the first publish's link (NotFoundError if that was deleted since)."""
        self._local_user(source)
        if payload[:1] == b"\x00":
            raise InvalidArgumentError("node: a payload may not start with NUL (reserved for tombstones)")
        if key is not None:
            seq = self.store.keyed(source, key)
            if seq is not None:
                found = self.store.link_at(source, seq)
                assert found is not None, (source, seq)
                if found[3]:
                    raise NotFoundError(f"node: the event published with this key ({source}/{seq}) was deleted")
                return self.store.chain(source, seq - 1, 1)[0]
        with self.store.batch():
            link = self._append(source, payload)
            if key is not None:
                self.store.record_key(source, key, link.seq)
        self._changed()
        return link

    def delete(self, source: int, seq: int) -> Link:
        """Delete a local user's event: a tombstone link in its own chain, so every copy learns it in order."""
        self._local_user(source)
        found = self.store.link_at(source, seq)
        if found is None or found[3]:
            raise NotFoundError(f"node: no event {source}/{seq}")
        with self.store.batch():
            link = self._append(source, tombstone(seq))
        self._changed()
        return link

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _append(self, source: int, payload: bytes) -> Link:
        link = self.store.append_local(source, payload, self.clock.next())
        for node, sources in self.subs.items():
            if source in sources and node in self.queues:
                queue = self.queues[node]
                queue.append(link)
                if len(queue) > QUEUE_CAP:
                    del queue[: len(queue) - QUEUE_CAP]
                self.wake[node].set()
        return link

    def follow(self, sink: int, source: int) -> bool:
        self._local_user(sink)
        self._known_home(source)
        changed = self.store.follow(sink, source)
        if changed and home_index(source) != self.index and self.repair_now is not None:
            self.repair_now.set()  # subscribe at the source's node and backfill soon, not in 500 ms
        return changed

    def unfollow(self, sink: int, source: int) -> bool:
        self._local_user(sink)
        return self.store.unfollow(sink, source)

    def horizon(self, sources: list[int]) -> int:
        """The newest hlc a view over these sources may show: below it nothing can still arrive (strict),
        or nothing from origins heard within the staleness bound (bounded)."""
        bound = self.promise()
        now = time.monotonic()
        for s in sources:
            origin = home_index(s)
            if origin == self.index:
                continue
            if self.consistency == "bounded" and now - self.heard.get(origin, 0) > self.staleness_s:
                continue
            bound = min(bound, self.src_clock.get(s, 0))
        for s in sources:
            if self.shown.get(s, -1) < bound:
                self.shown[s] = bound
        return bound

    def view(
        self, sources: list[int], below: tuple[int, int] | None, above: tuple[int, int] | None, limit: int
    ) -> list[tuple[int, int, int, bytes, int]]:
        return self.store.view(sources, self.horizon(sources), below, above, limit)

    def view_page(
        self, sources: list[int], below: tuple[int, int] | None, above: tuple[int, int] | None, limit: int, oldest: bool
    ) -> list[tuple[int, int, int, bytes, int]]:
        return self.store.view(sources, self.horizon(sources), below, above, limit, oldest)

    def watermark(self) -> int:
        return self.horizon(sorted(self.store.followed_sources()))

    # -- receiving

    def receive(self, links: list[Link]) -> None:
        """Apply what can be applied in sequence; buffer the rest and ask for the gap."""
        by_source: dict[int, list[Link]] = {}
        for link in links:
            self._known_home(link.source)
            if home_index(link.source) == self.index:
                continue  # our own chains are written only here
            by_source.setdefault(link.source, []).append(link)
        if not by_source:
            return
        gap = False
        with self.store.batch():
            for source, items in by_source.items():
                waiting = self.buffer.setdefault(source, {})
                for link in items:
                    waiting.setdefault(link.seq, link)
                gap |= self._drain(source, waiting)
        if gap and self.repair_now is not None:
            self.repair_now.set()
        for source in by_source:
            self._check_pending(source)
        self._changed()

    def _drain(self, source: int, waiting: dict[int, Link]) -> bool:
        for seq in sorted(waiting):
            link = waiting[seq]
            late = link.hlc <= self.shown.get(source, -1)
            outcome = self.store.apply(link, late)
            if outcome == "gap":
                return True
            del waiting[seq]
            if outcome == "applied":
                self.counters["applied"] += 1
                self.counters["late"] += late
            elif outcome == "fork":
                self.counters["forks"] += 1
            elif outcome == "bad":
                self.counters["rejected"] += 1
        return False

    def note_promise(self, origin: int, clock: int, heads: dict[int, int], full: bool = True) -> None:
        """The origin says: every link of these chains with hlc <= clock is among their first heads[s] links.

        ``full``: a push or heartbeat, which lists every subscription of ours the origin knows."""
        self.heard[origin] = time.monotonic()
        self.clock.observe(clock)
        if full:
            self.confirmed[origin] = set(heads)
        for source, seq in heads.items():
            if home_index(source) != origin:
                continue
            if self.store.heads.get(source, (0,))[0] >= seq:
                self.src_clock[source] = max(self.src_clock.get(source, 0), clock)
                self.pending.pop(source, None)
            else:
                self.pending[source] = (seq, clock)
                if self.repair_now is not None:
                    self.repair_now.set()
        self._changed()

    # -- fresh reads (strict): a view that holds everything acknowledged before the read began

    async def fresh(self, sources: list[int], timeout: float = FRESH_TIMEOUT_S) -> None:
        """Return once every link of these sources acknowledged (anywhere) before this call is applied here
        and below their horizon.

        The watermark alone makes views prefixes of one order (G3's "no late insert") but lags a publish on
        another node by up to a heartbeat, so a read right after that publish was acknowledged would miss it.
        A fresh read asks each origin involved for a promise taken *after* the read arrived (its clock and
        the heads of the chains we need, read in one step there), pulls what it lacks, and raises
        ``src_clock`` to that promise: the view's horizon is then past every link the origin had committed.
        Concurrent readers share one round per origin.  Fails (StoreError) when an origin does not answer
        within ``timeout``: strict mode is unavailable rather than stale.
        """
        origins = sorted({home_index(s) for s in sources} - {self.index})
        if not origins or self.consistency != "strict":
            return
        if self.isolated:
            raise StoreError(f"node: {self.name} is isolated")
        loop = asyncio.get_running_loop()
        futures = []
        for origin in origins:
            fut = loop.create_future()
            self.sync_waiters[origin].append(fut)
            self.sync_wake[origin].set()
            futures.append(fut)
        try:
            await asyncio.wait_for(asyncio.gather(*futures), timeout)
        except TimeoutError:
            raise StoreError(f"node: origins {origins} did not answer a fresh read within {timeout} s") from None

    async def _syncer(self, origin: int) -> None:
        wake = self.sync_wake[origin]
        while True:
            await wake.wait()
            wake.clear()
            # Only the readers already waiting: the round's request goes out after each of them arrived.
            waiters, self.sync_waiters[origin] = self.sync_waiters[origin], []
            waiters = [f for f in waiters if not f.done()]
            if not waiters:
                continue
            try:
                await self._sync_round(origin)
            except Exception as exc:  # every waiter learns, and the next round tries again
                for fut in waiters:
                    if not fut.done():
                        fut.set_exception(StoreError(f"node: a fresh read of node {origin} failed: {exc!r:.200}"))
                continue
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def _sync_round(self, origin: int) -> None:
        needed = sorted(s for s in self.store.followed_sources() if home_index(s) == origin)
        if not needed:
            return
        reply = await self._post(origin, "/node/v1/promise", {"sources": needed})
        clock = int(reply["clock"])
        heads = {int(k): int(v) for k, v in reply["heads"].items()}
        self.heard[origin] = time.monotonic()
        self.clock.observe(clock)
        for source in needed:
            if self.store.heads.get(source, (0,))[0] < heads.get(source, 0):
                await self._pull(origin, source)
            if self.store.heads.get(source, (0,))[0] >= heads.get(source, 0):
                self.src_clock[source] = max(self.src_clock.get(source, 0), clock)
            else:
                raise StoreError(f"node: source {source} still behind its home's head after a pull")
        self._changed()

    def promise_of(self, sources: list[int]) -> dict[str, Any]:
        """A promise over our own chains ``sources``: clock and heads read in one step (see fresh())."""
        heads = {str(s): self.store.heads.get(s, (0,))[0] for s in sources if home_index(s) == self.index}
        return {"origin": self.index, "clock": self.promise(), "heads": heads}

    def ask_promises(self, besides: int) -> None:
        """New links arrived: the views showing them wait for every other origin's next promise, so ask for it
        now (an empty push; the reply carries the peer's promise) rather than wait for its heartbeat."""
        for node, wake in self.wake.items():
            if node != besides:
                wake.set()

    def _check_pending(self, source: int) -> None:
        need = self.pending.get(source)
        if need and self.store.heads.get(source, (0,))[0] >= need[0]:
            self.src_clock[source] = max(self.src_clock.get(source, 0), need[1])
            del self.pending[source]

    # -- serving peers

    def chain_reply(self, source: int, after: int, limit: int) -> dict[str, Any]:
        links = self.store.chain(source, after, limit)
        reply: dict[str, Any] = {"links": [link.to_wire() for link in links]}
        if home_index(source) == self.index:
            reply["clock"] = self.promise()
            reply["head"] = self.store.heads.get(source, (0,))[0]
        return reply

    def subscribe(self, node: int, source: int, on: bool) -> None:
        if node not in self.peers or home_index(source) != self.index:
            raise InvalidArgumentError(f"node: node {node} cannot subscribe to {source} here")
        if on:
            self.store.subscribe(source, node)
            self.subs.setdefault(node, set()).add(source)
        else:
            self.store.unsubscribe(source, node)
            self.subs.get(node, set()).discard(source)
        self.wake[node].set()

    # -- background: pushes + heartbeats, anti-entropy

    async def _post(self, node: int, path: str, body: dict[str, Any]) -> Any:
        assert self.client is not None
        data = orjson.dumps(body)
        self.counters["bytes_sent"] += len(data)
        response = await self.client.post(
            self.peers[node] + path, content=data, headers={"content-type": "application/json"}
        )
        response.raise_for_status()
        return orjson.loads(response.content)

    async def _sender(self, node: int) -> None:
        wake = self.wake[node]
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), HEARTBEAT_S)
            wake.clear()
            if self.isolated:
                continue
            queue = self.queues[node]
            batch = queue[:PUSH_BATCH]
            del queue[:PUSH_BATCH]
            if len(queue):
                wake.set()
            body = self.promise_for(node)
            body["links"] = [link.to_wire() for link in batch]
            try:
                reply = await self._post(node, "/node/v1/push", body)
                self.counters["pushes"] += 1
                if isinstance(reply, dict) and "clock" in reply:
                    heads = {int(k): int(v) for k, v in reply.get("heads", {}).items()}
                    self.note_promise(node, int(reply["clock"]), heads)
            except (httpx.HTTPError, ValueError):
                self.counters["send_errors"] += 1  # lost links come back by anti-entropy
                await asyncio.sleep(HEARTBEAT_S)

    async def _repairer(self) -> None:
        assert self.repair_now is not None
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.repair_now.wait(), REPAIR_S)
            self.repair_now.clear()
            if self.isolated:
                continue
            try:
                await self.repair_once()
            except Exception:  # one failed round must not end repair for good
                self.counters["send_errors"] += 1
                await asyncio.sleep(REPAIR_S)

    async def repair_once(self) -> None:
        needed = sorted(s for s in self.store.followed_sources() if home_index(s) != self.index)
        for source in needed:
            origin = home_index(source)
            if source not in self.confirmed.get(origin, ()):
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    await self._post(origin, "/node/v1/subscribe", {"node": self.index, "source": source, "on": True})
        for origin, sources in list(self.confirmed.items()):
            for source in sorted(sources.difference(needed)):
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    await self._post(origin, "/node/v1/subscribe", {"node": self.index, "source": source, "on": False})
        if not needed:
            return
        peers = list(self.peers)
        random.shuffle(peers)
        # The home node first: only its replies advance the watermark.
        for node in peers:
            try:
                frontiers = await self._post(node, "/node/v1/frontiers", {"sources": needed})
            except (httpx.HTTPError, ValueError):
                continue
            for key, seq in frontiers.get("heads", {}).items():
                source = int(key)
                if source not in needed:
                    continue
                behind = seq > self.store.heads.get(source, (0,))[0]
                # Until the home node lists our subscription, its pull replies are what advance the watermark.
                unconfirmed = home_index(source) == node and (
                    source in self.pending or source not in self.confirmed.get(node, ())
                )
                if behind or unconfirmed:
                    await self._pull(node, source)

    async def _chain_after_head(self, node: int, source: int) -> Any:
        """The next PULL_BATCH links of ``source`` after the head we hold, from ``node``."""
        assert self.client is not None
        after = self.store.heads.get(source, (0,))[0]
        response = await self.client.get(
            self.peers[node] + "/node/v1/chain", params={"source": source, "after": after, "limit": PULL_BATCH}
        )
        response.raise_for_status()
        return orjson.loads(response.content)

    async def _pull(self, node: int, source: int) -> None:
        while True:
            after = self.store.heads.get(source, (0,))[0]
            reply = await self._chain_after_head(node, source)
            self.counters["pulls"] += 1
            self.receive([Link.from_wire(obj) for obj in reply["links"]])
            if "clock" in reply and home_index(source) == node:
                self.note_promise(node, reply["clock"], {source: reply["head"]}, full=False)
            if len(reply["links"]) < PULL_BATCH or self.store.heads.get(source, (0,))[0] == after:
                return

    def frontiers(self, sources: list[int], origin: int | None = None) -> dict[str, Any]:
        """Our heads of ``sources`` (and, with ``origin``, of every chain we hold that lives there)."""
        held = self.store.heads
        heads = {str(s): held.get(s, (0,))[0] for s in sources if s in held or home_index(s) == self.index}
        if origin is not None:
            heads.update({str(s): h[0] for s, h in held.items() if home_index(s) == origin})
        return {"heads": heads}

    def stats(self) -> dict[str, Any]:
        mark = self.watermark()
        # "now" is this node's own clock, not the wall: after a restart (the ceiling) or a skewed peer the
        # clocks of all nodes run ahead of the wall together, and the lag behind them is what a reader sees.
        now = self.promise()
        return {
            "name": self.name,
            "index": self.index,
            "consistency": self.consistency,
            "watermark": mark,
            "staleness_ms": (now - mark) >> HLC_SHIFT,
            "clock_ahead_ms": (now >> HLC_SHIFT) - self.clock.now_ms(),
            "events": self.store.count(),
            "buffered": sum(len(b) for b in self.buffer.values()),
            "pending": len(self.pending),
            "isolated": self.isolated,
            "members": {str(n): url for n, url in self.peers.items()},
            "incarnation": self.membership.own_incarnation,
            "member_conflicts": self.membership.conflicts,
            "queued": {str(n): len(q) for n, q in self.queues.items()},
            "heard_ms_ago": {str(n): round((time.monotonic() - t) * 1000) for n, t in self.heard.items()},
            **self.counters,
        }
