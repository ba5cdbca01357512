"""Materialise one workload once, so every child process replays the same bytes.

The parent draws the workload from :mod:`twittercore.checking.workload` (graph first,
then posts in order), adds the harness's own fixtures (probe sinks that follow
exactly ``k`` sources, the read samples, churn pairs, fan-out sources) and
pickles it all to one file.  Children only unpickle: generating the workload
in every child would cost more than most of the phases it feeds.

All samples come from ``random.Random(seed)``, so two runs with the same
arguments time the same calls.
"""

from __future__ import annotations

import bisect
import pickle
import random
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from twittercore.checking.workload import Workload

#: The ``k`` values of the "home latency vs followed sources" plot.
PROBE_KS = (10, 50, 100, 500, 1000, 5000)
#: Home reads made before the timed ones.
WARMUP = 50
#: Follower counts the "fan-out cost" plot aims for (the nearest source is used).
FANOUT_TARGETS = (1, 10, 100, 1000, 10_000, 100_000)


@dataclass
class WorkloadSpec:
    """The arguments of :class:`twittercore.checking.workload.Workload` the harness sets."""

    users: int = 10_000
    posts: int = 200_000
    mean_followees: int = 100
    max_followees: int = 5_000
    payload_bytes: int = 140
    seed: int = 1
    #: The shape (see :class:`~twittercore.checking.workload.Workload`): the
    #: sigma of the log-normal followee counts and the Zipf exponents of whom
    #: to follow and who posts.
    degree_sigma: float = 1.0
    popularity_exponent: float = 0.7
    author_exponent: float = 0.8
    #: Cold reads: every timed home read is of a different sink, none of them
    #: read before (not by the warm-up, not by the cross-check).
    distinct_reads: bool = False

    def scaled(self, users: int) -> WorkloadSpec:
        """The same shape with ``users`` users and the same posts per user."""
        per_user = self.posts / self.users
        return replace(
            self,
            users=users,
            posts=max(1, round(per_user * users)),
            mean_followees=min(self.mean_followees, max(1, users // 4)),
            max_followees=min(self.max_followees, users - 1),
        )


@dataclass
class Samples:
    """How many calls each phase makes (and how many pages the cross-check compares)."""

    reads: int = 2_000
    timelines: int = 1_000
    check_sinks: int = 40
    probe_reads: int = 200
    churn: int = 500
    fanout_reps: int = 30
    timed_posts: int = 20_000


@dataclass
class Fixture:
    """Everything a child needs: the ordered ingest plus the sampled calls.

    The graph and the posts are packed (arrays and one payload blob), so a
    million-user workload pickles in gigabytes rather than tens of them.
    """

    spec: dict[str, Any]
    graph_sinks: array  # edge i is (graph_sinks[i], graph_sources[i]), applied first, in order
    graph_sources: array
    post_sources: array  # source of post i
    payload_blob: bytes  # payloads back to back; post i ends at payload_ends[i]
    payload_ends: array
    bulk_posts: int  # posts [0, bulk_posts) load untimed in batches; the rest one by one, timed
    read_sinks: list[int]
    warm_sinks: list[int]  # read before timing (the connections, the code paths)
    check_sinks: list[int]
    timeline_sources: list[int]
    probes: dict[int, int]  # k -> probe sink id that follows exactly k sources
    probe_reads: int
    churn_pairs: list[tuple[int, int]]  # (sink, source) pairs that are NOT edges
    fanout_sources: list[tuple[int, int]]  # (source, follower count)
    fanout_reps: int
    followers: dict[int, int] = field(default_factory=dict)  # source -> follower count

    @property
    def edges(self) -> int:
        return len(self.graph_sinks)

    @property
    def post_count(self) -> int:
        return len(self.post_sources)

    def graph_chunks(self, size: int = 100_000) -> Iterator[list[tuple[int, int]]]:
        """The graph as ``(sink, source)`` lists of at most ``size`` pairs, in order."""
        for start in range(0, self.edges, size):
            yield list(zip(self.graph_sinks[start : start + size], self.graph_sources[start : start + size]))

    def posts(self, start: int, stop: int) -> list[tuple[int, bytes]]:
        """Posts ``[start, stop)`` as ``(source, payload)`` pairs."""
        ends, blob = self.payload_ends, self.payload_blob
        out = []
        for i in range(start, min(stop, self.post_count)):
            begin = ends[i - 1] if i else 0
            out.append((self.post_sources[i], blob[begin : ends[i]]))
        return out


def generator_name() -> str:
    """Which generator :func:`build` uses (recorded in the JSON)."""
    return Workload.__module__


def build(spec: WorkloadSpec, samples: Samples) -> Fixture:
    """Generate the workload of ``spec`` and sample the calls every child will make."""
    workload = Workload(
        users=spec.users,
        seed=spec.seed,
        mean_followees=spec.mean_followees,
        max_followees=spec.max_followees,
        posts=spec.posts,
        payload_bytes=spec.payload_bytes,
        degree_sigma=spec.degree_sigma,
        popularity_exponent=spec.popularity_exponent,
        author_exponent=spec.author_exponent,
    )
    graph_sinks, graph_sources = array("Q"), array("Q")
    for sink, source in workload.graph():
        graph_sinks.append(sink)
        graph_sources.append(source)
    post_sources, payload_ends, blob = array("Q"), array("Q"), bytearray()
    for source, payload in workload.posts():
        post_sources.append(source)
        blob += payload
        payload_ends.append(len(blob))

    rng = random.Random(spec.seed * 7919 + 17)
    followers: dict[int, int] = dict(Counter(graph_sources))
    sinks = sorted(set(graph_sinks))
    nodes = sorted(set(sinks) | set(followers) | set(post_sources))
    posting = sorted(set(post_sources))

    # Probe sinks: new node ids above every workload node, each following
    # exactly k sources (a deterministic sample), appended to the graph.
    probes: dict[int, int] = {}
    next_id = (nodes[-1] if nodes else 0) + 1
    for k in PROBE_KS:
        if k > len(nodes):
            break
        sink = next_id
        next_id += 1
        chosen = rng.sample(nodes, k)
        graph_sinks.extend([sink] * k)
        graph_sources.extend(chosen)
        for source in chosen:
            followers[source] = followers.get(source, 0) + 1
        probes[k] = sink

    check_sinks = sorted(set(rng.sample(sinks, min(samples.check_sinks, len(sinks))))) + list(probes.values())
    warm_sinks: list[int] = []
    if spec.distinct_reads:
        unread = sorted(set(sinks) - set(check_sinks))
        drawn = rng.sample(unread, min(samples.reads + WARMUP, len(unread)))
        warm_sinks, read_sinks = drawn[:WARMUP], drawn[WARMUP:]
    else:
        read_sinks = [rng.choice(sinks) for _ in range(samples.reads)] if sinks else []
    timeline_sources = [rng.choice(posting) for _ in range(samples.timelines)] if posting else []

    # Churn: pairs that are not edges, for a sample of sinks whose followees we collect.
    churn_sinks = set(rng.sample(sinks, min(samples.churn, len(sinks)))) if samples.churn else set()
    followees: dict[int, set[int]] = {s: set() for s in churn_sinks}
    if churn_sinks:
        for sink, source in zip(graph_sinks, graph_sources):
            if sink in churn_sinks:
                followees[sink].add(source)
    churn_pairs: list[tuple[int, int]] = []
    ordered_churn_sinks = sorted(churn_sinks)
    for _ in range(samples.churn * 20):
        if len(churn_pairs) >= samples.churn or not ordered_churn_sinks:
            break
        sink, source = rng.choice(ordered_churn_sinks), rng.choice(nodes)
        if sink != source and source not in followees[sink]:
            followees[sink].add(source)  # never the same pair twice
            churn_pairs.append((sink, source))

    by_count = sorted((count, source) for source, count in followers.items())
    counts = [c for c, _ in by_count]
    fanout: dict[int, int] = {}
    for target in FANOUT_TARGETS + ((counts[-1],) if counts else ()):
        if not counts or target > counts[-1] * 2 or not samples.fanout_reps:
            continue
        i = min(bisect.bisect_left(counts, target), len(counts) - 1)
        count, source = by_count[i]
        fanout[source] = count

    timed = min(samples.timed_posts, len(post_sources))
    return Fixture(
        spec=asdict(spec),
        graph_sinks=graph_sinks,
        graph_sources=graph_sources,
        post_sources=post_sources,
        payload_blob=bytes(blob),
        payload_ends=payload_ends,
        bulk_posts=len(post_sources) - timed,
        read_sinks=read_sinks,
        warm_sinks=warm_sinks or read_sinks[:WARMUP],
        check_sinks=check_sinks,
        timeline_sources=timeline_sources,
        probes=probes,
        probe_reads=samples.probe_reads,
        churn_pairs=churn_pairs,
        fanout_sources=sorted(fanout.items(), key=lambda item: item[1]),
        fanout_reps=samples.fanout_reps,
        followers=followers,
    )


def save(fixture: Fixture, path: str) -> None:
    with open(path, "wb") as f:
        pickle.dump(fixture, f, protocol=pickle.HIGHEST_PROTOCOL)


def load(path: str) -> Fixture:
    with open(path, "rb") as f:
        return pickle.load(f)
