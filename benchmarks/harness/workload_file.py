"""Materialise one workload once, so every child process replays the same bytes.

The parent draws the workload from :mod:`twittercore.workload` (graph first,
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
from dataclasses import asdict, dataclass, field
from typing import Any

from twittercore.workload import Workload

#: The ``k`` values of the "home latency vs followed sources" plot.
PROBE_KS = (10, 50, 100, 500, 1000, 5000)
#: Follower counts the "fan-out cost" plot aims for (the nearest source is used).
FANOUT_TARGETS = (1, 10, 100, 1000, 10_000, 100_000)


@dataclass
class WorkloadSpec:
    """The arguments of :class:`twittercore.workload.Workload` the harness sets."""

    users: int = 10_000
    posts: int = 200_000
    mean_followees: int = 100
    max_followees: int = 5_000
    payload_bytes: int = 140
    seed: int = 1

    def scaled(self, users: int) -> "WorkloadSpec":
        """The same shape with ``users`` users and the same posts per user."""
        per_user = self.posts / self.users
        return WorkloadSpec(
            users=users,
            posts=max(1, round(per_user * users)),
            mean_followees=min(self.mean_followees, max(1, users // 4)),
            max_followees=min(self.max_followees, users - 1),
            payload_bytes=self.payload_bytes,
            seed=self.seed,
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
    """Everything a child needs: the ordered ingest plus the sampled calls."""

    spec: dict[str, Any]
    graph: list[tuple[int, int]]  # (sink, source), applied first, in order
    post_sources: array  # source of post i
    payloads: list[bytes]  # payload of post i
    bulk_posts: int  # posts [0, bulk_posts) load untimed in batches; the rest one by one, timed
    read_sinks: list[int]
    check_sinks: list[int]
    timeline_sources: list[int]
    probes: dict[int, int]  # k -> probe sink id that follows exactly k sources
    probe_reads: int
    churn_pairs: list[tuple[int, int]]  # (sink, source) pairs that are NOT edges
    fanout_sources: list[tuple[int, int]]  # (source, follower count)
    fanout_reps: int
    followers: dict[int, int] = field(default_factory=dict)  # source -> follower count


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
    )
    graph = [(int(sink), int(source)) for sink, source in workload.graph()]
    post_sources = array("Q")
    payloads: list[bytes] = []
    for source, payload in workload.posts():
        post_sources.append(int(source))
        payloads.append(bytes(payload))

    rng = random.Random(spec.seed * 7919 + 17)
    followees: dict[int, set[int]] = {}
    followers: dict[int, int] = {}
    for sink, source in graph:
        if source not in followees.setdefault(sink, set()):
            followees[sink].add(source)
            followers[source] = followers.get(source, 0) + 1
    nodes = sorted(set(followees) | set(followers) | set(post_sources))
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
        graph.extend((sink, source) for source in chosen)
        followees[sink] = set(chosen)
        for source in chosen:
            followers[source] = followers.get(source, 0) + 1
        probes[k] = sink

    sinks = sorted(s for s, f in followees.items() if f and s not in probes.values())
    read_sinks = [rng.choice(sinks) for _ in range(samples.reads)] if sinks else []
    check_sinks = sorted(set(rng.sample(sinks, min(samples.check_sinks, len(sinks))))) + list(probes.values())
    timeline_sources = [rng.choice(posting) for _ in range(samples.timelines)] if posting else []

    churn_pairs: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(samples.churn * 20):
        if len(churn_pairs) >= samples.churn or not sinks:
            break
        sink, source = rng.choice(sinks), rng.choice(nodes)
        if sink != source and source not in followees[sink] and (sink, source) not in seen:
            seen.add((sink, source))
            churn_pairs.append((sink, source))

    by_count = sorted((count, source) for source, count in followers.items())
    counts = [c for c, _ in by_count]
    fanout: dict[int, int] = {}
    for target in FANOUT_TARGETS + ((counts[-1],) if counts else ()):
        if not counts or target > counts[-1] * 2:
            continue
        i = min(bisect.bisect_left(counts, target), len(counts) - 1)
        count, source = by_count[i]
        fanout[source] = count

    timed = min(samples.timed_posts, len(payloads))
    return Fixture(
        spec=asdict(spec),
        graph=graph,
        post_sources=post_sources,
        payloads=payloads,
        bulk_posts=len(payloads) - timed,
        read_sinks=read_sinks,
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
