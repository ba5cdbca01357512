"""Coverage checks: what a read had to show (G3), paging (G4), deletes and real time.

Runtime complexity: pages are grouped by the follow changes of their sink;
each group merges its sources' events in the groups' range once, and each
page is checked by counting (two binary searches) against what it showed, so
a passing history costs O(n log n) in the observed ids; only a page whose
count disagrees is enumerated (its range, per followed source).  Walks
(a page read with the previous page's oldest id as its bound) are found
through a dict and checked the same way.  Tails: O(k log n) per stream for k
sources, plus enumeration on a mismatch.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Any

from ._context import INF, Context
from .history import Observation, follow_state

__all__ = ["pages", "tail", "shown_in_time"]


# ------------------------------------------------------------- page ranges


def _lower(ctx: Context, obs: Observation) -> tuple[bool, Any]:
    """``(known, bound)``: the page's exclusive lower bound, the larger of since_id and min_id.

    ``bound`` is an id (ordered) or an event (opaque), None when unbounded;
    ``known`` is False when an opaque bound is not an acknowledged event, or
    since_id and min_id are both given and neither certainly follows the other.
    """
    values: list[Any] = [v for v in (obs.since_id, obs.min_id) if v is not None]
    if not values:
        return True, None
    if ctx.h.ordered:
        return True, max(values)
    events = [ctx.bound_event(v) for v in values]
    if min(events) < 0:
        return False, None
    a, b = events[0], events[-1]
    if a == b or ctx.before(a, b):
        return True, b
    if ctx.before(b, a):
        return True, a
    return False, None


def _upper(ctx: Context, obs: Observation) -> tuple[bool, Any]:
    """``(known, bound)``: max_id / before_id as an id (ordered) or an event (opaque), None when unbounded."""
    if obs.max_id is None:
        return True, None
    if ctx.h.ordered:
        return True, obs.max_id
    e = ctx.bound_event(obs.max_id)
    return e >= 0, (e if e >= 0 else None)


def page_bounds(ctx: Context, obs: Observation) -> tuple[Any, Any] | None:
    """Rank bounds ``[lo, hi]`` that hold every event the page had to show, or None to skip.

    The bounds are a superset of the page's range; :func:`required` is exact.
    With opaque ids an event certainly newer than one the page showed is
    above the lower bound too (the shown one is), so the range also reaches
    past the shown events' ranks; likewise below.
    """
    h, events = ctx.h, obs.events
    full = obs.limit is None or len(events) >= obs.limit
    known_lo, low = _lower(ctx, obs)
    known_hi, high = _upper(ctx, obs)
    shown = [] if h.ordered else [h.rank[e] for e in events if h.source[e] >= 0]
    lo: Any
    if full and events and obs.min_id is None:
        lo = h.rank[events[0]]
    elif obs.since_id is None and obs.min_id is None:
        lo = -INF
    else:
        options = ([low + 1 if h.ordered else h.rank[low] + 1] if known_lo else []) + (
            [min(shown) + 1] if shown else []
        )
        if not options:
            return None  # a bound names an event this history does not know, or is ambiguous
        lo = min(options)
    if full and events and obs.min_id is not None:  # the oldest `limit` above the lower bound
        hi = h.rank[events[-1]]
    elif obs.max_id is None:
        hi = ctx.now_rank(obs.t0)  # "now": the newest event acknowledged before the read began
    else:
        options = [(high if h.ordered else h.rank[high]) - obs.max_exclusive] if known_hi else []
        options += [max(shown) - 1] if shown else []
        if not options:
            return None
        hi = max(options)
    return lo, hi


def _witnesses(ctx: Context, obs: Observation) -> list[int]:
    """The page's acknowledged events not certainly outside one of its bounds (those G4 reports)."""
    h = ctx.h
    known_hi, high = _upper(ctx, obs)
    lows = [ctx.bound_event(v) for v in (obs.since_id, obs.min_id) if v is not None]
    out = []
    for s in obs.events:
        if h.source[s] < 0:
            continue
        if known_hi and high is not None and _above(ctx, s, high, obs.max_exclusive):
            continue
        if any(b >= 0 and _below(ctx, s, b, True) for b in lows):
            continue
        out.append(s)
    return out


