"""Check a recorded history for G1, G2 and G3; ``twittercore verify HISTORY.jsonl ...``.

- **G1, source order**: in every stream a sink observed (one page, or all the
  batches of one tail subscription), each source's events appear in publish
  order, each at most once, and only events the sink should get (an event of a
  source it definitely did not follow is a *foreign event*, reported under G1).
- **G2, agreement**: no two observations (two sinks, or one sink at two
  reads) saw two events of different sources in opposite orders.
- **G3, no loss**: an acknowledged event is in every read that covers it: a
  page whose range includes it, read after the publish returned, by a sink
  that followed the source throughout the read; or a tail stream that
  delivered events on both sides of it, to a sink that followed the source
  throughout the publish.
- **global order** (reported, stronger than G2): one total order explains
  every observation.

Messages say "sink 3 ordered a before b": in sink 3's stream, ``a`` is older
than ``b`` (a page lists newest first, so there ``b`` came first).

The exact rules, and how uncertain cases (concurrent follows, deletes) are
skipped rather than guessed, are in ``docs/history-format.md``.  Passing
histories cost time linear in the observations: each stream is compared with
one candidate order (the ids, or the acknowledgement order for opaque ids);
only when that fails does the search for counterexamples start.

>>> import io
>>> from twittercore.checking.history import HistoryWriter
>>> buffer = io.StringIO()
>>> with HistoryWriter(buffer, clock=None) as h:
...     h.follow_many([(1, 7), (2, 7)])
...     h.publish_many([(7, 10), (7, 11)])
...     h.observe(1, [11, 10], limit=20)
...     h.observe(2, [10, 11], limit=20)
>>> report = verify([io.StringIO(buffer.getvalue())])
>>> report.holds["G1"], report.holds["G3"]
(False, True)
>>> print(report.violations["G1"][0])
G1 (order): sink 2 ordered event 11 before event 10, but source 7 published 10 first (<stream>:5)
"""

from __future__ import annotations

import argparse
import heapq
import json
import operator
import sys
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from typing import Any

from ..errors import Error
from .history import History, Observation, follow_state, load

__all__ = ["verify", "Report", "GUARANTEES", "follow_state"]

GUARANTEES = ("G1", "G2", "G3")
_INF = float("inf")


class Report:
    """The verdict: ``holds[g]`` per guarantee, up to ``limit`` example violations each."""

    def __init__(self, limit: int = 10) -> None:
        self.limit = limit
        self.violations: dict[str, list[str]] = {g: [] for g in (*GUARANTEES, "global")}
        self.counts: dict[str, int] = dict.fromkeys(self.violations, 0)
        self.stats: dict[str, Any] = {}
        self.notes: list[str] = []

    def add(self, guarantee: str, message: str) -> None:
        self.counts[guarantee] += 1
        if len(self.violations[guarantee]) < self.limit:
            self.violations[guarantee].append(message)

    @property
    def holds(self) -> dict[str, bool]:
        return {g: self.counts[g] == 0 for g in self.counts}

    @property
    def ok(self) -> bool:
        """G1, G2 and G3 all hold (the global order is reported, not required)."""
        return all(self.counts[g] == 0 for g in GUARANTEES)

    def to_dict(self) -> dict[str, Any]:
        """The verdict as plain data (``twittercore verify --json``)."""
        return {"ok": self.ok, "holds": self.holds, "violations": self.counts,
                "examples": {g: v for g, v in self.violations.items() if v},
                "stats": self.stats, "notes": self.notes}  # fmt: skip

    def format(self) -> str:
        names = {"G1": "G1 source order", "G2": "G2 agreement", "G3": "G3 no loss", "global": "one global order"}
        lines = []
        for g, name in names.items():
            n = self.counts[g]
            lines.append(f"{'✓' if n == 0 else '✗'} {name}" + (f": {n} violation(s)" if n else ""))
            lines.extend(f"    {message}" for message in self.violations[g])
        s = self.stats
        lines.append(
            f"  {s.get('observations', 0):,} reads, {s.get('observed', 0):,} observed ids, "
            f"{s.get('events', 0):,} acknowledged events, {s.get('seconds', 0):.2f} s"
        )
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


