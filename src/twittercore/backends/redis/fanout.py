"""Fan-out on write for the Redis store: materialised windows, the workers that fill them, the reads.

With ``fanout="write"`` (or ``"hybrid"``) every publish also enters its
bucket's *feed*.  A worker thread in every store process opened that way
takes each bucket's feed in order and adds every new id to the window of
each follower of its source (a sorted set in the sink's bucket, the newest
``window`` ids); then it raises the bucket's *frontier*: every event of the
bucket at or below the frontier is in every window it belongs in.

A home read closes the buckets of the sink's sources (as a read fan-out read
does) and reads their frontiers in the same call.  The window is trusted
only for buckets whose frontier is at or past the read's cut; the sources of
a bucket that is behind (a slow or dead worker, or none running) are read
from their logs, as are hybrid mode's *celebrities* (sources over the
threshold, which the workers stop fanning out to).  So a lagging worker
changes a read's cost, never its answer.  Windows are completed on follow
(the source's newest ``window`` ids are copied in, and the window's floor
raised past what was not copied), cut on unfollow, and cleaned lazily of ids
that were deleted or belong to a source no longer followed (a worker that
read the followers before an unfollow).  A page that reaches below a
window's floor is answered from the logs.

Workers of several processes split the buckets by lease (:mod:`.leases`);
where two still work on one bucket (a lease that lapsed while its holder was
paused) they duplicate work but never disagree: every step is idempotent
(the same id added twice is one member; frontiers only rise).  Runtime complexity of a read whose workers are
current: one call per master holding the sink's sources' buckets (close and
frontier), one window read, one ``tc_events`` per master of the page; against a
read fan-out read, no source log is touched.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

from ..._types import Event
from .leases import Leases

if TYPE_CHECKING:
    from .store import RedisStore

__all__ = ["Windows"]

#: Feed entries a worker takes per bucket per round.
FEED_BATCH = 256
#: A worker's wait when there was nothing to do (a publish wakes it sooner).
IDLE_S = 0.05
#: Every bucket's feed is looked at this often; in between only those the wake channel named.
FULL_SWEEP_S = 1.0
#: Workers repair the half-written edges of their buckets this often ...
REPAIR_S = 10.0
#: ... those written at least this long ago (a writer killed between an edge's two sides).
STALE_EDGE_S = 10.0
_MASK = (1 << 64) - 1


def _hex(id: int) -> bytes:
    return b"%016x" % id


class Windows:
    """The write-mode half of a :class:`RedisStore` (it calls the store's call helpers, nothing else)."""

    def __init__(self, store: RedisStore, size: int, threshold: int | None) -> None:
        self.s = store
        self.size = size
        self.threshold = threshold  # hybrid: sources with more followers are celebrities
        self._done: dict[int, int] = {}
        self._unrecorded: set[int] = set()  # buckets whose new frontier the next round must record
        self._swept = 0.0
        self._repaired = time.monotonic()  # open() has just repaired every bucket
        self.repaired = 0  # half-written edges this worker completed
        self._thread: threading.Thread | None = None
        self.leases: Leases | None = None  # a worker thread's share of the buckets
        # What reads did, for tests and benchmarks: pages from the window (with log reads of
        # lagging buckets or celebrities: "mixed"), pages the logs answered, cleaning rounds.
        self.counts = {"window": 0, "mixed": 0, "logs": 0, "cleaned": 0}
        self.rounds = 0
        self.polled = 0  # bucket feeds looked at, over all rounds
        self.fanned: Counter[int] = Counter()  # events this worker fanned out, by bucket
        self.errors = 0

    # ----------------------------------------------------------- workers

    def start(self) -> None:
        self.leases = Leases(self.s)
        self._thread = threading.Thread(target=self._run, name="twittercore-redis-fanout", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """After the store is marked closed: wait for the worker, then hand its leases back."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.leases is not None and not (self._thread is not None and self._thread.is_alive()):
            try:
                self.leases.release()
            except Exception:  # the cluster is away: the leases lapse by themselves
                pass

    def _run(self) -> None:
        s = self.s
        while not s._closed:
            heard = s._heard  # before the round: a wake during it means go again at once
            try:
                assert self.leases is not None
                if self.leases.due():
                    self.leases.renew()
                if time.monotonic() - self._repaired >= REPAIR_S:
                    self._repaired = time.monotonic()
                    self.repaired += s._repair(self.leases.buckets(), STALE_EDGE_S)
                busy = self.round()
            except Exception:  # the cluster is away (failover, restart): reads fall back to the logs meanwhile
                self.errors += 1
                busy = False
            if not busy:
                self._idle(heard)

    def _idle(self, heard: int) -> None:
        s = self.s
        with s._woken:
            s._woken.wait_for(lambda: s._heard != heard or s._closed, IDLE_S)

    def round(self, everything: bool = False) -> bool:
        """One pass over the feeds of the buckets that changed (every bucket once a second), of
        the leased buckets only in a worker thread, of every bucket when ``everything``; True if
        anything was fanned out (tests call it directly)."""
        s = self.s
        s._listen()  # publishes wake the worker through the store's wake channel
        now = time.monotonic()
        with s._woken:
            dirty, s._dirty = s._dirty, set()
        leases = None if everything else self.leases
        if everything or s._pubsub is None or now - self._swept >= FULL_SWEEP_S:
            # The backstop: a lost notification (a reconnect, none at all) delays a window by this much.
            buckets = list(range(s._nb)) if leases is None else leases.buckets()
            self._swept = now
        else:
            buckets = sorted(b for b in dirty | self._unrecorded if leases is None or leases.owns(b))
        if not buckets:
            return False
        self._unrecorded = set()
        self.polled += len(buckets)
        answered, _ = s._per_master(
            "tc_feeds", buckets, (FEED_BATCH,), lambda b: (s._prefixes[b], self._done.get(b, 0))
        )
        self.rounds += 1
        todo: list[tuple[int, int, int]] = []  # (id, source, bucket)
        marks: dict[int, int] = {}
        for group, answer in answered:
            for b, (clock, frontier, entries) in zip(group, answer):
                self._done[b] = max(self._done.get(b, 0), int(frontier))
                for entry in entries:
                    c, source = entry.split(b":")
                    todo.append((int(c) << 10 | b, int(source), b))
                # Everything up to the clock came back, or the oldest FEED_BATCH of it.
                marks[b] = int(entries[-1].split(b":")[0]) if len(entries) == FEED_BATCH else int(clock)
        if todo:
            self._fan_out(todo)
            self.fanned.update(b for _, _, b in todo)
        with_entries = {b for _, _, b in todo}
        for b, mark in marks.items():
            if mark > self._done.get(b, 0):
                self._done[b] = mark
                if b in with_entries:
                    self._unrecorded.add(b)  # the next round records it (readers wait for it)
        # A mark that moved only because readers closed the bucket waits for the next sweep: the
        # bucket changed nothing, so no reader finds it lagging.
        return bool(todo)

    def settle(self, rounds: int = 1_000_000) -> bool:
        """Run rounds over every bucket until one finds nothing to do (at most ``rounds``); True if
        the windows are then current.  For tests, benchmarks and a process with ``fanout_worker=False``."""
        return any(not self.round(everything=True) for _ in range(rounds))

    def _fan_out(self, todo: list[tuple[int, int, int]]) -> None:
        s = self.s
        sources = sorted({source for _, source, _ in todo})
        followers = s._call(
            [(s._tags[s._bucket(src)], ("ZRANGE", s._key(s._bucket(src), f"i:{src}"), 0, -1)) for src in sources],
            safe=True,
        )
        celebs = []
        sinks_of: dict[int, list[int]] = {}
        for source, members in zip(sources, followers):
            if self.threshold is not None and len(members) > self.threshold:
                celebs.append(source)  # recorded before its ids are skipped: readers take its log from now on
                continue
            sinks_of[source] = [int(m) for m in members]
        if celebs:
            s._call([(s._tags[s._bucket(c)], ("SADD", s._key(s._bucket(c), "cb"), c)) for c in celebs], safe=True)
        per_sink: dict[int, list[bytes]] = {}
        for id, source, _ in todo:
            for sink in sinks_of.get(source, ()):
                per_sink.setdefault(sink, []).append(_hex(id))
        self.add(per_sink)

    # ------------------------------------------------------------ windows

    def add(self, per_sink: dict[int, list[bytes]], floors: dict[int, bytes] | None = None) -> None:
        """Add ids to windows: one ``tc_windows_add`` per master (a master that refuses it, slots
        moving, gets one ``tc_window_add`` per sink with its keys declared)."""
        s = self.s
        floors = floors or {}
        sinks = list(per_sink)
        if not sinks:
            return
        groups = [[sinks[i] for i in g] for g in s._r.groups([s._tags[s._bucket(k)] for k in sinks])]
        calls = []
        for group in groups:
            args: list[Any] = [self.size]
            for sink in group:
                ids = per_sink[sink]
                args += [s._prefixes[s._bucket(sink)], sink, floors.get(sink, b""), len(ids), *ids]
            calls.append(s._fcall("tc_windows_add", s._bucket(group[0]), *args))
        refused = []
        for group, answer in zip(groups, s._r.run(calls, safe=True)):
            if isinstance(answer, Exception):
                refused += group
        if refused:
            s._r.forget()
            singles = [
                s._fcall(
                    "tc_window_add",
                    s._bucket(sink),
                    sink,
                    self.size,
                    floors.get(sink, b""),
                    *per_sink[sink],
                    keys=(f"w:{sink}", "wt"),
                )
                for sink in refused
            ]
            s._call(singles, safe=True)  # idempotent: a retry adds the same members

    def remove(self, per_sink: dict[int, list[bytes]]) -> None:
        s = self.s
        calls = [
            (s._tags[s._bucket(sink)], ("ZREM", s._key(s._bucket(sink), f"w:{sink}"), *ids))
            for sink, ids in per_sink.items()
            if ids
        ]
        if calls:
            s._call(calls, safe=True)

    def _newest_of(self, sources: list[int]) -> list[list[int]]:
        """Each source's newest ``size`` ids, newest first."""
        s = self.s
        answers = s._call(
            [
                (s._tags[s._bucket(src)], ("ZREVRANGE", s._key(s._bucket(src), f"g:{src}"), 0, self.size - 1))
                for src in sources
            ],
            safe=True,
        )
        return [[int(c) << 10 | s._bucket(src) for c in clocks] for src, clocks in zip(sources, answers)]

    def followed(self, pairs: list[tuple[int, int]]) -> None:
        """New edges: copy each source's newest ids into the sink's window; a source with more than the
        window holds raises the window's floor past its oldest copied id (older ones are not in it)."""
        newest = self._newest_of([source for _, source in pairs])
        per_sink: dict[int, list[bytes]] = {}
        floors: dict[int, bytes] = {}
        for (sink, _), ids in zip(pairs, newest):
            per_sink.setdefault(sink, []).extend(_hex(i) for i in ids)
            if len(ids) == self.size:
                floor = _hex(ids[-1] - 1)
                floors[sink] = max(floors.get(sink, floor), floor)
        self.add(per_sink, floors)

    def unfollowed(self, pairs: list[tuple[int, int]]) -> None:
        newest = self._newest_of([source for _, source in pairs])
        per_sink: dict[int, list[bytes]] = {}
        for (sink, _), ids in zip(pairs, newest):
            per_sink.setdefault(sink, []).extend(_hex(i) for i in ids)
        self.remove(per_sink)

    # --------------------------------------------------------------- reads

    def home_once(
        self,
        sink: int,
        sources: list[int],
        limit: int,
        lo: int,
        hi: int,
        oldest: bool,
        from_logs: Callable[[], tuple[list[Event], bool]],
        unsure: AbstractSet[int] = frozenset(),
    ) -> tuple[list[Event], bool]:
        """One attempt at a page (see ``RedisStore._home``); ``from_logs`` is the read fan-out read;
        ``unsure`` sources (an edge not yet fully written) are read from their logs."""
        s = self.s
        by_bucket: dict[int, list[int]] = {}
        for source in sources:
            by_bucket.setdefault(s._bucket(source), []).append(source)
        fronts = self._fronts(list(by_bucket))
        cut = min(c << 10 | b for b, (c, _, _, _) in fronts.items())
        upper = min(hi, cut)
        if lo >= upper:
            return [], True
        logs: dict[int, list[int]] = {}  # sources read from their logs, by bucket
        lagging = set()
        for b, (_, frontier, last, celebs) in fronts.items():
            if min(last, (upper - b) // 1024) > frontier:
                lagging.add(b)  # the window may miss this bucket's ids at or below the cut
                logs[b] = by_bucket[b]
            else:
                stars = {int(c) for c in celebs} | unsure
                mine = [src for src in by_bucket[b] if src in stars]
                if mine:
                    logs[b] = mine
        # The window is read after the frontiers: they only rise, so it holds at least what they promise.
        # (Read before them, a worker could add an id and raise the frontier in between.)
        sb = s._bucket(sink)
        window_call = s._fcall(
            "tc_window_read", sb, sink, _hex(lo), _hex(upper), limit, int(oldest), keys=(f"w:{sink}", "wt")
        )
        (answer,) = s._call([window_call], safe=True)
        floor = int(answer[0], 16) if answer[0] else -1
        window = [int(x, 16) for x in answer[1]]
        full = len(window) == limit  # then the window answered only as far as its last id
        if oldest and lo < floor:
            self.counts["logs"] += 1
            return from_logs()  # the page starts below what the window holds
        ids = {i for i in window if i & 1023 not in lagging}
        if logs:
            _, runs = s._runs(logs, limit, lo, upper, oldest)
            for run, _ in runs:
                ids.update(i for i in memoryview(run).cast("Q") if lo < i <= upper)
        chosen = sorted(ids, reverse=not oldest)[:limit]
        if oldest:
            if full and chosen and chosen[-1] > window[-1]:
                self.counts["logs"] += 1
                return from_logs()  # past the window's page: ids of its sources may be missing there
        else:
            # The window holds every id above `known` (its floor, or its page's last id when full).
            known = max(floor, window[-1] - 1) if full else floor
            if known >= lo and (len(chosen) < limit or chosen[-1] <= known):
                self.counts["logs"] += 1
                return from_logs()  # the page reaches below what the window holds
        events = s._fetch(chosen)
        followed = set(sources)
        kept = [e for e in events if e.source in followed]
        if len(kept) == len(chosen):
            self.counts["mixed" if logs else "window"] += 1
            return (kept[::-1] if oldest else kept), True
        # Deleted events, or a source unfollowed after a worker read its followers: clean and read again.
        self.counts["cleaned"] += 1
        present = {e.id for e in kept}
        self.remove({sink: [_hex(i) for i in chosen if i not in present]})
        return [], False

    def _fronts(self, buckets: list[int]) -> dict[int, tuple[int, int, int, list[bytes]]]:
        """Close ``buckets``: per bucket ``(clock, frontier, last mutation clock, celebrities)``."""
        s = self.s
        out: dict[int, tuple[int, int, int, list[bytes]]] = {}
        stars = self.threshold is not None
        width = 4 if stars else 3
        answered, refused = s._per_master("tc_fronts", buckets, (int(stars),), lambda b: (s._prefixes[b],))
        for group, flat in answered:
            for n, b in enumerate(group):
                at = n * width
                out[b] = (int(flat[at]), int(flat[at + 1]), int(flat[at + 2]), flat[at + 3] if stars else [])
        if refused:
            singles = s._call([s._fcall("tc_front", b, int(stars), keys=("fr", "cb", "l")) for b in refused], safe=True)
            for b, (c, frontier, last, celebs) in zip(refused, singles):
                out[b] = (int(c), int(frontier), int(last), celebs)
        return out
