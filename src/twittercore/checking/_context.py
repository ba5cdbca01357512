"""What every check of :mod:`twittercore.checking.verify` shares: the verdict and the orders.

Two relations order events:

- the **reference order** ``rank``: the ids in ordered histories (twittercore's
  commit order), the acknowledgement order otherwise.  It is a total order
  used for fast paths and candidate ranges;
- **certainly before** (:meth:`Context.before`): what a correct store must
  respect.  In ordered histories the id order; in every history the
  real-time interval order (:meth:`Context.before_rt`): ``a`` precedes ``b``
  when ``a``'s publish returned before ``b``'s began, or both are items of one
  ``publish`` record and ``a`` comes first.  An interval order is transitive
  (``t(a) < t0(b) <= t(b) < t0(c)``), so checking a stream against it needs
  no chaining through neighbours.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from .history import History, Observation

__all__ = ["Report", "Context", "GUARANTEES", "NAMES", "INF"]

INF = float("inf")

#: Report keys that must hold for a history to pass, and their headings.
GUARANTEES = ("G1", "G2", "G3", "G4", "deleted", "realtime")
NAMES = {
    "G1": "G1 source order",
    "G2": "G2 agreement",
    "G3": "G3 no loss",
    "G4": "G4 paging",
    "deleted": "deleted events stay deleted",
    "realtime": "no event before its publish",
    "global": "one global order",
}


class Report:
    """The verdict: ``holds[g]`` per guarantee, up to ``limit`` example violations each."""

    def __init__(self, limit: int = 10) -> None:
        self.limit = limit
        self.violations: dict[str, list[str]] = {g: [] for g in NAMES}
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
        """Every guarantee holds (the global order is reported, not required)."""
        return all(self.counts[g] == 0 for g in GUARANTEES)

    def to_dict(self) -> dict[str, Any]:
        """The verdict as plain data (``twittercore verify --json``)."""
        return {"ok": self.ok, "holds": self.holds, "violations": self.counts,
                "examples": {g: v for g, v in self.violations.items() if v},
                "stats": self.stats, "notes": self.notes}  # fmt: skip

    def format(self) -> str:
        lines = []
        for g, name in NAMES.items():
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


class Context:
    """A loaded history with the indexes the checks share, and the report they fill."""

    def __init__(self, h: History, report: Report) -> None:
        self.h, self.report = h, report
        rank, source = h.rank, h.source
        self.by_source: dict[int, list[int]] = {}  # source -> acknowledged events, by rank
        for e, s in enumerate(source):
            if s >= 0:
                self.by_source.setdefault(s, []).append(e)
        self.ranks: dict[int, list[Any]] = {}  # source -> the ranks of by_source[source]
        for s, events in self.by_source.items():
            events.sort(key=rank.__getitem__)
            self.ranks[s] = [rank[e] for e in events]
        acks = sorted((h.ack[e], rank[e]) for e in range(len(source)) if source[e] >= 0)
        self.ack_times = [t for t, _ in acks]
        self.ack_max_rank: list[Any] = []  # the highest rank acknowledged by each time
        best: Any = -INF
        for _, r in acks:
            best = max(best, r)
            self.ack_max_rank.append(best)
        self.tail_end: dict[int, Observation] = {}  # id(first batch of a tail stream) -> its last batch
        self.witnesses: dict[int, list[int]] = {}  # id(page) -> its events inside its bounds, when asked

    def name(self, node: int) -> str:
        return repr(self.h.nodes[node]) if node >= 0 else "?"

    def who(self, obs: Observation) -> str:
        return f"timeline of {self.name(obs.sink)}" if obs.kind == "timeline" else f"sink {self.name(obs.sink)}"

    def before_rt(self, a: int, b: int) -> bool:
        """Did ``a``'s publish certainly commit before ``b``'s, by real time alone?"""
        h = self.h
        if h.batch[a] == h.batch[b] >= 0:  # one publish_many: its items commit in list order
            return h.item[a] < h.item[b]
        certainly: bool = 0 <= h.ack[a] < h.ack0[b]  # ack times are ints (clock ns) or -1
        return certainly

    def before(self, a: int, b: int) -> bool:
        """Is event ``a`` certainly ordered before event ``b`` (ids, else real time)?"""
        h = self.h
        if h.ordered:
            earlier: bool = h.rank[a] < h.rank[b]
            return earlier
        return self.before_rt(a, b)

    def now_rank(self, t0: Any) -> Any:
        """The highest rank acknowledged before time ``t0`` (-inf: none)."""
        n = bisect_left(self.ack_times, t0)
        return self.ack_max_rank[n - 1] if n else -INF

    def id_rank(self, id: Any, exclusive: int = 0) -> Any:
        """The rank of a bound given as an id, moved by ``exclusive`` (+1: exclusive lower
        bound, -1: exclusive upper bound); None if the history does not know it."""
        if self.h.ordered:
            return id + exclusive
        e = self.h.index.get(id)
        return None if e is None or self.h.source[e] < 0 else self.h.rank[e] + exclusive

    def bound_event(self, id: Any) -> int:
        """The event a bound names, or -1 if it is not an acknowledged event."""
        e = self.h.index.get(id, -1)
        return e if e >= 0 and self.h.source[e] >= 0 else -1
