"""A deterministic synthetic Twitter: follow graph, posts and a mixed operation stream.

Everything is generated from ``seed`` with the standard library only, streamed
(no stream is ever held in memory whole), and the same seed gives the same
bytes on every machine.

Users are numbered ``1..users`` (0 is avoided because HTTP servers often treat
it as "no id").  The initial graph has a log-normal out-degree (mean about
``mean_followees``, capped at ``max_followees``) and a power-law in-degree:
whom to follow is drawn from a Zipf popularity ranking, so a few celebrities
are followed by a large share of all users.  Authors of posts are drawn from
an independent Zipf ranking.  The operation stream after the initial load
mixes home reads, profile (timeline) reads, publishes, follows, unfollows and
deletes in Twitter's proportions (tens of reads per post).

A delete names its event as ``publish=n``: the n-th publish of the workload,
counting the initial posts from 0 and then the stream's publishes, so a
replay maps it to whatever id its store returned.

>>> w = Workload(users=50, posts=20, reads=30, mean_followees=5, seed=3)
>>> pairs = list(w.graph())
>>> all(1 <= a <= 50 and 1 <= b <= 50 and a != b for a, b in pairs)
True
>>> pairs == list(Workload(users=50, posts=20, reads=30, mean_followees=5, seed=3).graph())
True
>>> [len(p) for _, p in w.posts()][:3]
[140, 140, 140]
>>> sum(isinstance(op, Home) for op in w.operations()) > 0
True
"""

from __future__ import annotations

import argparse
import array
import bisect
import itertools
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from ..errors import InvalidArgumentError

__all__ = [
    "Workload",
    "RecordedWorkload",
    "Home",
    "Timeline",
    "Publish",
    "Follow",
    "Unfollow",
    "Delete",
    "Operation",
    "kind",
    "replay",
    "ReplayResult",
]

FORMAT = "twittercore-workload"
VERSION = 1


# ------------------------------------------------------------- operations
# One small named tuple per kind: cheap to make, readable to match on.


class Home(NamedTuple):
    """Read ``pages`` pages of ``sink``'s home timeline, ``limit`` events each."""

    sink: int
    limit: int = 50
    pages: int = 1


class Timeline(NamedTuple):
    """Read the newest ``limit`` events of ``source``'s own timeline (a profile view)."""

    source: int
    limit: int = 20


class Publish(NamedTuple):
    """``source`` publishes ``payload``."""

    source: int
    payload: bytes


class Follow(NamedTuple):
    sink: int
    source: int


class Unfollow(NamedTuple):
    sink: int
    source: int


class Delete(NamedTuple):
    """Delete the ``publish``-th publish of the workload (initial posts count from 0)."""

    publish: int


Operation = Home | Timeline | Publish | Follow | Unfollow | Delete

_KIND = {
    Home: "home",
    Timeline: "timeline",
    Publish: "publish",
    Follow: "follow",
    Unfollow: "unfollow",
    Delete: "delete",
}


def kind(op: Operation) -> str:
    """The name an operation has in workload files and reports (``"home"``, ``"publish"``, ...).

    >>> kind(Delete(3))
    'delete'
    """
    return _KIND[type(op)]


def _op_to_json(op: Operation) -> dict[str, Any]:
    record: dict[str, Any] = {"op": _KIND[type(op)]}
    for name, value in zip(op._fields, op):
        record[name] = value.decode("latin-1") if isinstance(value, bytes) else value
    return record


def _op_from_json(record: dict[str, Any]) -> Operation:
    kind = record.pop("op")
    if kind == "publish":
        return Publish(record["source"], record["payload"].encode("latin-1"))
    for cls, name in _KIND.items():
        if name == kind:
            op: Operation = cls(**record)
            return op
    raise InvalidArgumentError(f"workload record: unknown op {kind!r} (expected one of {sorted(_KIND.values())})")


# ---------------------------------------------------------------- sampling


