"""The scale-out store on Redis (one server or a Redis Cluster).

Nodes hash to a fixed number of *buckets* (default 1,024), each pinned to one
cluster slot by a hash tag; everything of a source (its log, its events, its
idempotency keys, its followers) lives in its bucket, and everything of a sink
(its followed sources, its edge history) in the sink's.  Each bucket keeps a
hybrid logical clock in microseconds; a mutation is one server-side function
call that advances the clock and writes, so an id is ``clock << 10 | bucket``:
unique, strictly increasing per source, and taken in the same atomic step
that stores the event (no holes when a client dies).

A read that spans buckets first *closes* them (raises each clock to at least
now; see ``functions.lua``) in the same pipeline as the read, and keeps only
ids up to the smallest closed position: no bucket can later assign an id
below what a reader saw (G3).  See ``docs/redis.md`` for the design, its
costs, and what a failover can lose.
"""

from __future__ import annotations

import re
import sys
import threading
import time as _time
from array import array
from bisect import bisect_right
from collections.abc import Callable
from importlib import resources
from typing import Any

from ... import _idempotency, _kernel, _options
from ..._types import Deletion, Event
from ...errors import ConfigurationError, StoreError
from ...store import Change, Store
from .fanout import Windows
from .router import Router

__all__ = ["RedisStore"]

_MASK = (1 << 64) - 1
_LIBRARY = "twittercore1"
_NAMESPACE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
#: A 20-digit zero-padded node id sorts like the number (lexicographic ZSETs
#: page ascending over the whole uint64 range, which float scores cannot).
_PAD = "%020d"
_OPTIONS = _options.COMMON | {"buckets", "namespace", "timeout", "wait_replicas", "fanout_worker"}


_LITTLE = sys.byteorder == "little"


def _swapped(run: bytes) -> bytes:
    """Little-endian uint64s (as ``tc_ranges`` packs them) in this machine's order."""
    ids = array("Q", run)
    ids.byteswap()
    return ids.tobytes()


def _pad(node: int) -> bytes:
    return (_PAD % node).encode()