class _Checker:
    def __init__(self, h: History, report: Report) -> None:
        self.h, self.report = h, report
        self.tail_end: dict[int, Observation] = {}  # first batch of a tail stream -> its last batch
        rank, source = h.rank, h.source
        self.by_source: dict[int, list[int]] = {}  # source -> acknowledged events, by rank
        for e, s in enumerate(source):
            if s >= 0:
                self.by_source.setdefault(s, []).append(e)
        self.ranks: dict[int, list[int]] = {}
        for s, events in self.by_source.items():
            events.sort(key=rank.__getitem__)
            self.ranks[s] = [rank[e] for e in events]
        acks = sorted((h.ack[e], rank[e]) for e in range(len(source)) if source[e] >= 0)
        self.ack_times = [t for t, _ in acks]
        self.ack_max_rank, best = [], -_INF
        for _, r in acks:
            best = max(best, r)
            self.ack_max_rank.append(best)

    def name(self, node: int) -> str:
        return repr(self.h.nodes[node]) if node >= 0 else "?"

    def before(self, a: int, b: int) -> bool:
        """Is event ``a`` certainly ordered before event ``b``?"""
        h = self.h
        if h.ordered:
            return h.rank[a] < h.rank[b]
        if h.batch[a] == h.batch[b] >= 0:  # one publish_many: its items commit in list order
            return h.rank[a] < h.rank[b]
        return 0 <= h.ack[a] < h.ack0[b]

    def who(self, obs: Observation) -> str:
        return f"timeline of {self.name(obs.sink)}" if obs.kind == "timeline" else f"sink {self.name(obs.sink)}"

    # -------------------------------------------------------------- streams

    def streams(self) -> list[tuple[Observation, list[int]]]:
        """Pages and timelines alone; the batches of one tail subscription joined."""
        out, tails = [], {}
        for obs in self.h.observations:
            if obs.kind == "tail":
                tails.setdefault((obs.sink, obs.stream), []).append(obs)
            else:
                out.append((obs, obs.events))
        for batches in tails.values():
            batches.sort(key=lambda o: o.t)
            out.append((batches[0], [e for o in batches for e in o.events]))
            self.tail_end[id(batches[0])] = batches[-1]
        return out

    # ------------------------------------------------------------------ G1

    def g1(self, obs: Observation, events: list[int]) -> None:
        h, seen, last = self.h, set(), {}
        for e in events:
            if e in seen:
                self.report.add("G1", f"G1 (duplicate): {self.who(obs)} saw {h.describe(e)} twice ({obs.where})")
                continue
            seen.add(e)
            s = h.source[e]
            previous = last.get(s)
            if s >= 0 and previous is not None and self.before(e, previous):
                self.report.add(
                    "G1",
                    f"G1 (order): {self.who(obs)} ordered event {h.ids[previous]!r} before event {h.ids[e]!r}, "
                    f"but source {self.name(s)} published {h.ids[e]!r} first ({obs.where})",
                )
            last[s] = e

    def foreign(self, obs: Observation, e: int, why: str) -> None:
        self.report.add(
            "G1", f"G1 (foreign event): {self.who(obs)} saw {self.h.describe(e)} but {why} ({obs.where})"
        )

    # ------------------------------------------------------- G3 for pages

    def page_bounds(self, obs: Observation) -> tuple[Any, Any] | None:
        """Rank bounds ``(lo, hi)`` that hold every event the page had to show, or None to skip.

        The bounds are a superset of the page's range; :meth:`required` is exact.
        """
        h, events = self.h, obs.events
        full = obs.limit is None or len(events) >= obs.limit
        lo, hi = -_INF, None
        if obs.min_id is not None:
            lo = self.id_rank(obs.min_id, exclusive=True)
            if full and events:
                hi = h.rank[events[-1]]
        elif full and events:
            lo = h.rank[events[0]]
        elif obs.since_id is not None:
            lo = self.id_rank(obs.since_id, exclusive=True)
        if hi is None and obs.max_id is not None:
            hi = self.id_rank(obs.max_id, exclusive=-obs.max_exclusive)
        if lo is None or (obs.max_id is not None and hi is None):
            return None  # a bound names an event this history does not know
        if hi is None:  # "now": the newest event acknowledged before the read began
            n = bisect_left(self.ack_times, obs.t0)
            hi = self.ack_max_rank[n - 1] if n else -_INF
        return lo, hi

    def id_rank(self, id: Any, exclusive: int = 0) -> Any:
        """The rank of a bound given as an id, moved by ``exclusive`` (+1: exclusive lower
        bound, -1: exclusive upper bound); None if the history does not know it."""
        if self.h.ordered:
            return id + exclusive
        e = self.h.index.get(id)
        return None if e is None or self.h.source[e] < 0 else self.h.rank[e] + exclusive

    def required_in_page(self, obs: Observation, e: int) -> bool:
        h, events = self.h, obs.events
        if not 0 <= h.ack[e] < obs.t0 or h.deleted.get(e, _INF) <= obs.t:
            return False
        full = obs.limit is None or len(events) >= obs.limit
        bound = lambda id: h.index.get(id, -1)  # noqa: E731
        if obs.min_id is not None:
            low, low_inclusive = obs.min_id, False
        elif full and events:
            low, low_inclusive = events[0], True
        elif obs.since_id is not None:
            low, low_inclusive = obs.since_id, False
        else:
            low = None
        if low is not None:
            if h.ordered:
                low_rank = h.rank[low] if low_inclusive else low
                if h.rank[e] < low_rank or (not low_inclusive and h.rank[e] == low_rank):
                    return False
            else:
                b = low if low_inclusive else bound(low)
                if b < 0 or not (e == b and low_inclusive or self.before(b, e)):
                    return False
        if obs.min_id is not None and full and events:
            if e != events[-1] and not self.before(e, events[-1]):
                return False
        elif obs.max_id is not None:
            if h.ordered:
                if h.rank[e] > obs.max_id - obs.max_exclusive:
                    return False
            else:
                b = bound(obs.max_id)
                if b < 0 or not (e == b and not obs.max_exclusive or self.before(e, b)):
                    return False
        return True

    def pages(self, streams: list[tuple[Observation, list[int]]], clean: set[int]) -> None:
        h, rank, source = self.h, self.h.rank, self.h.source
        groups: dict[tuple[Any, ...], list[Observation]] = {}
        windows: dict[int, tuple[list[int], list[int]]] = {}
        for obs, _ in streams:
            if obs.kind == "tail":
                continue
            if obs.kind == "timeline":
                groups.setdefault(("timeline", obs.sink), []).append(obs)
                continue
            if obs.sink not in windows:  # change windows of this sink, by end, with suffix-min starts
                spans = sorted(  # batches share one change tuple: the set keeps one span each
                    {(c[1], c[0]) for changes in h.follows.get(obs.sink, {}).values() for c in changes}
                )
                starts, low = [], _INF
                for t, t0 in reversed(spans):
                    low = min(low, t0)
                    starts.append(low)
                windows[obs.sink] = ([t for t, _ in spans], starts[::-1])
            ends, starts = windows[obs.sink]
            k = bisect_left(ends, obs.t0)
            # Pages between the same two follow changes see the same sources.
            key = ("sink", obs.sink, k) if k == len(ends) or starts[k] > obs.t else ("solo", id(obs))
            groups.setdefault(key, []).append(obs)
        for key, members in groups.items():
            first = members[0]
            if key[0] == "timeline":
                followed = [first.sink]
            else:
                per_sink = h.follows.get(first.sink, {})
                followed = [s for s, ch in per_sink.items() if follow_state(ch, first.t0, first.t)]
            followed_set = set(followed)
            bounds = [self.page_bounds(obs) for obs in members]
            known = [b for b in bounds if b is not None]
            if not known:
                continue
            lo_all, hi_all = min(b[0] for b in known), max(b[1] for b in known)
            merged = []
            for s in followed:
                ranks = self.ranks.get(s)
                if ranks:
                    merged.extend(ranks[bisect_left(ranks, lo_all) : bisect_right(ranks, hi_all)])
            merged.sort()
            for obs, b in zip(members, bounds):
                events = obs.events if id(obs) in clean else list(dict.fromkeys(obs.events))
                sources = list(map(source.__getitem__, events))
                shown = sum(map(followed_set.__contains__, sources))
                if (
                    b is not None and shown == len(events) and id(obs) in clean
                    and (not events or b[0] <= rank[events[0]] and rank[events[-1]] <= b[1])
                ):
                    pass  # the common case, at C speed: all followed, sorted, inside the range
                else:
                    shown = self.scan_page(obs, key[0], events, followed_set, b)
                if b is None:
                    continue
                self.report.stats["reads_checked"] += 1
                if shown != bisect_right(merged, b[1]) - bisect_left(merged, b[0]):
                    self.missing_in_page(obs, followed, b, set(events))

    def scan_page(self, obs: Observation, kind: str, events: list[int], followed_set: set[int], b: Any) -> int:
        """Count the page's events of followed sources inside the range; report foreign ones."""
        h, rank, source = self.h, self.h.rank, self.h.source
        shown = 0
        for e in events:
            s = source[e]
            if s in followed_set:
                if b is not None and b[0] <= rank[e] <= b[1]:
                    shown += 1
            elif s >= 0:
                if kind == "timeline":
                    self.foreign(obs, e, f"it is the timeline of {self.name(obs.sink)}")
                elif follow_state(h.follows.get(obs.sink, {}).get(s), obs.t0, obs.t) is False:
                    self.foreign(obs, e, f"sink {self.name(obs.sink)} did not follow {self.name(s)} then")
        return shown

    def missing_in_page(self, obs: Observation, followed: list[int], b: tuple[Any, Any], shown: set[int]) -> None:
        for s in followed:
            ranks, events = self.ranks.get(s, []), self.by_source.get(s, [])
            for e in events[bisect_left(ranks, b[0]) : bisect_right(ranks, b[1])]:
                if e not in shown and self.required_in_page(obs, e):
                    self.report.add(
                        "G3",
                        f"G3 (missing): {self.who(obs)} read a page covering {self.h.describe(e)}, "
                        f"acknowledged before the read, but it was not there ({obs.where})",
                    )
                    return  # one counterexample per page is enough

    # -------------------------------------------------------- G3 for tails

    def tail(self, obs: Observation, events: list[int], clean: bool) -> None:
        h, rank, source = self.h, self.h.rank, self.h.source
        if not events:
            return
        last_batch = self.tail_end[id(obs)]
        per_sink = h.follows.get(obs.sink, {})
        if h.ordered and obs.after is not None:
            lo, lo_inclusive = obs.after, False
        else:
            lo, lo_inclusive = rank[events[0]], True
        hi = rank[events[-1]]
        distinct = events if clean else list(dict.fromkeys(events))
        shown = 0
        for e in distinct:
            s = source[e]
            if s < 0:
                continue
            changes = per_sink.get(s)
            if changes is None or follow_state(changes, h.ack0[e], h.ack[e]) is False:
                self.foreign(obs, e, f"sink {self.name(obs.sink)} did not follow {self.name(s)} when it was published")
            elif (lo < rank[e] or lo_inclusive and lo == rank[e]) and rank[e] <= hi:
                shown += 1
        candidates = 0
        for s in per_sink:
            ranks = self.ranks.get(s)
            if ranks:
                first = bisect_left(ranks, lo) if lo_inclusive else bisect_right(ranks, lo)
                candidates += bisect_right(ranks, hi) - first
        self.report.stats["reads_checked"] += 1
        if candidates == shown:
            return
        seen = set(distinct)
        for s, changes in per_sink.items():
            ranks, evs = self.ranks.get(s, []), self.by_source.get(s, [])
            first = bisect_left(ranks, lo) if lo_inclusive else bisect_right(ranks, lo)
            for e in evs[first : bisect_right(ranks, hi)]:
                if e in seen or h.deleted.get(e, _INF) <= last_batch.t:
                    continue
                if not h.ordered and not (self.before(events[0], e) and self.before(e, events[-1])):
                    continue
                if follow_state(changes, h.ack0[e], h.ack[e]):
                    self.report.add(
                        "G3",
                        f"G3 (missing): {self.who(obs)}'s tail delivered events before and after "
                        f"{h.describe(e)}, published while it followed {self.name(s)}, "
                        f"but never that one ({obs.where})",
                    )
                    return

    # ------------------------------------------------------- G2 and global

    def agreement(self, streams: list[tuple[Observation, list[int]]]) -> None:
        """Find a global order, or a cycle and pairwise disagreements (only called on failure).

        Kahn's topological sort of the observed precedences, smallest rank
        first; when it is stuck on a cycle, the earliest remaining event is
        taken anyway, which makes the resulting order a good candidate: only
        streams that disagree with it can hold a G2 counterexample.
        """
        h = self.h
        streams = [(obs, list(dict.fromkeys(events))) for obs, events in streams]  # repeats are G1's
        succ: dict[int, set[int]] = {}
        indegree: dict[int, int] = {}
        origin: dict[tuple[int, int], int] = {}
        for n, (_, events) in enumerate(streams):
            for x, y in zip(events, events[1:]):
                if y not in succ.setdefault(x, set()):
                    succ[x].add(y)
                    indegree[y] = indegree.get(y, 0) + 1
                    origin[(x, y)] = n
        by_rank = sorted(set(succ) | set(indegree), key=h.rank.__getitem__)
        heap = [(h.rank[e], e) for e in by_rank if not indegree.get(e)]
        heapq.heapify(heap)
        order: dict[int, int] = {}
        stuck, next_free = None, 0
        while len(order) < len(by_rank):
            if not heap:  # a cycle: break it at the earliest remaining event
                while by_rank[next_free] in order:
                    next_free += 1
                e = by_rank[next_free]
                stuck = e if stuck is None else stuck
                indegree[e] = 0
                heapq.heappush(heap, (h.rank[e], e))
            _, e = heapq.heappop(heap)
            if e in order:
                continue
            order[e] = len(order)
            for y in succ.get(e, ()):
                indegree[y] -= 1
                if indegree[y] == 0:
                    heapq.heappush(heap, (h.rank[y], y))
        if stuck is None:
            return  # one order explains every stream: G2 holds
        self.report.add("global", self.cycle(stuck, succ, origin, streams))
        self.disagreements(streams, order)

    def cycle(self, start: int, succ: dict[int, set[int]], origin: dict[tuple[int, int], int], streams: list) -> str:
        # Shortest path back to `start` by breadth-first search: the smallest cycle through it.
        parent, frontier = {start: None}, [start]
        while frontier:
            nxt = []
            for x in frontier:
                for y in succ.get(x, ()):
                    if y == start:
                        path = [x]
                        while parent[path[-1]] is not None:
                            path.append(parent[path[-1]])
                        path.reverse()
                        steps = [
                            f"{self.who(streams[origin[(a, b)]][0])} ordered {self.h.ids[a]!r} before {self.h.ids[b]!r}"
                            for a, b in zip(path, path[1:] + [start])
                        ]
                        return "no single order explains all reads: " + "; ".join(steps[:6])
                    if y not in parent:
                        parent[y] = x
                        nxt.append(y)
            frontier = nxt
        return f"no single order explains all reads (cycle through {self.h.describe(start)})"

    def disagreements(self, streams: list, order: dict[int, int]) -> None:
        h = self.h
        pairs: list[tuple[int, int, int]] = []  # (stream, x, y): x seen before y against the order
        for n, (_, events) in enumerate(streams):
            ranks = [order.get(e, -1) for e in events]
            if all(a < b for a, b in zip(ranks, ranks[1:])):
                continue  # agrees with the candidate order: no inverted pair here
            seen: list[tuple[int, int]] = []  # (order, event) of the events so far, sorted
            for y in events:
                oy = order.get(y, -1)
                at = bisect_right(seen, (oy, _INF))
                for _, x in seen[at : at + 50]:  # a few inverted partners per event are plenty
                    same = h.source[x] == h.source[y] >= 0
                    if not (same and (self.before(x, y) or self.before(y, x))):
                        pairs.append((n, x, y))  # same-source pairs with a known order are G1's
                insort(seen, (oy, y))
            if len(pairs) > 20_000:
                break
        wanted = {e for _, x, y in pairs for e in (x, y)}
        where: dict[int, list[int]] = {}
        for n, (_, events) in enumerate(streams):
            for e in events:
                if e in wanted:
                    where.setdefault(e, []).append(n)
        positions: dict[int, dict[int, int]] = {}
        reported = set()
        for n, x, y in pairs:
            if (x, y) in reported:
                continue
            for m in set(where.get(x, ())) & set(where.get(y, ())):
                if m == n:
                    continue
                if m not in positions:
                    positions[m] = {e: i for i, e in enumerate(streams[m][1])}
                if positions[m][x] < positions[m][y]:
                    continue  # m saw them in the same order as n
                reported.add((x, y))
                a, b = streams[n][0], streams[m][0]
                self.report.add(
                    "G2",
                    f"G2 (disagreement): {self.who(a)} ordered {h.describe(x)} before {h.describe(y)} "
                    f"({a.where}), {self.who(b)} the other way round ({b.where})",
                )
                break


