"""A simulated correct store driven by concurrent clients, written as a timed history.

Independent of twittercore's own store code: the verifier is judged against
a second, tiny model of the guarantees.  Every operation has an interval
``[t0, t]`` on one clock and takes effect at a commit point strictly inside
it; commits get increasing store positions (ids), reads see the state at their
commit point (one snapshot), tails deliver in id order the events whose
source the sink followed when they committed.  Clients run one operation at a
time, so operations of different clients overlap freely.

Ids are recorded as ints (sparse, increasing) or as opaque strings whose
order means nothing, and bounds as the history format wants them
(``max_id`` inclusive as twittercore's, ``before_id`` exclusive as Mastodon's).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Op:
    client: int
    kind: str
    t0: int
    t: int
    commit: int
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Simulation:
    records: list[dict[str, Any]]
    opaque: bool
    # internals the fault planters use
    followers_at: dict[int, frozenset[int]]  # store id -> sinks following its source at commit
    source_of: dict[int, int]  # store id -> source
    window: dict[int, tuple[int, int]]  # store id -> (t0, t) of its publish
    deleted_done: dict[int, int]  # store id -> when its delete returned
    name: dict[int, Any]  # store id -> recorded id

    def text(self) -> str:
        return "".join(json.dumps(r) + "\n" for r in self.records)


def simulate(seed: int, *, opaque: bool, clients: int = 4, ops: int = 160, users: int = 6) -> Simulation:
    rng = random.Random(seed)
    token = {}  # store id -> opaque string

    def name(id: int) -> Any:
        if not opaque:
            return id
        if id not in token:
            token[id] = f"{rng.getrandbits(32):08x}"  # random: string order says nothing
        return token[id]

    # 1. each client's operations, with overlapping intervals
    plan: list[Op] = []
    clock = [1 + rng.randrange(5) for _ in range(clients)]
    tails: dict[int, str] = {}
    walks: dict[int, Op] = {}
    for n in range(ops):
        c = rng.randrange(clients)
        t0 = clock[c] + rng.randrange(1, 4)
        t = t0 + rng.randrange(2, 30)  # long calls: plenty of overlap
        commit = rng.randrange(t0 + 1, t) * 1000 + n  # strictly inside, all distinct
        clock[c] = t
        r = rng.random()
        sink, source = rng.randrange(1, users + 1), rng.randrange(1, users + 1)
        if c in tails and r < 0.25:
            op = Op(c, "tail", t0, t, commit, {"sink": tails[c][0], "stream": tails[c][1]})
        elif c in walks and r < 0.45:
            op = Op(c, "next", t0, t, commit, {"first": walks.pop(c)})
        elif r < 0.12:
            op = Op(c, "follow", t0, t, commit, {"sink": sink, "source": source})
        elif r < 0.17:
            op = Op(c, "unfollow", t0, t, commit, {"sink": sink, "source": source})
        elif r < 0.45:
            op = Op(c, "publish", t0, t, commit, {"source": source, "count": 1 if rng.random() < 0.8 else 3})
        elif r < 0.50:
            op = Op(c, "delete", t0, t, commit)
        elif r < 0.56 and c not in tails:
            tails[c] = (sink, f"c{c}-{n}")
            op = Op(c, "open", t0, t, commit, {"sink": sink, "stream": tails[c][1]})
        else:
            limit = rng.choice([2, 3, 5, 20])
            kind = "timeline" if rng.random() < 0.2 else "page"
            bounds = rng.choice(["none", "none", "since", "min", "both", "max"])
            op = Op(c, kind, t0, t, commit, {"sink": sink, "limit": limit, "bounds": bounds})
            if rng.random() < 0.5:
                walks[c] = op
        plan.append(op)
    plan.sort(key=lambda o: o.commit)

    # 2. apply in commit order
    follows: set[tuple[int, int]] = set()
    live: dict[int, int] = {}  # store id -> source
    all_ids: list[int] = []
    sim = Simulation([], opaque, {}, {}, {}, {}, {})
    results: dict[int, list[int]] = {}  # id(op) -> page shown (newest first), for walks
    cursors: dict[str, int] = {}
    last = 0
    out: list[tuple[int, dict[str, Any]]] = []

    def emit(op: Op, record: dict[str, Any]) -> None:
        record["t0"], record["t"] = op.t0, op.t
        out.append((op.t, record))

    def page(sink: int, kind: str, limit: int, lo: int, hi: int, oldest: bool) -> list[int]:
        sources = {sink} if kind == "timeline" else {s for k, s in follows if k == sink}
        inside = [i for i in all_ids if i in live and live[i] in sources and lo < i <= hi]
        return inside[:limit][::-1] if oldest else inside[::-1][:limit]

    for sink in range(1, users + 1):  # a starting graph, before any client runs
        for source in rng.sample(range(1, users + 1), users // 2):
            if source != sink:
                follows.add((sink, source))
                out.append((0, {"op": "follow", "sink": sink, "source": source, "t0": 0, "t": 0}))
    for op in plan:
        a = op.args
        if op.kind in ("follow", "unfollow"):
            if a["sink"] == a["source"]:
                continue
            (follows.add if op.kind == "follow" else follows.discard)((a["sink"], a["source"]))
            emit(op, {"op": op.kind, "sink": a["sink"], "source": a["source"]})
        elif op.kind == "publish":
            items = []
            for _ in range(a["count"]):
                last += rng.randrange(1, 3)  # sparse ids, as the store's
                live[last] = a["source"]
                all_ids.append(last)
                sim.followers_at[last] = frozenset(k for k, s in follows if s == a["source"])
                sim.source_of[last], sim.window[last] = a["source"], (op.t0, op.t)
                items.append([a["source"], name(last)])
            if len(items) == 1:
                emit(op, {"op": "publish", "source": items[0][0], "id": items[0][1]})
            else:
                emit(op, {"op": "publish", "items": items})
        elif op.kind == "delete":
            if not live:
                continue
            victim = rng.choice(sorted(live))
            del live[victim]
            sim.deleted_done[victim] = op.t
            emit(op, {"op": "delete", "id": name(victim)})
        elif op.kind in ("page", "timeline"):
            lo, hi, oldest, record = 0, 1 << 62, False, {}
            visible = [i for i in all_ids if i in live]
            pick = (lambda visible=visible: rng.choice(visible)) if visible else None
            if a["bounds"] in ("since", "both") and pick:
                b = pick()
                lo, record["since_id"] = b, name(b)
            if a["bounds"] in ("min", "both") and pick:
                b = pick()
                lo, oldest, record["min_id"] = max(lo, b), True, name(b)
            if a["bounds"] == "max" and pick:
                b = pick()
                if opaque or rng.random() < 0.5:
                    hi, record["before_id"] = b - 1, name(b)
                else:
                    hi, record["max_id"] = b, b
            shown = page(a["sink"], op.kind, a["limit"], lo, hi, oldest)
            results[id(op)] = shown
            emit(
                op,
                {
                    "op": "observe",
                    "kind": op.kind,
                    "sink": a["sink"],
                    "ids": [name(i) for i in shown],
                    "limit": a["limit"],
                    **record,
                },
            )
        elif op.kind == "next":
            first = a["first"]
            shown1 = results.get(id(first))
            if not shown1 or first.args["bounds"] in ("min", "both"):
                continue
            b = shown1[-1]  # the previous page's oldest: the next page is strictly older
            fa = first.args
            shown = page(fa["sink"], first.kind, fa["limit"], 0, b - 1, False)
            bound = {"before_id": name(b)} if opaque or rng.random() < 0.5 else {"max_id": b - 1}
            emit(
                op,
                {
                    "op": "observe",
                    "kind": first.kind,
                    "sink": fa["sink"],
                    "ids": [name(i) for i in shown],
                    "limit": fa["limit"],
                    **bound,
                },
            )
        elif op.kind == "open":
            cursors[a["stream"]] = last
        elif op.kind == "tail":
            if a["stream"] not in cursors:
                continue
            after = cursors[a["stream"]]
            got = [i for i in all_ids if after < i <= last and i in live and a["sink"] in sim.followers_at[i]]
            cursors[a["stream"]] = last
            record = {
                "op": "observe",
                "kind": "tail",
                "sink": a["sink"],
                "ids": [name(i) for i in got],
                "stream": a["stream"],
            }
            if not opaque and a["stream"] not in results:
                record["after"] = after
            results[a["stream"]] = got
            emit(op, record)
    out.sort(key=lambda pair: pair[0])
    # Writers of several threads interleave: lines are not in time order.
    for i in range(len(out) - 1):
        if rng.random() < 0.3:
            out[i], out[i + 1] = out[i + 1], out[i]
    sim.records = [{"format": "twittercore-history", "version": 1}] + [r for _, r in out]
    sim.name = {i: name(i) for i in all_ids}
    return sim