def _witnesses_of(ctx: Context, obs: Observation) -> list[int]:
    found = ctx.witnesses.get(id(obs))
    if found is None:
        found = ctx.witnesses[id(obs)] = _witnesses(ctx, obs)
    return found


def _after_shown(ctx: Context, obs: Observation, e: int) -> bool:
    """Opaque ids: does ``e`` certainly follow an event the page rightly showed (so is above its lower bound)?"""
    return any(ctx.before(s, e) for s in _witnesses_of(ctx, obs))


def _before_shown(ctx: Context, obs: Observation, e: int) -> bool:
    return any(ctx.before(e, s) for s in _witnesses_of(ctx, obs))


def _above(ctx: Context, e: int, bound: Any, inclusive: bool) -> bool:
    """Is event ``e`` certainly above ``bound`` (an id when ordered, else an event)?"""
    if ctx.h.ordered:
        r = ctx.h.rank[e]
        above: bool = r >= bound if inclusive else r > bound
        return above
    return (inclusive and e == bound) or ctx.before(bound, e)


def _below(ctx: Context, e: int, bound: Any, inclusive: bool) -> bool:
    if ctx.h.ordered:
        r = ctx.h.rank[e]
        below: bool = r <= bound if inclusive else r < bound
        return below
    return (inclusive and e == bound) or ctx.before(e, bound)


def _in_range(ctx: Context, obs: Observation, e: int) -> bool:
    """Is ``e`` certainly inside the range of the page (its bounds and, when full, its ends)?"""
    h, events = ctx.h, obs.events
    full = obs.limit is None or len(events) >= obs.limit
    if full and events and obs.min_id is None:
        if not _above(ctx, e, events[0] if not h.ordered else h.rank[events[0]], True):
            return False
    elif obs.since_id is not None or obs.min_id is not None:
        known, low = _lower(ctx, obs)
        if not (known and _above(ctx, e, low, False)) and (h.ordered or not _after_shown(ctx, obs, e)):
            return False
    if full and events and obs.min_id is not None:
        if not _below(ctx, e, events[-1] if not h.ordered else h.rank[events[-1]], True):
            return False
    elif obs.max_id is not None:
        known, high = _upper(ctx, obs)
        if not (known and _below(ctx, e, high, not obs.max_exclusive)) and (
            h.ordered or not _before_shown(ctx, obs, e)
        ):
            return False
    return True


def required(ctx: Context, obs: Observation, e: int) -> bool:
    """Did the page have to show ``e`` (its source being followed throughout the read)?"""
    h = ctx.h
    if not 0 <= h.ack[e] < obs.t0 or h.deleted.get(e, INF) <= obs.t:
        return False
    return _in_range(ctx, obs, e)


# ------------------------------------------------------------------- pages


class _Page:
    """What the page pass learnt about one read: its bounds and followed sources."""

    __slots__ = ("obs", "bounds", "followed", "group", "inside")

    def __init__(self, obs: Observation, bounds: Any, followed: set[int], group: Any) -> None:
        self.obs, self.bounds, self.followed, self.group = obs, bounds, followed, group
        self.inside = -1  # with the fast path: every event is followed, distinct and in bounds (this many)