class RedisStore(Store):
    """A store shared by any number of processes on any number of hosts.

    Options beyond the common ones: ``buckets`` (1..1024, fixed when the
    namespace is first used), ``namespace`` (key prefix; several stores can
    share one cluster), ``timeout`` (seconds per Redis call), ``wait_replicas``
    (acknowledge a write only after that many replicas have it: ``WAIT``),
    ``fanout_worker`` (write and hybrid: run this process's fan-out worker
    thread, default True; turn it off in processes that should not do that
    work, as long as some process does: without one, reads stay right but
    read the logs).
    """

    remote = True  # every call is a network round trip (or several)

    def __init__(self, target: str, *, clock: Callable[[], float] = _time.time, **options: Any) -> None:
        _options.check("redis", options, _OPTIONS - {"clock"})
        given = _options.strategy(options)
        self.fanout, self.window, self.celebrity_threshold = given[0] or "read", given[1], given[2]
        if "durable" in options:
            _options.flag("durable", options["durable"])
        run_worker = _options.flag("fanout_worker", options.get("fanout_worker", True))
        self._merge = _kernel.select(options.get("kernel"))
        self._clock = _options.clock(clock)
        self._retention = _options.seconds(
            "key_retention", options.get("key_retention", _idempotency.DEFAULT_RETENTION)
        )
        self._nb = _options.bounded_int("buckets", options.get("buckets", 1024), 1, 1024, optional=False)
        ns = options.get("namespace", "tc")
        if not isinstance(ns, str) or not _NAMESPACE.match(ns):
            raise ConfigurationError(f"namespace: expected 1-40 letters, digits, '_' or '-', got {ns!r}")
        self._replicas = _options.bounded_int("wait_replicas", options.get("wait_replicas", 0), 0, 16, optional=False)
        timeout = _options.seconds("timeout", options.get("timeout", 5.0))
        self._ns = ns
        self._tags = [f"{{{ns}.{b}}}" for b in range(self._nb)]
        self._prefixes = [f"{tag}:" for tag in self._tags]
        self._r = Router(target, timeout)
        self._floor = 0  # the newest position this process has seen: its writes go after it
        self._floor_lock = threading.Lock()
        self._heard = 0  # the newest position announced on the wake channel
        self._dirty: set[int] = set()  # buckets the wake channel named since the fan-out worker looked
        self._woken = threading.Condition()
        self._listener: threading.Thread | None = None
        self._pubsub: Any = None
        self._windows: Windows | None = None
        try:
            self._load_functions()
            self._claim_layout(given)
            if self.fanout != "read":  # the claim set window (and threshold) to the namespace's
                assert self.window is not None
                self._windows = Windows(self, self.window, self.celebrity_threshold)
            self._repair()
            if self._windows is not None and run_worker:
                self._windows.start()
        except BaseException:
            self._r.close()
            raise

    # ------------------------------------------------------------ plumbing

    def _load_functions(self) -> None:
        code = resources.files(__package__).joinpath("functions.lua").read_text()
        for master in self._r.masters():
            try:
                master.function_load(code, replace=True)
            except Exception as exc:
                raise StoreError(
                    f"open({self._r.target!r}): FUNCTION LOAD failed: {exc} (Redis 7 or later is needed)"
                ) from None

    def _claim_layout(self, given: tuple[str | None, int | None, int | None]) -> None:
        """The bucket count is part of every id, and the fan-out strategy decides what every publish
        writes (the feed): a namespace keeps the first of each.  An option left out adopts the stored one."""
        key = f"{self._tags[0]}:meta"
        fields = {
            "buckets": self._nb,
            "fanout": self.fanout,
            "window": self.window or 800,
            "celebrity_threshold": self.celebrity_threshold or 10_000,
        }
        self._call([(self._tags[0], ("HSETNX", key, k, v)) for k, v in fields.items()], safe=True)
        stored = self._call([(self._tags[0], ("HMGET", key, *fields))], safe=True)[0]
        if int(stored[0]) != self._nb:
            raise ConfigurationError(
                f"buckets: namespace {self._ns!r} was created with buckets={int(stored[0])}, not {self._nb} "
                "(ids depend on it; open with the original count or use another namespace)"
            )
        fanout, window, threshold = stored[1].decode(), int(stored[2]), int(stored[3])
        wanted = {
            "fanout": (given[0], fanout),
            "window": (given[1], window),
            "celebrity_threshold": (given[2], threshold),
        }
        for name, (option, kept) in wanted.items():
            if option is not None and option != kept and (name == "fanout" or fanout != "read"):
                raise ConfigurationError(
                    f"{name}: namespace {self._ns!r} was created with {name}={kept!r}, not {option!r} "
                    "(a Redis namespace keeps its fan-out strategy; open without the option, or use another namespace)"
                )
        self.fanout = fanout
        if fanout != "read":
            self.window, self.celebrity_threshold = window, threshold if fanout == "hybrid" else None

    def _call(self, calls: list[tuple[str, tuple[Any, ...]]], *, safe: bool) -> list[Any]:
        answers = self._r.run(calls, safe=safe)
        for reply in answers:
            if isinstance(reply, Exception):
                raise StoreError(f"redis {self._r.target}: {reply} (the cluster refused a command)")
        return answers

    def _write(self, calls: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        answers = self._call(calls, safe=False)
        if self._replicas:
            tags = list(dict.fromkeys(tag for tag, _ in calls))
            # WAIT must give up before the socket does: a WAIT as long as the socket timeout
            # raced it and ended as "the cluster did not answer" after three retries.
            wait_ms = max(1, int(self._r.timeout * 500))
            acks = self._call([(t, ("WAIT", self._replicas, wait_ms)) for t in tags], safe=True)
            if min(acks) < self._replicas:
                raise StoreError(
                    f"redis {self._r.target}: only {min(acks)} of {self._replicas} replicas confirmed a write "
                    "within the timeout (it is applied on the master and may be lost in a failover)"
                )
        return answers

    def _bucket(self, node: int) -> int:
        # Fibonacci hashing: consecutive node ids spread over the buckets.
        return int((((node * 0x9E3779B97F4A7C15) & _MASK) >> 32) % self._nb)

    def _key(self, b: int, kind: str) -> str:
        return f"{self._tags[b]}:{kind}"

    def _floor_clock(self, b: int) -> int:
        """The least clock bucket ``b`` may use so that its next id passes ``self._floor``."""
        return (self._floor - b) // 1024 + 1 if self._floor else 0

    def _fcall(self, name: str, b: int, *args: Any, keys: tuple[str, ...] = ()) -> tuple[str, tuple[Any, ...]]:
        """``keys``: every other key the function touches (kinds, as ``_key`` names them).  Redis
        checks declared keys only: while a slot moves, a call whose keys are not all on one node is
        refused up front (TRYAGAIN, retried) instead of failing half applied."""
        declared = [self._key(b, "c"), *(self._key(b, k) for k in keys)]
        return self._tags[b], ("FCALL", name, len(declared), *declared, *args)

    def _saw(self, position: int) -> None:
        if position > self._floor:
            # Threads share a store (a server's pool): the check and the raise
            # must be one step, or a slower thread could lower the floor.
            with self._floor_lock:
                if position > self._floor:
                    self._floor = position

    @staticmethod
    def _event_of(id: int, value: bytes) -> Event:
        source, at, payload = value.split(b":", 2)
        return Event(id, int(source), payload, float(at))

    def _close(self) -> None:
        with self._woken:
            self._woken.notify_all()  # the fan-out worker stops at its next look at _closed
        if self._windows is not None:
            self._windows.stop()
        if self._pubsub is not None:
            # A listener inside get_message when the connection closes reconnects (redis-py's
            # retry): close, let it see _closed and end, then close whatever it reopened.
            for _ in range(2):
                try:
                    self._pubsub.close()
                except Exception:  # already broken: nothing left to release
                    pass
                if self._listener is not None:
                    self._listener.join(3.0)
        with self._woken:
            self._woken.notify_all()
        self._r.close()

    # ----------------------------------------------------------------- graph

    def _edges(self, pairs: list[tuple[int, int]], follow: bool) -> int:
        by_sink: dict[int, list[int]] = {}
        for sink, source in pairs:
            by_sink.setdefault(sink, []).append(source)
        sinks = list(by_sink)
        flag = "1" if follow else "0"
        calls = []
        for sink in sinks:
            b = self._bucket(sink)
            keys = ("l", f"o:{sink}", f"h:{sink}", "p")
            calls.append(
                self._fcall("tc_edge", b, self._floor_clock(b), flag, sink, *map(_pad, by_sink[sink]), keys=keys)
            )
        answers = self._write(calls)
        mirrors, cleared, changed = [], [], 0
        done: list[tuple[int, int]] = []  # (sink, source) of each change
        for sink, answer in zip(sinks, answers):
            b = self._bucket(sink)
            for clock, padded in answer:
                changed += 1
                self._saw(int(clock) << 10 | b)
                source = int(padded)
                mirrors.append(self._mirror(source, sink, clock, flag))
                done.append((sink, source))
                cleared.append((self._tags[b], ("SREM", self._key(b, "p"), b"%d:" % sink + padded)))
        if mirrors:
            self._write(mirrors)
            if self._windows is not None:  # before the pending marks go: a crash here is repaired by a worker
                (self._windows.followed if follow else self._windows.unfollowed)(done)
            self._call(cleared, safe=True)
        return changed

    def _follow_many(self, pairs: list[tuple[int, int]]) -> int:
        return self._edges(pairs, True)

    def _unfollow_many(self, pairs: list[tuple[int, int]]) -> int:
        return self._edges(pairs, False)

    def _repair(self, buckets: list[int] | None = None, older_than: float = 0.0) -> int:
        """Write the source side (and, fanning out on write, the window backfill or cut) of
        edges whose writer died after the sink side: the sink side is authoritative; until
        repaired, ``sinks`` may miss them and a window their source's older posts.  At open
        over every bucket; by the fan-out workers over their leased ``buckets``, only edges
        written more than ``older_than`` seconds ago (a younger one may have a live writer;
        repairing it too would only repeat its idempotent steps).  Returns edges repaired."""
        buckets = list(range(self._nb)) if buckets is None else buckets
        pending = self._call([(self._tags[b], ("SMEMBERS", self._key(b, "p"))) for b in buckets], safe=True)
        before = (_time.time() - older_than) * 1e6  # bucket clocks are microseconds of the servers' time
        repaired = 0
        for b, members in zip(buckets, pending):
            for member in members:
                sink_text, padded = member.split(b":")
                sink, source = int(sink_text), int(padded)
                history = self._call([(self._tags[b], ("ZRANGE", self._key(b, f"h:{sink}"), -1000, -1))], safe=True)[0]
                last = [h for h in history if h.split(b":")[1] == padded]
                if last and older_than and int(last[-1].split(b":")[0]) > before:
                    continue
                repaired += 1
                if last:
                    clock, _, flag = last[-1].split(b":")
                    self._write([self._mirror(source, sink, clock, flag)])
                    if self._windows is not None:
                        (self._windows.followed if flag == b"1" else self._windows.unfollowed)([(sink, source)])
                self._call([(self._tags[b], ("SREM", self._key(b, "p"), member))], safe=True)
        return repaired

    def _mirror(self, source: int, sink: int, clock: Any, flag: Any) -> tuple[str, tuple[Any, ...]]:
        keys = (f"v:{source}", f"i:{source}")
        return self._fcall("tc_mirror", self._bucket(source), source, _pad(sink), clock, flag, keys=keys)

    def _one(self, node: int, *command: Any) -> Any:
        return self._call([(self._tags[self._bucket(node)], command)], safe=True)[0]

    def _is_following(self, sink: int, source: int) -> bool:
        b = self._bucket(sink)
        return self._one(sink, "ZSCORE", self._key(b, f"o:{sink}"), _pad(source)) is not None

    def _members(self, node: int, kind: str, limit: int | None, after: int | None) -> list[int]:
        b = self._bucket(node)
        low = b"-" if after is None else b"(" + _pad(after)
        extra: tuple[Any, ...] = () if limit is None else ("LIMIT", 0, limit)
        return [int(m) for m in self._one(node, "ZRANGEBYLEX", self._key(b, f"{kind}:{node}"), low, b"+", *extra)]

    def _sources(self, sink: int, limit: int | None, after: int | None) -> list[int]:
        return self._members(sink, "o", limit, after)

    def _sinks(self, source: int, limit: int | None, after: int | None) -> list[int]:
        return self._members(source, "i", limit, after)

    def _source_count(self, sink: int) -> int:
        return int(self._one(sink, "ZCARD", self._key(self._bucket(sink), f"o:{sink}")))

    def _sink_count(self, source: int) -> int:
        return int(self._one(source, "ZCARD", self._key(self._bucket(source), f"i:{source}")))

    # ---------------------------------------------------------------- events

    def _publish_many(self, items: list[tuple[int, bytes]], keys: list[bytes | None] | None) -> list[Event]:
        now = self._clock()
        at = repr(float(now))
        if keys is not None:
            self._refuse_deleted(items, keys, float(now))
            plan = _idempotency.plan(items, keys, lambda source, key: None)
            fresh = plan.fresh
        else:
            fresh = list(range(len(items)))
        out: list[Event | None] = [None] * len(items)
        # Consecutive items of one bucket go in one call; a batch over several
        # buckets takes its runs in order, each after the last id of the one
        # before, so ids follow the item order as in every backend.
        start = 0
        while start < len(fresh):
            b = self._bucket(items[fresh[start]][0])
            stop = start + 1
            while stop < len(fresh) and self._bucket(items[fresh[stop]][0]) == b:
                stop += 1
            run = fresh[start:stop]
            args: list[Any] = [self._floor_clock(b), at, self._retention, len(run)]
            for i in run:
                key = keys[i] if keys is not None else None
                args += [items[i][0], items[i][1], key if key is not None else b""]
            feed = self._windows is not None
            args.append(int(feed))
            declared = ("l", "e", "k", "kt", *(("f",) if feed else ()), *dict.fromkeys(f"g:{items[i][0]}" for i in run))
            (answer,) = self._write([self._fcall("tc_publish", b, *args, keys=declared)])
            if answer and answer[0] == b"deleted":
                i = run[int(answer[1]) - 1]
                raise _idempotency.missing(items[i][0], keys[i], int(answer[2]) << 10 | b)  # type: ignore[index, arg-type]
            for i, reply in zip(run, answer):
                if isinstance(reply, list):
                    out[i] = self._event_of(int(reply[0]) << 10 | b, reply[1])
                else:
                    id = int(reply) << 10 | b
                    out[i] = Event(id, items[i][0], items[i][1], now)
                    self._saw(id)
            start = stop
        if keys is not None:
            for index, first in sorted(plan.same.items()):
                out[index] = out[first]
        return out  # type: ignore[return-value]

    def _refuse_deleted(self, items: list[tuple[int, bytes]], keys: list[bytes | None], now: float) -> None:
        """A retry whose event was deleted publishes nothing of its batch."""
        keyed = [(s, k) for (s, _), k in zip(items, keys) if k is not None]
        found = self._call(
            [
                (self._tags[self._bucket(s)], ("HGET", self._key(self._bucket(s), "k"), b"%d:" % s + k))
                for s, k in keyed
            ],
            safe=True,
        )
        for (source, key), record in zip(keyed, found):
            if record is None:
                continue
            clock, at = record.split(b":", 1)
            if float(at) < now - self._retention:
                continue
            b = self._bucket(source)
            if not self._one(source, "HEXISTS", self._key(b, "e"), clock):
                raise _idempotency.missing(source, key, int(clock) << 10 | b)

    def _event(self, id: int) -> Event | None:
        b = id & 1023
        if b >= self._nb:
            return None
        value = self._call([(self._tags[b], ("HGET", self._key(b, "e"), id >> 10))], safe=True)[0]
        return None if value is None else self._event_of(id, value)

    def _delete(self, id: int) -> Event | None:
        b = id & 1023
        if b >= self._nb:
            return None
        # The function finds the source in the event; its keys must be declared up front.
        found = self._event(id)
        if found is None:
            return None
        keys = ("l", "e", f"g:{found.source}", f"d:{found.source}")
        (answer,) = self._write([self._fcall("tc_delete", b, self._floor_clock(b), id >> 10, keys=keys)])
        if answer is None:
            return None
        self._saw(int(answer[0]) << 10 | b)
        return self._event_of(id, answer[1])

    def _timeline_count(self, source: int) -> int:
        return int(self._one(source, "ZCARD", self._key(self._bucket(source), f"g:{source}")))

    # ------------------------------------------------------------- positions

    def _per_master(
        self, name: str, buckets: list[int], head: tuple[Any, ...], each: Callable[[int], tuple[Any, ...]]
    ) -> tuple[list[tuple[list[int], Any]], list[int]]:
        """Call function ``name`` once per master over its ``buckets`` (ARGV: ``head``,
        then ``each(b)`` per bucket; routed by the first bucket's clock key).  Returns
        ``(buckets, answer)`` per master that answered, and the buckets of masters that
        refused: a bucket not where the slot table said (slots moving) makes Redis
        refuse the call, and callers read those one by one with declared keys."""
        groups = [[buckets[i] for i in group] for group in self._r.groups([self._tags[b] for b in buckets])]
        calls = [self._fcall(name, group[0], *head, *(x for b in group for x in each(b))) for group in groups]
        answered: list[tuple[list[int], Any]] = []
        refused: list[int] = []
        for group, answer in zip(groups, self._r.run(calls, safe=True) if calls else []):
            if isinstance(answer, Exception):
                refused += group
            else:
                answered.append((group, answer))
        if refused:
            self._r.forget()
        return answered, refused

    def _closes(self, buckets: list[int], floors: dict[int, int] | None = None) -> list[tuple[int, int]]:
        floors = floors or {}
        out: dict[int, tuple[int, int]] = {}
        answered, refused = self._per_master("tc_closes", buckets, (), lambda b: (self._prefixes[b], floors.get(b, 0)))
        for group, answer in answered:
            for b, (c, last) in zip(group, answer):
                out[b] = (int(c), int(last))
        if refused:
            singles = [self._fcall("tc_close", b, floors.get(b, 0), keys=("l",)) for b in refused]
            for b, (c, last) in zip(refused, self._call(singles, safe=True)):
                out[b] = (int(c), int(last))
        return [out[b] for b in buckets]

    def _last_seq(self) -> int:
        """The newest position, after closing every bucket above it (so that a
        tail starting there misses nothing).  Runtime complexity: one call per
        master (``tc_closes``), a second only for buckets behind the newest."""
        buckets = list(range(self._nb))
        closed = self._closes(buckets)
        newest = max((last << 10 | b for b, (_, last) in zip(buckets, closed) if last), default=0)
        behind = [b for b, (c, _) in zip(buckets, closed) if (c + 1) << 10 | b <= newest]
        if behind:
            self._closes(behind, {b: (newest - b) // 1024 + 1 for b in behind})
        self._saw(newest)
        return newest

    def _newest_mutation(self) -> int:
        """The newest position any bucket has changed at (its 'l' key).  Runtime
        complexity: one call per master, one GET per bucket where a master refuses."""
        answered, refused = self._per_master("tc_newest", list(range(self._nb)), (), lambda b: (self._prefixes[b], b))
        newest = max((int(c) << 10 | int(b) for _, (c, b) in answered if int(c)), default=0)
        if refused:
            lasts = self._call([(self._tags[b], ("GET", self._key(b, "l"))) for b in refused], safe=True)
            newest = max([newest, *(int(last) << 10 | b for b, last in zip(refused, lasts) if last)])
        return newest

    @staticmethod
    def _clock_bounds(b: int, lo: int, hi: int) -> tuple[int, int]:
        """Clocks of bucket ``b`` whose ids fall in ``(lo, hi]``: ``(lo_c, hi_c]``."""
        return (lo - b) // 1024, (hi - b) // 1024

    # ----------------------------------------------------------------- reads

    def _range(
        self, b: int, sources: list[int], limit: int, lo: int, hi: int, oldest: bool, values: bool
    ) -> tuple[str, tuple[Any, ...]]:
        lo_c, hi_c = self._clock_bounds(b, lo, hi)
        keys = ("e", *(f"g:{s}" for s in sources))
        return self._fcall(
            "tc_range", b, max(lo_c, -1), max(hi_c, -1), limit, int(oldest), int(values), *sources, keys=keys
        )

    def _runs(
        self, by_bucket: dict[int, list[int]], limit: int, lo: int, hi: int, oldest: bool
    ) -> tuple[int, list[tuple[bytes, dict[int, list[int]]]]]:
        """Close each bucket and read its sources' newest (or oldest) ``limit``
        ids in ``(lo, hi]``.  Returns the cut (the least position closed) and
        runs: ``(ascending packed uint64 ids, the sources they come from)``, a
        run a master's merge of its sources, truncated to ``limit``.  Runtime
        complexity: one round trip, one call per master (``tc_ranges``), or one
        per bucket of a master whose slots are moving."""

        def spec(b: int) -> tuple[Any, ...]:
            lo_c, hi_c = self._clock_bounds(b, lo, hi)
            return (self._prefixes[b], b, max(lo_c, -1), max(hi_c, -1), len(by_bucket[b]), *by_bucket[b])

        answered, fallback = self._per_master("tc_ranges", list(by_bucket), (limit, int(oldest)), spec)
        cut: int | None = None
        runs: list[tuple[bytes, dict[int, list[int]]]] = []
        for group, answer in answered:
            least = int(answer[0]) << 10 | int(answer[1])
            cut = least if cut is None else min(cut, least)
            runs.append((answer[2] if _LITTLE else _swapped(answer[2]), {b: by_bucket[b] for b in group}))
        if fallback:
            answers = self._call(
                [self._range(b, by_bucket[b], limit, lo, hi, oldest, False) for b in fallback], safe=True
            )
            for b, answer in zip(fallback, answers):
                least = int(answer[0]) << 10 | b
                cut = least if cut is None else min(cut, least)
                for n, source in enumerate(by_bucket[b]):
                    ids = [int(c) << 10 | b for c in answer[1 + 2 * n]]
                    runs.append((array("Q", ids if oldest else ids[::-1]).tobytes(), {b: [source]}))
        assert cut is not None
        return cut, runs

    def _timeline(self, source: int, limit: int, lo: int, hi: int, oldest: bool) -> list[Event]:
        b = self._bucket(source)
        (answer,) = self._call([self._range(b, [source], limit, lo, hi, oldest, True)], safe=True)
        events = [self._event_of(int(c) << 10 | b, v) for c, v in zip(answer[1], answer[2]) if v is not None]
        return events[::-1] if oldest else events

    def _home(self, sink: int, limit: int, lo: int, hi: int, oldest: bool) -> list[Event]:
        # The ids and the events are read in two steps: an event deleted in between
        # would leave the page one short, and a short page says "nothing older".
        # Read again (the deletion is then in the logs); concurrent deletes that
        # keep winning this race are rare, so a few rounds end it.
        for _ in range(8):
            events, complete = self._home_once(sink, limit, lo, hi, oldest)
            if complete:
                break
        return events

    def _home_once(self, sink: int, limit: int, lo: int, hi: int, oldest: bool) -> tuple[list[Event], bool]:
        sb = self._bucket(sink)
        if self._windows is None:
            padded = self._one(sink, "ZRANGE", self._key(sb, f"o:{sink}"), 0, -1)
            return self._read_page(padded, limit, lo, hi, oldest) if padded else ([], True)
        # With the sources, the bucket's half-written edges (after the sources: an edge whose
        # mark is gone by then has its window backfill done): until an edge's writer finishes
        # (or a repair does), its source is read from its log, not trusted to the window.
        padded, marks = self._call(
            [
                (self._tags[sb], ("ZRANGE", self._key(sb, f"o:{sink}"), 0, -1)),
                (self._tags[sb], ("SMEMBERS", self._key(sb, "p"))),
            ],
            safe=True,
        )
        if not padded:
            return [], True
        mine = b"%d:" % sink
        unsure = {int(m[len(mine) :]) for m in marks if m.startswith(mine)}
        return self._windows.home_once(
            sink,
            [int(p) for p in padded],
            limit,
            lo,
            hi,
            oldest,
            lambda: self._read_page(padded, limit, lo, hi, oldest),
            unsure,
        )

    def _read_page(self, padded: list[bytes], limit: int, lo: int, hi: int, oldest: bool) -> tuple[list[Event], bool]:
        """Fan-out on read: close the sources' buckets, merge their logs, fetch the page."""
        by_bucket: dict[int, list[int]] = {}
        for p in padded:
            source = int(p)
            by_bucket.setdefault(self._bucket(source), []).append(source)
        cut, runs = self._runs(by_bucket, limit, lo, hi, oldest)
        packed: list[bytes] = []
        short: dict[int, list[int]] = {}  # sources whose newest `limit` reached past the cut
        for run, sources in runs:
            ids = memoryview(run).cast("Q")
            kept = bisect_right(ids, cut)
            if not oldest and len(ids) == limit and kept < len(ids):
                # Older ids at or below the cut may have been left out: read them again.
                for b, members in sources.items():
                    short.setdefault(b, []).extend(members)
            elif kept:
                packed.append(run[: kept * 8])
        if short:
            _, again = self._runs(short, limit, lo, min(hi, cut), False)
            packed += (run for run, _ in again if run)
        upper = min(hi, cut)
        if lo >= upper or not packed:
            return [], True
        chosen = (self._merge.oldest if oldest else self._merge.newest)(packed, limit, lo, upper)
        events = self._fetch(chosen)
        return (events[::-1] if oldest else events), len(events) == len(chosen)

    def _fetch(self, ids: list[int]) -> list[Event]:
        """The events of ``ids`` in that order; deleted ones drop out.  Runtime complexity: one
        call per master (``tc_events``), one ``HMGET`` per bucket of a master whose slots move."""
        by_bucket: dict[int, list[int]] = {}
        for id in ids:
            by_bucket.setdefault(id & 1023, []).append(id)
        if not by_bucket:
            return []
        answered, refused = self._per_master(
            "tc_events",
            list(by_bucket),
            (),
            lambda b: (self._prefixes[b], len(by_bucket[b]), *[i >> 10 for i in by_bucket[b]]),
        )
        pairs: list[tuple[int, bytes | None]] = []
        for group, values in answered:
            pairs += zip((i for b in group for i in by_bucket[b]), values)
        if refused:
            answers = self._call(
                [(self._tags[b], ("HMGET", self._key(b, "e"), *[i >> 10 for i in by_bucket[b]])) for b in refused],
                safe=True,
            )
            for b, values in zip(refused, answers):
                pairs += zip(by_bucket[b], values)
        found = {id: self._event_of(id, value) for id, value in pairs if value is not None}
        return [found[i] for i in ids if i in found]

    # ------------------------------------------------------------------ live

    def _changes(self, sink: int, after: int, limit: int) -> tuple[list[Change], int]:
        sb = self._bucket(sink)
        (answer,) = self._call([self._fcall("tc_history", sb, sink, keys=(f"h:{sink}",))], safe=True)
        cut = int(answer[0]) << 10 | sb
        history: list[tuple[int, int, bool]] = []
        for entry in answer[1]:
            clock, source, flag = entry.split(b":")
            history.append((int(clock) << 10 | sb, int(source), flag == b"1"))
        # Every source ever followed: an event published while followed and deleted
        # after the unfollow still owes its notice, whatever the cursor.
        relevant = {src for _, src, following in history if following}
        by_bucket: dict[int, list[int]] = {}
        for source in sorted(relevant):
            by_bucket.setdefault(self._bucket(source), []).append(source)
        buckets = list(by_bucket)
        replies = self._sinces(buckets, by_bucket, after, limit)
        found: list[tuple[int, Change]] = []
        for b, reply in zip(buckets, replies):
            cut = min(cut, int(reply[0]) << 10 | b)
            for n, source in enumerate(by_bucket[b]):
                ids, values, dels = reply[1 + 3 * n], reply[2 + 3 * n], reply[3 + 3 * n]
                if len(ids) == limit:
                    cut = min(cut, int(ids[-1]) << 10 | b)
                if len(dels) == limit:
                    cut = min(cut, int(dels[-1].split(b":")[0]) << 10 | b)
                for c, value in zip(ids, values):
                    id = int(c) << 10 | b
                    if value is not None and _followed_at(history, source, id):
                        found.append((id, self._event_of(id, value)))
                for d in dels:
                    s, e = d.split(b":")
                    seq, id = int(s) << 10 | b, int(e) << 10 | b
                    if _followed_at(history, source, id):
                        found.append((seq, Deletion(seq, id, source)))
        found = sorted(f for f in found if f[0] <= cut)
        self._saw(cut)
        if len(found) > limit:
            found = found[:limit]
            return [item for _, item in found], found[-1][0]
        return [item for _, item in found], cut

    def _sinces(self, buckets: list[int], by_bucket: dict[int, list[int]], after: int, limit: int) -> list[Any]:
        """One ``tc_since`` answer per bucket: one ``tc_sinces`` call per master,
        or one ``tc_since`` per bucket of a master that refuses it (slots moving)."""

        def spec(b: int) -> tuple[Any, ...]:
            return (self._prefixes[b], max((after - b) // 1024, -1), len(by_bucket[b]), *by_bucket[b])

        answered, refused = self._per_master("tc_sinces", buckets, (limit,), spec)
        replies = {b: reply for group, answer in answered for b, reply in zip(group, answer)}
        if refused:
            singles = []
            for b in refused:
                keys = ("e", *(k for s in by_bucket[b] for k in (f"g:{s}", f"d:{s}")))
                singles.append(
                    self._fcall("tc_since", b, max((after - b) // 1024, -1), limit, *by_bucket[b], keys=keys)
                )
            replies.update(zip(refused, self._call(singles, safe=True)))
        return [replies[b] for b in buckets]

    def _wait(self, after: int, timeout: float | None) -> bool:
        """Wake on the pub/sub channel; poll every 0.2 s too, so a lost
        notification delays a tail but never stalls it."""
        deadline = None if timeout is None else _time.monotonic() + timeout
        self._listen()
        while not self._closed:
            if self._heard > after or self._newest_mutation() > after:
                return True
            remaining = 0.2 if deadline is None else min(0.2, deadline - _time.monotonic())
            if remaining <= 0:
                return False
            with self._woken:
                self._woken.wait_for(lambda: self._heard > after or self._closed, remaining)
        return False

    def _listen(self) -> None:
        if self._listener is not None and self._listener.is_alive():
            return
        try:
            self._pubsub = self._r.masters()[0].pubsub(ignore_subscribe_messages=True)
            self._pubsub.subscribe(f"{self._ns}:wake")
        except Exception:  # polling alone still answers correctly
            self._pubsub = None
            return
        self._listener = threading.Thread(target=self._hear, name="twittercore-redis-wake", daemon=True)
        self._listener.start()

    def _hear(self) -> None:
        pubsub = self._pubsub
        while not self._closed:
            try:
                message = pubsub.get_message(timeout=1.0)
            except Exception:  # connection lost: the poll in _wait takes over
                return
            if message and message.get("type") == "message":
                clock, bucket = message["data"].split(b":")
                with self._woken:
                    self._heard = max(self._heard, int(clock) << 10 | int(bucket))
                    self._dirty.add(int(bucket))
                    self._woken.notify_all()

    # -------------------------------------------------------------- checking

    def _scan(self, pattern: str) -> list[bytes]:
        keys: list[bytes] = []
        for master in self._r.masters():
            keys.extend(master.scan_iter(match=pattern, count=1000))
        return keys

    def _check(self) -> None:
        pending = self._call([(self._tags[b], ("SCARD", self._key(b, "p"))) for b in range(self._nb)], safe=True)
        assert sum(pending) == 0, "edges whose source side was never written"
        for key in self._scan(f"{{{self._ns}.*}}:o:*"):
            sink = int(key.rsplit(b":", 1)[1])
            assert self._tags[self._bucket(sink)].encode() == key.split(b":")[0], key
            for source in self._sources(sink, None, None):
                assert sink in self._sinks(source, None, None), (sink, source)
        for key in self._scan(f"{{{self._ns}.*}}:i:*"):
            source = int(key.rsplit(b":", 1)[1])
            for sink in self._sinks(source, None, None):
                assert self._is_following(sink, source), (sink, source)
        for key in self._scan(f"{{{self._ns}.*}}:g:*"):
            source = int(key.rsplit(b":", 1)[1])
            b = self._bucket(source)
            for event in self._timeline(source, 10_000, 0, _MASK, False):
                assert event.source == source and event.id & 1023 == b, (source, event.id)


def _followed_at(history: list[tuple[int, int, bool]], source: int, position: int) -> bool:
    """Did the sink follow ``source`` just before ``position``?  (``history`` ascending.)"""
    state = False
    for pos, src, following in history:
        if pos >= position:
            break
        if src == source:
            state = following
    return state
