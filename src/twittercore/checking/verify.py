"""Check a recorded history for G1-G4, deletes and real time; ``twittercore verify HISTORY.jsonl ...``.

- **G1, source order**: in every stream a sink observed (one page, or all the
  batches of one tail subscription), each source's events appear in publish
  order, each at most once, and only events the sink should get (an event of a
  source it definitely did not follow is a *foreign event*, reported under G1).
  "Publish order" is the ids (ordered histories) and, always, real time: an
  event acknowledged before another's publish began comes first, transitively.
- **G2, agreement**: no two observations (two sinks, or one sink at two
  reads) saw two events of different sources in opposite orders; no stream
  contradicts real time across sources.
- **G3, no loss**: an acknowledged event is in every read that covers it: a
  page whose range includes it, read after the publish returned, by a sink
  that followed the source throughout the read; or a tail stream that
  delivered events on both sides of it (its highest delivery bounds it), to a
  sink that followed the source throughout the publish.  A tail that delivers
  an older event after a newer one is a *late insert*, also G3.
- **G4, paging**: every id of a page lies within its bounds; a page read with
  the previous page's oldest id as its bound neither repeats an event of that
  page nor skips one that existed when the previous page was read.
- **deleted**: no page shows an event whose delete returned before the read began.
- **realtime**: no read shows an event whose publish began after the read returned.
- **global order** (reported, stronger than G2): one total order explains
  every observation.

Messages say "sink 3 ordered a before b": in sink 3's stream, ``a`` is older
than ``b`` (a page lists newest first, so there ``b`` came first).

The exact rules, and how uncertain cases (concurrent follows, deletes) are
skipped rather than guessed, are in ``docs/history-format.md``.

Runtime complexity: O(n log n) for n observed ids plus O(P log P) for P
publishes on a passing history: each stream is compared with one candidate
order (the ids, or the acknowledgement order for opaque ids) at C speed, and
each read's coverage is checked by counting.  Only failing streams are
scanned event by event (O(n), running maxima), and only when a stream is out
of the candidate order after removing repeats is the precedence graph built.

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
import json
import operator
import sys
import time
from collections.abc import Iterable
from typing import Any

from ..errors import Error
from . import _cover, _order
from ._context import GUARANTEES, Context, Report
from .history import History, Observation, follow_state, load

__all__ = ["verify", "Report", "GUARANTEES", "follow_state"]


def _streams(ctx: Context) -> list[tuple[Observation, list[int]]]:
    """Pages and timelines alone; the batches of one tail subscription joined, in time order."""
    out: list[tuple[Observation, list[int]]] = []
    tails: dict[tuple[int, Any], list[Observation]] = {}
    for obs in ctx.h.observations:
        if obs.kind == "tail":
            tails.setdefault((obs.sink, obs.stream), []).append(obs)
        else:
            out.append((obs, obs.events))
    for batches in tails.values():
        batches.sort(key=lambda o: o.t)
        out.append((batches[0], [e for o in batches for e in o.events]))
        ctx.tail_end[id(batches[0])] = batches[-1]
    return out


def verify(sources: Iterable[Any] | History, *, ordered: bool | None = None, limit: int = 10) -> Report:
    """Load history files (paths or text streams, merged) or take a loaded History; check it.

    Raises :class:`~twittercore.checking.history.HistoryError` when a file is malformed.
    """
    started = time.perf_counter()
    h = sources if isinstance(sources, History) else load(sources, ordered=ordered)
    report = Report(limit)
    report.stats.update(reads_checked=0, walk_steps=0, events=sum(1 for s in h.source if s >= 0))
    ctx = Context(h, report)
    streams = _streams(ctx)
    rank = h.rank
    clean: set[int] = set()
    tangled: list[int] = []  # streams out of the candidate order even without their repeats
    for n, (obs, events) in enumerate(streams):
        ranks = list(map(rank.__getitem__, events))
        if all(map(operator.lt, ranks, ranks[1:])):  # map and all run in C: this loop is the bulk
            clean.add(id(obs))  # sorted by the candidate order: G1 and G2 hold for this stream
            continue
        _order.scan(ctx, obs, events)
        distinct = list(map(rank.__getitem__, dict.fromkeys(events)))
        if not all(map(operator.lt, distinct, distinct[1:])):
            tangled.append(n)
    if h.ordered:
        _order.ids_against_real_time(ctx)
    _cover.pages(ctx, [obs for obs, _ in streams if obs.kind != "tail"], clean)
    for obs, events in streams:
        if obs.kind == "tail":
            _cover.tail(ctx, obs, events, id(obs) in clean)
    _cover.shown_in_time(ctx, h.observations)
    if tangled:
        _order.agreement(ctx, streams, tangled)
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
    ids.add_argument(
        "--opaque",
        dest="ordered",
        action="store_false",
        default=None,
        help="treat ids as opaque even if they are ints (order from acknowledgements)",
    )
    ids.add_argument(
        "--ordered",
        dest="ordered",
        action="store_true",
        help="ids are ints in commit order (the default when every id is an int)",
    )
    parser.add_argument("--examples", type=int, default=10, help="violations to print per guarantee")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 when every guarantee holds, 1 on a violation, 2 when the history cannot be read."""
    try:
        report = verify(args.histories, ordered=args.ordered, limit=args.examples)
    except Error as exc:
        print(f"twittercore verify: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"twittercore verify: {exc.filename or ''}: cannot read: {exc.strerror or exc} "
              "(give the path of a history file)", file=sys.stderr)  # fmt: skip
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0 if report.ok else 1