def pages(ctx: Context, reads: list[Observation], clean: set[int]) -> None:
    """G3 for pages and timelines, G4 bounds and walks."""
    h, rank, source = ctx.h, ctx.h.rank, ctx.h.source
    groups: dict[tuple[Any, ...], list[Observation]] = {}
    windows: dict[int, tuple[list[Any], list[Any]]] = {}
    for obs in reads:
        if obs.kind == "timeline":
            groups.setdefault(("timeline", obs.sink), []).append(obs)
            continue
        if obs.sink not in windows:  # change windows of this sink, by end, with suffix-min starts
            spans = sorted(  # batches share one change tuple: the set keeps one span each
                {(c[1], c[0]) for changes in h.follows.get(obs.sink, {}).values() for c in changes}
            )
            starts, low = [], INF
            for _t, t0 in reversed(spans):
                low = min(low, t0)
                starts.append(low)
            windows[obs.sink] = ([t for t, _ in spans], starts[::-1])
        ends, starts = windows[obs.sink]
        k = bisect_left(ends, obs.t0)
        # Pages between the same two follow changes see the same sources.
        key = ("sink", obs.sink, k) if k == len(ends) or starts[k] > obs.t else ("solo", id(obs))
        groups.setdefault(key, []).append(obs)
    info: dict[int, _Page] = {}
    for key, members in groups.items():
        first = members[0]
        if key[0] == "timeline":
            followed = [first.sink]
        else:
            per_sink = h.follows.get(first.sink, {})
            followed = [s for s, ch in per_sink.items() if follow_state(ch, first.t0, first.t)]
        followed_set = set(followed)
        bounds = [page_bounds(ctx, obs) for obs in members]
        known = [b for b in bounds if b is not None]
        merged: list[Any] = []
        if known:
            lo_all, hi_all = min(b[0] for b in known), max(b[1] for b in known)
            for s in followed:
                ranks = ctx.ranks.get(s)
                if ranks:
                    merged.extend(ranks[bisect_left(ranks, lo_all) : bisect_right(ranks, hi_all)])
            merged.sort()
        for obs, b in zip(members, bounds):
            info[id(obs)] = page = _Page(obs, b, followed_set, (key, merged))
            _bounds(ctx, obs, id(obs) in clean)
            events = obs.events if id(obs) in clean else list(dict.fromkeys(obs.events))
            sources = list(map(source.__getitem__, events))
            shown = sum(map(followed_set.__contains__, sources))
            if (
                b is not None
                and shown == len(events)
                and id(obs) in clean
                and (not events or b[0] <= rank[events[0]] and rank[events[-1]] <= b[1])
            ):
                page.inside = shown  # the common case, at C speed: all followed, sorted, inside the range
            else:
                shown = _scan_page(ctx, obs, key[0], events, followed_set, b)
            if b is None:
                continue
            ctx.report.stats["reads_checked"] += 1
            if shown != bisect_right(merged, b[1]) - bisect_left(merged, b[0]):
                _missing(ctx, obs, followed, b, set(events))
    _walks(ctx, reads, info)


def _scan_page(ctx: Context, obs: Observation, kind: str, events: list[int], followed: set[int], b: Any) -> int:
    """Count the page's events of followed sources inside the range; report foreign ones."""
    h, rank, source = ctx.h, ctx.h.rank, ctx.h.source
    shown = 0
    for e in events:
        s = source[e]
        if s in followed:
            if b is not None and b[0] <= rank[e] <= b[1]:
                shown += 1
        elif s >= 0:
            if kind == "timeline":
                _foreign(ctx, obs, e, f"it is the timeline of {ctx.name(obs.sink)}")
            elif follow_state(h.follows.get(obs.sink, {}).get(s), obs.t0, obs.t) is False:
                _foreign(ctx, obs, e, f"sink {ctx.name(obs.sink)} did not follow {ctx.name(s)} then")
    return shown


def _foreign(ctx: Context, obs: Observation, e: int, why: str) -> None:
    ctx.report.add("G1", f"G1 (foreign event): {ctx.who(obs)} saw {ctx.h.describe(e)} but {why} ({obs.where})")


def _missing(ctx: Context, obs: Observation, followed: list[int], b: tuple[Any, Any], shown: set[int]) -> None:
    for s in followed:
        ranks, events = ctx.ranks.get(s, []), ctx.by_source.get(s, [])
        for e in events[bisect_left(ranks, b[0]) : bisect_right(ranks, b[1])]:
            if e not in shown and required(ctx, obs, e):
                ctx.report.add(
                    "G3",
                    f"G3 (missing): {ctx.who(obs)} read a page covering {ctx.h.describe(e)}, "
                    f"acknowledged before the read, but it was not there ({obs.where})",
                )
                return  # one counterexample per page is enough