def _cumulative(n: int, exponent: float) -> list[float]:
    """Cumulative Zipf weights ``1/rank**exponent`` for ranks 1..n."""
    return list(itertools.accumulate(r**-exponent for r in range(1, n + 1)))


class Workload:
    """A synthetic Twitter, fully determined by its parameters.

    ``reads`` is the number of read operations (home and profile reads) in
    :meth:`operations`; the other kinds follow from the ``*_per_post`` ratios.
    """

    def __init__(
        self,
        users: int = 10_000,
        seed: int = 1,
        mean_followees: float = 100,
        max_followees: int = 5000,
        posts: int = 200_000,
        payload_bytes: int = 140,
        reads: int = 50_000,
        *,
        popularity_exponent: float = 0.7,
        author_exponent: float = 0.8,
        degree_sigma: float = 1.0,
        reads_per_post: float = 30.0,
        timeline_share: float = 0.1,
        second_page_share: float = 0.1,
        follows_per_post: float = 0.3,
        unfollows_per_post: float = 0.1,
        deletes_per_post: float = 0.02,
        page_limit: int = 50,
        timeline_limit: int = 20,
    ) -> None:
        if not isinstance(users, int) or users < 2:
            raise InvalidArgumentError(f"users: expected an int >= 2, got {users!r} (a graph needs two nodes)")
        for name, value in (("posts", posts), ("reads", reads), ("payload_bytes", payload_bytes)):
            if not isinstance(value, int) or value < 0:
                raise InvalidArgumentError(f"{name}: expected an int >= 0, got {value!r}")
        if not mean_followees > 0 or not max_followees >= 1:
            raise InvalidArgumentError(
                f"mean_followees/max_followees: expected > 0 and >= 1, got {mean_followees!r}/{max_followees!r}"
            )
        if payload_bytes < 12:
            raise InvalidArgumentError(f"payload_bytes: {payload_bytes} is too small (at least 12, to hold a serial)")
        self.params: dict[str, Any] = dict(
            users=users, seed=seed, mean_followees=mean_followees, max_followees=max_followees,
            posts=posts, payload_bytes=payload_bytes, reads=reads,
            popularity_exponent=popularity_exponent, author_exponent=author_exponent,
            degree_sigma=degree_sigma, reads_per_post=reads_per_post, timeline_share=timeline_share,
            second_page_share=second_page_share, follows_per_post=follows_per_post,
            unfollows_per_post=unfollows_per_post, deletes_per_post=deletes_per_post,
            page_limit=page_limit, timeline_limit=timeline_limit,
        )  # fmt: skip
        self.users, self.seed, self.posts_count, self.reads = users, seed, posts, reads
        self._cache: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Workload(users={self.users}, seed={self.seed}, posts={self.posts_count}, reads={self.reads})"

    # Each stream draws from its own generator, so generating one never shifts another.
    def _rng(self, stream: str) -> random.Random:
        return random.Random(f"{FORMAT}:{self.seed}:{stream}")

    def _ranking(self, name: str, exponent: float) -> tuple[list[int], list[float]]:
        """Users in a seeded random order (most popular first) and their cumulative Zipf weights."""
        if name not in self._cache:
            order = list(range(1, self.users + 1))
            self._rng(name).shuffle(order)
            self._cache[name] = (order, _cumulative(self.users, exponent))
        ranking: tuple[list[int], list[float]] = self._cache[name]
        return ranking

    # ------------------------------------------------------------------ graph

    def _out_degree(self, rng: random.Random) -> int:
        sigma = self.params["degree_sigma"]
        mu = math.log(self.params["mean_followees"]) - sigma * sigma / 2  # so the mean is mean_followees
        degree = int(round(rng.lognormvariate(mu, sigma)))
        return max(1, min(degree, int(self.params["max_followees"]), self.users - 1))

    def followees(self, sink: int) -> list[int]:
        """The sources ``sink`` follows in the initial graph, in generation order."""
        order, cum = self._ranking("popularity", self.params["popularity_exponent"])
        rng = self._rng(f"graph:{sink}")  # per sink, so one sink's list can be rebuilt alone
        k = self._out_degree(rng)
        if k * 8 > self.users:
            # Dense: weighted sampling without replacement by exponential keys
            # (Efraimidis-Spirakis); rejection would stall on duplicates.
            weights = [(r + 1) ** -self.params["popularity_exponent"] for r in range(self.users)]
            keyed = sorted(((rng.random() ** (1.0 / w), u) for w, u in zip(weights, order) if u != sink), reverse=True)
            return [u for _, u in keyed[:k]]
        chosen: dict[int, None] = {}
        while len(chosen) < k:
            need = k - len(chosen)
            for u in rng.choices(order, cum_weights=cum, k=need + need // 4 + 2):
                if u != sink and u not in chosen:
                    chosen[u] = None
                    if len(chosen) == k:
                        break
        return list(chosen)

    def graph(self) -> Iterator[tuple[int, int]]:
        """The initial follow graph as ``(sink, source)`` pairs, sink by sink."""
        for sink in range(1, self.users + 1):
            for source in self.followees(sink):
                yield sink, source

    # ------------------------------------------------------------------ posts

    def _payload(self, n: int) -> bytes:
        """The payload of the n-th publish: its serial, then printable filler (JSON-safe ASCII)."""
        if "filler" not in self._cache:
            rng = self._rng("payload")
            alphabet = "abcdefghijklmnopqrstuvwxyz      ABCDEFGHIJ0123456789.,!?#@"
            self._cache["filler"] = "".join(rng.choice(alphabet) for _ in range(4096)).encode()
        filler: bytes = self._cache["filler"]
        size: int = self.params["payload_bytes"]
        head = b"#%d " % n
        start = (n * 131) % (len(filler) - size)
        return head + filler[start : start + size - len(head)]

    def posts(self) -> Iterator[tuple[int, bytes]]:
        """The initial posts as ``(source, payload)``, authors Zipf-distributed."""
        order, cum = self._ranking("authors", self.params["author_exponent"])
        rng = self._rng("posts")
        chunk = 4096
        for start in range(0, self.posts_count, chunk):
            count = min(chunk, self.posts_count - start)
            for offset, source in enumerate(rng.choices(order, cum_weights=cum, k=count)):
                yield source, self._payload(start + offset)

    # ------------------------------------------------------------- operations

    def operations(self) -> Iterator[Operation]:
        """The mixed stream after the initial load; ends after ``reads`` read operations."""
        p = self.params
        rng = self._rng("operations")
        pop_order, pop_cum = self._ranking("popularity", p["popularity_exponent"])
        author_order, author_cum = self._ranking("authors", p["author_exponent"])
        kinds = ("read", "publish", "follow", "unfollow", "delete")
        cum = list(itertools.accumulate(
            (p["reads_per_post"], 1.0, p["follows_per_post"], p["unfollows_per_post"], p["deletes_per_post"])
        ))  # fmt: skip
        changed: dict[int, set[int]] = {}  # sinks whose followees the stream changed

        def current(sink: int) -> set[int]:
            if sink not in changed:
                changed[sink] = set(self.followees(sink))
            return changed[sink]

        publishes, deleted, reads = self.posts_count, set(), 0
        while reads < self.reads:
            kind = kinds[bisect.bisect(cum, rng.random() * cum[-1])]
            if kind == "read":
                reads += 1
                if rng.random() < p["timeline_share"]:
                    yield Timeline(rng.choices(pop_order, cum_weights=pop_cum)[0], p["timeline_limit"])
                else:
                    pages = 2 if rng.random() < p["second_page_share"] else 1
                    yield Home(rng.randint(1, self.users), p["page_limit"], pages)
            elif kind == "publish":
                source = rng.choices(author_order, cum_weights=author_cum)[0]
                yield Publish(source, self._payload(publishes))
                publishes += 1
            elif kind == "follow":
                sink = rng.randint(1, self.users)
                source = rng.choices(pop_order, cum_weights=pop_cum)[0]
                followed = current(sink)
                if source != sink and source not in followed:
                    followed.add(source)
                    yield Follow(sink, source)
            elif kind == "unfollow":
                sink = rng.randint(1, self.users)
                followed = current(sink)
                if followed:
                    source = rng.choice(sorted(followed))
                    followed.discard(source)
                    yield Unfollow(sink, source)
            elif publishes:
                # People delete recent posts: pick among the newest thousand.
                n = rng.randrange(max(0, publishes - 1000), publishes)
                if n not in deleted:
                    deleted.add(n)
                    yield Delete(n)

    # ------------------------------------------------------------ JSON Lines

    def write_jsonl(self, path: str | os.PathLike[str]) -> int:
        """Write header, graph (one line per sink), posts and operations; returns the line count."""
        return _write_jsonl(self, path)

    @staticmethod
    def read_jsonl(path: str | os.PathLike[str]) -> RecordedWorkload:
        """Open a file written by :meth:`write_jsonl` (streamed, not loaded)."""
        return RecordedWorkload(path)


def _write_jsonl(workload: Workload | RecordedWorkload, path: str | os.PathLike[str]) -> int:
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    lines = 0
    with open(path, "w", encoding="ascii") as out:
        out.write(dumps({"format": FORMAT, "version": VERSION, **workload.params}) + "\n")
        for sink, pairs in itertools.groupby(workload.graph(), key=lambda pair: pair[0]):
            out.write(dumps({"op": "follows", "sink": sink, "sources": [s for _, s in pairs]}) + "\n")
            lines += 1
        for source, payload in workload.posts():
            out.write(dumps({"op": "post", "source": source, "payload": payload.decode("latin-1")}) + "\n")
            lines += 1
        for op in workload.operations():
            out.write(dumps(_op_to_json(op)) + "\n")
            lines += 1
    return lines + 1


class RecordedWorkload:
    """A workload read back from JSON Lines; same methods as :class:`Workload`, streamed from disk."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        with open(self.path, encoding="ascii") as f:
            try:
                header = json.loads(f.readline())
            except ValueError:
                header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise InvalidArgumentError(
                f"{self.path}: not a twittercore workload (write one with `twittercore workload FILE`)"
            )
        self.params = {k: v for k, v in header.items() if k not in ("format", "version")}
        self.users, self.seed = self.params["users"], self.params["seed"]
        self.posts_count, self.reads = self.params["posts"], self.params["reads"]

    def _records(self, prefix: str) -> Iterator[dict[str, Any]]:
        with open(self.path, encoding="ascii") as f:
            f.readline()
            for line in f:
                if line.startswith(prefix):
                    yield json.loads(line)

    def graph(self) -> Iterator[tuple[int, int]]:
        for record in self._records('{"op":"follows"'):
            sink = record["sink"]
            for source in record["sources"]:
                yield sink, source

    def posts(self) -> Iterator[tuple[int, bytes]]:
        for record in self._records('{"op":"post"'):
            yield record["source"], record["payload"].encode("latin-1")

    def operations(self) -> Iterator[Operation]:
        with open(self.path, encoding="ascii") as f:
            f.readline()
            for line in f:
                if not line.startswith(('{"op":"follows"', '{"op":"post"')):  # skip unparsed
                    yield _op_from_json(json.loads(line))

    def write_jsonl(self, path: str | os.PathLike[str]) -> int:
        return _write_jsonl(self, path)


# ------------------------------------------------------------------ replay


class ReplayResult:
    """What a :func:`replay` did and how long it took.

    ``seconds[phase]``: for "graph" and "posts" the time inside the store
    calls only; for "operations" the whole phase.  ``ids[n]`` is the event id the store returned for the n-th publish;
    ``home_ns`` holds one latency per home page read (perf_counter_ns around
    the store call).
    """

    def __init__(self) -> None:
        self.follows = 0
        self.posts = 0
        self.counts: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.ids: array.array[int] = array.array("Q")
        self.home_ns: array.array[int] = array.array("q")
        self.timeline_ns: array.array[int] = array.array("q")
        #: Set by a caller that runs the phases in steps: the last id before
        #: the operations, and what its live tails saw meanwhile (the demo).
        self.start_of_operations = 0
        self.live: dict[str, Any] = {}

    def rate(self, phase: str, count: int) -> float:
        """Items per second of ``phase`` (0 when it took no time)."""
        seconds = self.seconds.get(phase, 0.0)
        return count / seconds if seconds > 0 else 0.0


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while batch := list(itertools.islice(items, size)):
        yield batch


def replay(
    workload: Workload | RecordedWorkload | str | os.PathLike[str],
    store: Any,
    *,
    batch: int = 10_000,
    phases: tuple[str, ...] = ("graph", "posts", "operations"),
    progress: Callable[[str, int], None] | None = None,
    resume: ReplayResult | None = None,
) -> ReplayResult:
    """Apply a workload to ``store`` (a Store, a Recorder, anything with the Store API).

    The graph goes in with ``follow_many`` and the posts with ``publish_many``,
    ``batch`` at a time; the operations one call each, home reads timed.
    ``progress(phase, n)`` is called as work is done (n items more).  To run
    the phases in several calls, pass the first call's result as ``resume``:
    deletes find the ids of earlier publishes there.
    """
    if isinstance(workload, (str, os.PathLike)):
        workload = RecordedWorkload(workload)
    result = resume if resume is not None else ReplayResult()
    clock, tick = time.perf_counter, progress or (lambda phase, n: None)
    # Loading phases count only the time inside the store calls, not the generator's.
    if "graph" in phases:
        spent = 0.0
        for pairs in _batches(iter(workload.graph()), batch):
            start = clock()
            store.follow_many(pairs)
            spent += clock() - start
            result.follows += len(pairs)
            tick("graph", len(pairs))
        result.seconds["graph"] = spent
    if "posts" in phases:
        spent = 0.0
        for items in _batches(iter(workload.posts()), batch):
            start = clock()
            events = store.publish_many(items)
            spent += clock() - start
            result.ids.extend(event.id for event in events)
            result.posts += len(items)
            tick("posts", len(items))
        result.seconds["posts"] = spent
    if "operations" in phases:
        start = clock()
        for op in workload.operations():
            _apply(op, store, result)
            kind = _KIND[type(op)]
            result.counts[kind] = result.counts.get(kind, 0) + 1
            tick("operations", 1)
        result.seconds["operations"] = clock() - start
    return result


def _apply(op: Operation, store: Any, result: ReplayResult) -> None:
    now = time.perf_counter_ns
    if type(op) is Home:
        max_id = None
        for _ in range(op.pages):
            start = now()
            page = store.home(op.sink, op.limit, max_id=max_id)
            result.home_ns.append(now() - start)
            if len(page) < op.limit or page[-1].id <= 1:
                break
            max_id = page[-1].id - 1  # max_id is inclusive: continue just below the oldest seen
    elif type(op) is Timeline:
        start = now()
        store.timeline(op.source, op.limit)
        result.timeline_ns.append(now() - start)
    elif type(op) is Publish:
        result.ids.append(store.publish(op.source, op.payload).id)
    elif type(op) is Follow:
        store.follow(op.sink, op.source)
    elif type(op) is Unfollow:
        store.unfollow(op.sink, op.source)
    else:
        assert type(op) is Delete, op  # the last kind of Operation
        store.delete(result.ids[op.publish])


# -------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="the JSON Lines file to write")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=200_000)
    parser.add_argument("--reads", type=int, default=50_000)
    parser.add_argument("--follows", "--mean-followees", dest="mean_followees", type=float, default=100)
    parser.add_argument("--seed", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    workload = Workload(
        users=args.users, posts=args.posts, reads=args.reads, mean_followees=args.mean_followees, seed=args.seed
    )
    lines = workload.write_jsonl(args.out)
    print(f"wrote {lines} lines to {args.out}")
    return 0
