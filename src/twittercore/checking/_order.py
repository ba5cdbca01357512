"""Order checks: G1 within a stream, late inserts in tails, ids against real time, G2 and one global order.

Runtime complexity: :func:`scan` is O(n) for a stream of n events (running
maxima, since "certainly before" is an interval order or the id order);
:func:`ids_against_real_time` is O(P log P) for P publishes; :func:`agreement`
runs only when some stream is out of the reference order without its
repeats, and builds the precedence graph only over the rank spans where such
streams descend: O(S log n) for S streams plus the pairs inside those spans.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
from typing import Any

from ._context import INF, Context
from .history import Observation, follow_state

__all__ = ["scan", "ids_against_real_time", "agreement"]


def scan(ctx: Context, obs: Observation, events: list[int]) -> None:
    """Report duplicates and every event shown after one that certainly follows it.

    Same source: ``G1 (order)``.  In a tail stream any such pair is also a
    late insert behind the reader (``G3 (late insert)``), the store order being
    what a tail delivers in.  In a page, a pair of different sources inverted
    against real time is ``G2 (real-time order)``; pairs inverted only against
    the ids are left to :func:`agreement`.
    """
    h, report = ctx.h, ctx.report
    rank, source, ack, ack0, batch, item = h.rank, h.source, h.ack, h.ack0, h.batch, h.item
    tail, ordered = obs.kind == "tail", h.ordered
    seen: set[int] = set()
    latest_rt: tuple[Any, int] = (-INF, -1)  # the greatest ack0 seen so far, and its event
    latest_id: tuple[Any, int] = (-INF, -1)
    by_source: dict[int, tuple[Any, int, Any, int]] = {}  # source -> (max ack0, event, max rank, event)
    by_batch: dict[int, tuple[int, int]] = {}  # publish record -> (max item, event)
    per_sink = h.follows.get(obs.sink, {})
    for e in events:
        if e in seen:
            report.add("G1", f"G1 (duplicate): {ctx.who(obs)} saw {h.describe(e)} twice ({obs.where})")
            continue
        seen.add(e)
        s = source[e]
        if s < 0:
            continue  # no acknowledged publish: nothing orders it
        mine = by_source.get(s)
        same = cross = -1  # an earlier event that certainly follows e: same source, other source
        if mine is not None:
            if ack[e] < mine[0]:
                same = mine[1]
            elif ordered and rank[e] < mine[2]:
                same = mine[3]
        in_batch = by_batch.get(batch[e])
        if in_batch is not None and item[e] < in_batch[0]:
            if source[in_batch[1]] == s:
                same = in_batch[1] if same < 0 else same
            else:
                cross = in_batch[1]
        if same < 0 and cross < 0:
            if ack[e] < latest_rt[0]:
                cross = latest_rt[1]
            elif tail and ordered and rank[e] < latest_id[0]:
                cross = latest_id[1]
        culprit = same if same >= 0 else cross
        if culprit >= 0:
            if same >= 0:
                report.add("G1", f"G1 (order): {ctx.who(obs)} ordered event {h.ids[culprit]!r} before event "
                                 f"{h.ids[e]!r}, but source {ctx.name(s)} published {h.ids[e]!r} first ({obs.where})")  # fmt: skip
            if tail:
                if follow_state(per_sink.get(s), ack0[e], ack[e]) is not False:  # foreign events are reported as such
                    report.add("G3", f"G3 (late insert): {ctx.who(obs)}'s tail delivered {h.describe(e)} after "
                                     f"{h.describe(culprit)}, which the store ordered after it ({obs.where})")  # fmt: skip
            elif same < 0:
                report.add("G2", f"G2 (real-time order): {ctx.who(obs)} ordered {h.describe(culprit)} before "
                                 f"{h.describe(e)}, but {h.ids[e]!r} was acknowledged before {h.ids[culprit]!r} "
                                 f"was published ({obs.where})")  # fmt: skip
        if ack0[e] > latest_rt[0]:
            latest_rt = (ack0[e], e)
        if rank[e] > latest_id[0]:
            latest_id = (rank[e], e)
        if mine is None:
            by_source[s] = (ack0[e], e, rank[e], e)
        else:
            a, ae = (ack0[e], e) if ack0[e] > mine[0] else mine[:2]
            r, re = (rank[e], e) if rank[e] > mine[2] else mine[2:]
            by_source[s] = (a, ae, r, re)
        if in_batch is None or item[e] > in_batch[0]:
            by_batch[batch[e]] = (item[e], e)


def ids_against_real_time(ctx: Context) -> None:
    """Ordered histories: an event acknowledged before another's publish began must have the smaller id.

    Same source: ``G1 (order)``; different sources: ``G2 (real-time order)``
    (the store's one order disagrees with what every client saw happen).
    """
    h = ctx.h
    rank, ack, ack0, source, batch, item = h.rank, h.ack, h.ack0, h.source, h.batch, h.item
    acked = [e for e in range(len(source)) if source[e] >= 0]
    by_ack = sorted(acked, key=ack.__getitem__)
    times = [ack[e] for e in by_ack]
    best: list[int] = []  # best[i]: the event of highest id among by_ack[: i + 1]
    for e in by_ack:
        best.append(e if not best or rank[e] > rank[best[-1]] else best[-1])
    per_source: dict[int, tuple[list[Any], list[int]]] = {}
    for b in acked:
        n = bisect_left(times, ack0[b])
        if not n or rank[best[n - 1]] < rank[b]:
            continue
        s = source[b]
        if s not in per_source:  # only on a violation: the source's own publishes, by acknowledgement
            mine = [e for e in by_ack if source[e] == s]
            top: list[int] = []
            for e in mine:
                top.append(e if not top or rank[e] > rank[top[-1]] else top[-1])
            per_source[s] = ([ack[e] for e in mine], top)
        mine_times, top = per_source[s]
        m = bisect_left(mine_times, ack0[b])
        if m and rank[top[m - 1]] > rank[b]:
            a = top[m - 1]
            ctx.report.add("G1", f"G1 (order): source {ctx.name(s)}'s publish of {h.ids[a]!r} returned before "
                                 f"that of {h.ids[b]!r} began, but {h.ids[b]!r} got the smaller id")  # fmt: skip
        else:
            a = best[n - 1]
            ctx.report.add("G2", f"G2 (real-time order): the publish of {h.describe(a)} returned before that of "
                                 f"{h.describe(b)} began, but {h.ids[b]!r} got the smaller id")  # fmt: skip
    records: dict[int, list[int]] = {}
    for e in acked:
        records.setdefault(batch[e], []).append(e)
    for events in records.values():
        if len(events) > 1:
            events.sort(key=item.__getitem__)
            for a, b in zip(events, events[1:]):
                if rank[a] > rank[b]:
                    g = "G1" if source[a] == source[b] else "G2"
                    ctx.report.add(g, f"{g} (order): one publish_many listed {h.ids[a]!r} before {h.ids[b]!r}, "
                                      f"but {h.ids[b]!r} got the smaller id")  # fmt: skip


def agreement(ctx: Context, streams: list[tuple[Observation, list[int]]], tangled: list[int]) -> None:
    """Report pairwise disagreements (G2) and whether one global order exists (only called on failure).

    ``tangled`` lists the streams out of the reference order.  Every G2
    counterexample has one of its two streams out of that order, so
    disagreements are searched from the inverted pairs of those streams.
    A cycle of the precedence graph must descend somewhere, and only tangled
    streams descend: every cycle lies inside one of the merged rank spans of
    their descents.  So the graph is built over those spans only (the
    neighbouring pairs of all streams inside them: bisection into each sorted
    stream), which keeps a failing history within the memory and close to the
    time of a passing one.  Kahn's topological sort, smallest rank first,
    finds a cycle if there is one.
    """
    h = ctx.h
    rank = h.rank
    streams = list(streams)
    spans: list[tuple[Any, Any]] = []
    for n in tangled:
        obs, events = streams[n]
        events = list(dict.fromkeys(events))  # repeats are G1's
        streams[n] = (obs, events)
        spans.extend((rank[y], rank[x]) for x, y in zip(events, events[1:]) if rank[x] > rank[y])
    spans.sort()
    merged: list[list[Any]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    starts = [lo for lo, _ in merged]

    def span_of(r: Any) -> int:
        i = bisect_right(starts, r) - 1
        return i if i >= 0 and r <= merged[i][1] else -1

    succ: dict[int, list[int]] = {}
    indegree: dict[int, int] = {}
    tangled_set = set(tangled)
    key = rank.__getitem__
    for n, (_, events) in enumerate(streams):
        if n in tangled_set:
            pairs = [(x, y) for x, y in zip(events, events[1:]) if span_of(rank[x]) == span_of(rank[y]) >= 0]
        else:  # sorted: each span is one slice
            pairs = []
            for lo, hi in merged:
                a, b = bisect_left(events, lo, key=key), bisect_right(events, hi, key=key)
                pairs.extend(zip(events[a:b], events[a + 1 : b]))
        for x, y in pairs:
            succ.setdefault(x, []).append(y)
            indegree[y] = indegree.get(y, 0) + 1
            indegree.setdefault(x, 0)
    by_rank = sorted(indegree, key=key)
    heap = [(rank[e], e) for e in by_rank if not indegree[e]]
    heapq.heapify(heap)
    done: set[int] = set()
    stuck, next_free = None, 0
    while len(done) < len(by_rank):
        if not heap:  # a cycle: break it at the earliest remaining event
            while by_rank[next_free] in done:
                next_free += 1
            e = by_rank[next_free]
            stuck = e if stuck is None else stuck
            indegree[e] = 0
            heapq.heappush(heap, (rank[e], e))
        _, e = heapq.heappop(heap)
        if e in done:
            continue
        done.add(e)
        for y in succ.get(e, ()):
            indegree[y] -= 1
            if indegree[y] == 0:
                heapq.heappush(heap, (rank[y], y))
    if stuck is not None:
        ctx.report.add("global", _cycle(ctx, stuck, succ, streams))
    _disagreements(ctx, streams, tangled)


def _cycle(ctx: Context, start: int, succ: dict[int, list[int]], streams: list[tuple[Observation, list[int]]]) -> str:
    # Shortest path back to `start` by breadth-first search: the smallest cycle through it.
    h = ctx.h
    parent: dict[int, int | None] = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for x in frontier:
            for y in succ.get(x, ()):
                if y == start:
                    path = [x]
                    while parent[path[-1]] is not None:
                        path.append(parent[path[-1]])  # type: ignore[arg-type]
                    path.reverse()
                    steps = []
                    for a, b in list(zip(path, path[1:] + [start]))[:6]:
                        obs = next(o for o, events in streams if a in events and _follows(events, a, b))
                        steps.append(f"{ctx.who(obs)} ordered {h.ids[a]!r} before {h.ids[b]!r}")
                    return "no single order explains all reads: " + "; ".join(steps)
                if y not in parent:
                    parent[y] = x
                    nxt.append(y)
        frontier = nxt
    return f"no single order explains all reads (cycle through {h.describe(start)})"


def _follows(events: list[int], a: int, b: int) -> bool:
    i = events.index(a)
    return i + 1 < len(events) and events[i + 1] == b


def _disagreements(ctx: Context, streams: list[tuple[Observation, list[int]]], tangled: list[int]) -> None:
    h, rank = ctx.h, ctx.h.rank
    pairs: list[tuple[int, int, int]] = []  # (stream, x, y): x seen before y against the reference order
    for n in tangled:
        seen: list[tuple[Any, int]] = []  # (rank, event) of the events so far, sorted
        for y in streams[n][1]:
            ry = rank[y]
            at = bisect_right(seen, (ry, INF))
            for _, x in seen[at : at + 50]:  # a few inverted partners per event are plenty
                same = h.source[x] == h.source[y] >= 0
                if not (same and (ctx.before(x, y) or ctx.before(y, x))):
                    pairs.append((n, x, y))  # same-source pairs with a known order are G1's
            insort(seen, (ry, y))
        if len(pairs) > 20_000:
            break
    wanted = {e for _, x, y in pairs for e in (x, y)}
    where: dict[int, list[int]] = {}
    for n, (_, events) in enumerate(streams):
        if not wanted.isdisjoint(events):  # C speed: most streams hold none of them
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
            ctx.report.add(
                "G2",
                f"G2 (disagreement): {ctx.who(a)} ordered {h.describe(x)} before {h.describe(y)} "
                f"({a.where}), {ctx.who(b)} the other way round ({b.where})",
            )
            break