def _bounds(ctx: Context, obs: Observation, clean: bool) -> None:
    """G4: every id of a page lies within its bounds (all of them: since_id and min_id both apply)."""
    events, h = obs.events, ctx.h
    if obs.limit is not None and len(events) > obs.limit and len(set(events)) > obs.limit:  # repeats are G1's
        ctx.report.add("G4", f"G4 (bounds): {ctx.who(obs)} read a page of {len(events)} events with "
                             f"limit={obs.limit} ({obs.where})")  # fmt: skip
    if not events or (obs.max_id is None and obs.since_id is None and obs.min_id is None):
        return
    if clean and h.ordered:  # sorted int ids: compare the ends with the bounds, no per-event work
        lowest, highest = h.rank[events[0]], h.rank[events[-1]]
        if (
            (obs.max_id is None or highest < obs.max_id + (not obs.max_exclusive))
            and (obs.since_id is None or lowest > obs.since_id)
            and (obs.min_id is None or lowest > obs.min_id)
        ):
            return
    checks: list[tuple[str, Any, Callable[[int], bool]]] = []  # (name, bound, keep): keep(e) says e respects the bound
    if obs.max_id is not None:
        e = obs.max_id if h.ordered else ctx.bound_event(obs.max_id)
        if h.ordered or e >= 0:
            name = "before_id" if obs.max_exclusive else "max_id"
            exclusive = obs.max_exclusive

            def under(x: int, b: Any = e, x_: bool = exclusive) -> bool:
                return not _above(ctx, x, b, x_)

            checks.append((name, obs.max_id, under))
    for name in ("since_id", "min_id"):
        value = getattr(obs, name)
        if value is not None:
            e = value if h.ordered else ctx.bound_event(value)
            if h.ordered or e >= 0:

                def over(x: int, b: Any = e) -> bool:
                    return not _below(ctx, x, b, True)

                checks.append((name, value, over))
    if not checks:
        return
    # Sorted ordered pages: only their ends can be outside.
    candidates = [events[0], events[-1]] if clean and h.ordered else events
    for name, value, keep in checks:
        for x in candidates:
            if h.source[x] < 0 and not h.ordered:
                continue
            if not keep(x):
                ctx.report.add("G4", f"G4 (bounds): {ctx.who(obs)} read a page with {name}={value!r} that holds "
                                     f"{h.describe(x)}, outside it ({obs.where})")  # fmt: skip
                break


def _walk_key(ctx: Context, obs: Observation) -> Any:
    """The oldest id a previous page of the same walk ended at, or None if ``obs`` continues none."""
    if obs.max_id is None or obs.min_id is not None:
        return None
    if obs.max_exclusive:
        return obs.max_id
    return obs.max_id + 1 if ctx.h.ordered else None  # opaque inclusive bounds repeat by design


def _walks(ctx: Context, reads: list[Observation], info: dict[int, _Page]) -> None:
    """G4: consecutive pages of one walk neither repeat nor skip an event that existed at the first read."""
    h, rank = ctx.h, ctx.h.rank
    ends: dict[tuple[Any, ...], list[Observation]] = {}  # (kind, sink, oldest id shown) -> pages by t
    for obs in reads:
        if obs.events and obs.min_id is None:
            ends.setdefault((obs.kind, obs.sink, h.ids[obs.events[0]]), []).append(obs)
    steps = 0
    for second in reads:
        key = _walk_key(ctx, second)
        if key is None:
            continue
        previous = ends.get((second.kind, second.sink, key))
        if not previous:
            continue
        if not h.ordered and second.events:
            # Every page that ended at this id showed its other events as newer than it: none of
            # them may appear below it (ordered ids: the bounds check compares the numbers).
            _above_the_end(ctx, second, previous)
        if len(previous) == 1:
            first = previous[0]
            if first.t >= second.t0:
                continue  # it had not returned when this one began
        else:
            earlier = [o for o in previous if o.t < second.t0]
            if not earlier:
                continue
            first = max(earlier, key=lambda o: o.t)  # the latest that returned before this one began
        steps += 1
        p1, p2 = info[id(first)], info[id(second)]
        if h.ordered and p2.inside >= 0 and (not second.events or rank[second.events[-1]] < rank[first.events[0]]):
            one = None  # sorted, in bounds, all older than the first page: no repeat is possible
        else:
            one = set(first.events)
            if not one.isdisjoint(second.events):
                again = next(e for e in second.events if e in one)
                ctx.report.add("G4", f"G4 (repeat): {ctx.who(second)} paged on from the page at {first.where} and "
                                     f"saw {h.describe(again)} again ({second.where})")  # fmt: skip
        _skips(ctx, first, second, p1, p2, one)
    ctx.report.stats["walk_steps"] += steps