def verify(sources: Iterable[Any] | History, *, ordered: bool | None = None, limit: int = 10) -> Report:
    """Load history files (paths or text streams, merged) or take a loaded History; check it."""
    started = time.perf_counter()
    h = sources if isinstance(sources, History) else load(sources, ordered=ordered)
    report = Report(limit)
    report.stats.update(reads_checked=0, events=sum(1 for s in h.source if s >= 0))
    checker = _Checker(h, report)
    streams = checker.streams()
    rank = h.rank
    clean: set[int] = set()
    unsorted: list[int] = []
    for n, (obs, events) in enumerate(streams):
        ranks = list(map(rank.__getitem__, events))
        if all(map(operator.lt, ranks, ranks[1:])):  # map and all run in C: this loop is the bulk
            clean.add(id(obs))  # sorted by the candidate order: G1 and G2 hold for this stream
        else:
            unsorted.append(n)
            checker.g1(obs, events)
    checker.pages(streams, clean)
    for obs, events in streams:
        if obs.kind == "tail":
            checker.tail(obs, events, id(obs) in clean)
    if unsorted:
        checker.agreement(streams)
    unknown = sum(1 for s in h.source if s < 0)
    if unknown:
        report.notes.append(f"{unknown} observed id(s) have no acknowledged publish; checked for agreement only")
    report.notes.extend(h.problems[:5])
    report.stats.update(
        observations=len(h.observations),
        observed=sum(len(o.events) for o in h.observations),
        ordered=h.ordered,
        seconds=time.perf_counter() - started,
    )
    return report


# -------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("histories", nargs="+", help="history files (JSON Lines); several are merged")
    ids = parser.add_mutually_exclusive_group()
    ids.add_argument("--opaque", dest="ordered", action="store_false", default=None,
                     help="treat ids as opaque even if they are ints (order from acknowledgements)")
    ids.add_argument("--ordered", dest="ordered", action="store_true",
                     help="ids are ints in commit order (the default when every id is an int)")
    parser.add_argument("--examples", type=int, default=10, help="violations to print per guarantee")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 when G1, G2 and G3 hold, 1 on a violation, 2 when the history cannot be read."""
    try:
        report = verify(args.histories, ordered=args.ordered, limit=args.examples)
    except (Error, OSError, KeyError, TypeError, ValueError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        print(f"twittercore verify: {what} (is every file a history written by HistoryWriter?)", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0 if report.ok else 1