def _above_the_end(ctx: Context, second: Observation, previous: list[Observation]) -> None:
    h = ctx.h
    for other in previous:
        newer = set(other.events[1:])
        if not newer.isdisjoint(second.events):
            e = next(x for x in second.events if x in newer)
            ctx.report.add("G4", f"G4 (bounds): {ctx.who(second)} read a page with before_id={h.ids[other.events[0]]!r} "
                                 f"that holds {h.describe(e)}, which the page at {other.where} showed as newer "
                                 f"than {h.ids[other.events[0]]!r} ({second.where})")  # fmt: skip
            return


def _skips(ctx: Context, first: Observation, second: Observation, p1: _Page, p2: _Page, one: set[int] | None) -> None:
    """Report an event both pages of a walk step owed together, though neither alone (that is G3)."""
    h, rank = ctx.h, ctx.h.rank
    if p1.bounds is None or p2.bounds is None:
        return
    lo, hi = p2.bounds[0], p1.bounds[1]
    shown: set[int] | None = None
    if p1.group[0] == p2.group[0] and p1.group[0][0] != "solo":
        followed = p1.followed  # no follow change between the two reads
        merged = p1.group[1]
        count = bisect_right(merged, hi) - bisect_left(merged, lo)
        if p1.inside >= 0 and p2.inside >= 0 and p1.bounds[0] >= lo and p2.bounds[1] <= hi:
            # Both pages lie inside the walk's range: their counts add up, less the repeats.
            repeats = 0 if one is None else len(one.intersection(second.events))
            visible = p1.inside + p2.inside - repeats
        else:
            shown = set(first.events).union(second.events)
            visible = sum(1 for e in shown if h.source[e] in followed and lo <= rank[e] <= hi)
        if count == visible:
            return
    elif first.kind == "timeline":
        followed = {first.sink}
    else:
        per_sink = h.follows.get(first.sink, {})
        followed = {s for s, ch in per_sink.items() if follow_state(ch, first.t0, second.t)}
    if shown is None:
        shown = set(first.events).union(second.events)
    for s in followed:
        ranks, events = ctx.ranks.get(s, []), ctx.by_source.get(s, [])
        for e in events[bisect_left(ranks, lo) : bisect_right(ranks, hi)]:
            if e in shown or not 0 <= h.ack[e] < first.t0 or h.deleted.get(e, INF) <= second.t:
                continue
            if required(ctx, first, e) or required(ctx, second, e):
                continue  # one page alone owed it: G3 reports it
            if _in_walk(ctx, first, second, e):
                ctx.report.add("G4", f"G4 (skip): {ctx.who(second)} paged on from the page at {first.where} but "
                                     f"neither page showed {h.describe(e)}, acknowledged before the first "
                                     f"({second.where})")  # fmt: skip
                return


def _in_walk(ctx: Context, first: Observation, second: Observation, e: int) -> bool:
    """Is ``e`` certainly inside the union of the two pages' ranges?"""
    h, events = ctx.h, second.events
    full = second.limit is None or len(events) >= second.limit
    if full and events:
        if not _above(ctx, e, events[0] if not h.ordered else h.rank[events[0]], True):
            return False
    else:
        known, low = _lower(ctx, second)
        if not (known and (low is None or _above(ctx, e, low, False))) and (
            h.ordered or not _after_shown(ctx, second, e)
        ):
            return False
    known, high = _upper(ctx, first)
    if known and (high is None or _below(ctx, e, high, not first.max_exclusive)):
        return True
    return not h.ordered and _before_shown(ctx, first, e)


# ------------------------------------------------------------------- tails


def tail(ctx: Context, obs: Observation, events: list[int], clean: bool) -> None:
    """G3 for one tail stream: every event of a source followed when it was published, between
    the stream's start and its highest delivery, was delivered; foreign deliveries are G1's."""
    h, rank, source, ack, ack0 = ctx.h, ctx.h.rank, ctx.h.source, ctx.h.ack, ctx.h.ack0
    delivered = [e for e in events if source[e] >= 0]
    if not delivered:
        return
    last_batch = ctx.tail_end[id(obs)]
    per_sink = h.follows.get(obs.sink, {})
    ranks = list(map(rank.__getitem__, delivered))
    if h.ordered and obs.after is not None:
        lo: Any = obs.after + 1
    else:
        lo = min(ranks) + (0 if h.ordered else 1)
    hi = max(ranks)  # the highest delivery, not the last: a late insert must not hide a loss
    latest_start = max(map(ack0.__getitem__, delivered))
    earliest_end = min(map(ack.__getitem__, delivered))
    distinct = delivered if clean else list(dict.fromkeys(delivered))
    shown = 0
    for e in distinct:
        s = source[e]
        if follow_state(per_sink.get(s), ack0[e], ack[e]) is False:
            _foreign(ctx, obs, e, f"sink {ctx.name(obs.sink)} did not follow {ctx.name(s)} when it was published")
        elif lo <= rank[e] <= hi:
            shown += 1
    candidates = 0
    for s in per_sink:
        rs = ctx.ranks.get(s)
        if rs:
            candidates += bisect_right(rs, hi) - bisect_left(rs, lo)
    ctx.report.stats["reads_checked"] += 1
    if candidates == shown:
        return
    seen = set(distinct)
    items: dict[int, tuple[Any, Any]] = {}  # publish record -> (lowest, highest) item delivered
    for d in distinct:
        low, high = items.get(h.batch[d], (INF, -INF))
        items[h.batch[d]] = (min(low, h.item[d]), max(high, h.item[d]))
    for s, changes in per_sink.items():
        rs, evs = ctx.ranks.get(s, []), ctx.by_source.get(s, [])
        for e in evs[bisect_left(rs, lo) : bisect_right(rs, hi)]:
            if e in seen or h.deleted.get(e, INF) <= last_batch.t:
                continue
            if not h.ordered:
                # Between two deliveries in real time: after one (so after the start), before another.
                low, high = items.get(h.batch[e], (INF, -INF))
                if not (earliest_end < ack0[e] or low < h.item[e]) or not (ack[e] < latest_start or h.item[e] < high):
                    continue
            if follow_state(changes, ack0[e], ack[e]):
                ctx.report.add(
                    "G3",
                    f"G3 (missing): {ctx.who(obs)}'s tail delivered events before and after "
                    f"{h.describe(e)}, published while it followed {ctx.name(s)}, "
                    f"but never that one ({obs.where})",
                )
                return


# ------------------------------------------------------- deletes, real time


def shown_in_time(ctx: Context, observations: list[Observation]) -> None:
    """No read shows an event before its publish began; no page shows one after its delete returned.

    Tails are exempt from the delete rule: a stream may deliver an event
    whose delete raced its delivery, and sends a deletion notice after it.
    """
    h, report, ack0 = ctx.h, ctx.report, ctx.h.ack0
    gone = h.deleted_done
    gone_set = set(gone)
    for obs in observations:
        events = obs.events
        if not events:
            continue
        if max(map(ack0.__getitem__, events)) > obs.t:
            for e in events:
                if ack0[e] > obs.t:
                    report.add("realtime", f"realtime (shown before publish): {ctx.who(obs)}'s read returned "
                                           f"before the publish of {h.describe(e)} began ({obs.where})")  # fmt: skip
                    break
        if obs.kind != "tail" and gone_set and not gone_set.isdisjoint(events):
            for e in events:
                if gone.get(e, INF) < obs.t0:
                    report.add("deleted", f"deleted (shown after delete): {ctx.who(obs)} read {h.describe(e)} "
                                          f"after its delete returned ({obs.where})")  # fmt: skip
                    break
