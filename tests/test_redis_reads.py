"""Home reads on Redis Cluster, path by path, on a real 3-master cluster.

A home read closes and reads its buckets with one ``tc_ranges`` call per
master, which merges on the server and returns that master's newest (or
oldest) ``limit``.  When a bucket is not where the client thinks (a slot
moving, a stale slot table) the server refuses the call and the client reads
those buckets one ``tc_range`` each.  Both paths, and a master whose bucket
clock runs ahead of the others (its newest ids are past the read's cut and
the rest must be read again), must give the pages the logs say.
"""

from __future__ import annotations

import random
import time

import pytest

import twittercore
from tests.redis_cluster import redis_cluster  # noqa: F401  (the fixture)

BUCKETS = 16


@pytest.fixture(scope="module")
def cluster(redis_cluster):  # noqa: F811
    return redis_cluster


def expected(store, sink, limit, max_id=None, min_id=None):
    """The page from the sources' own timelines, merged by id."""
    ids = sorted(
        (e.id for source in store.sources(sink) for e in store.timeline(source, limit=10_000)),
        reverse=True,
    )
    if max_id is not None:
        ids = [i for i in ids if i <= max_id]
    if min_id is not None:
        return sorted(i for i in ids if i > min_id)[:limit][::-1]
    return ids[:limit]


def pages(store, sink, limit, max_id=None, min_id=None):
    return [e.id for e in store.home(sink, limit=limit, max_id=max_id, min_id=min_id)]


@pytest.fixture(scope="module")
def graph(cluster):
    rng = random.Random(7)
    with twittercore.open(cluster.url, namespace="reads", buckets=BUCKETS) as store:
        sinks = range(100, 106)
        sources = range(1, 41)
        store.follow_many([(sink, s) for sink in sinks for s in rng.sample(sources, rng.randrange(5, 30))])
        # Uneven activity: a few busy sources, many quiet ones.
        store.publish_many([(rng.choice((1, 2, 3, *sources)), b"p%d" % n) for n in range(600)])
        ids = [e.id for s in sources for e in store.timeline(s, limit=10_000)]
    return list(sinks), sorted(ids)


def queries(ids):
    rng = random.Random(3)
    yield 20, None, None
    yield 1, None, None
    yield 50, None, None
    for _ in range(4):
        yield rng.choice((3, 20)), rng.choice(ids), None
        yield rng.choice((3, 20)), None, rng.choice(ids)


def test_per_master_merge_gives_the_pages_of_the_logs(cluster, graph):
    sinks, ids = graph
    with twittercore.open(cluster.url, namespace="reads", buckets=BUCKETS) as store:
        for sink in sinks:
            for limit, max_id, min_id in queries(ids):
                assert pages(store, sink, limit, max_id, min_id) == expected(store, sink, limit, max_id, min_id)


@pytest.mark.parametrize("grouping", ["one call for every bucket", "one call per bucket"])
def test_a_refused_or_split_call_gives_the_same_pages(cluster, graph, grouping):
    sinks, ids = graph
    with twittercore.open(cluster.url, namespace="reads", buckets=BUCKETS) as store:
        singles = []
        if grouping == "one call for every bucket":
            # Buckets of all three masters in one call: the master refuses the keys
            # it does not own, and the client must read bucket by bucket instead.
            store._r.groups = lambda tags: [list(range(len(tags)))] if tags else []
        else:
            store._r.groups = lambda tags: [[i] for i in range(len(tags))]
        per_bucket = store._range

        def counted(*args, **kwargs):
            singles.append(args[0])
            return per_bucket(*args, **kwargs)

        store._range = counted
        fallbacks = 0
        for sink in sinks:
            for limit, max_id, min_id in queries(ids):
                want = expected(store, sink, limit, max_id, min_id)  # timelines use tc_range too
                del singles[:]
                assert pages(store, sink, limit, max_id, min_id) == want
                fallbacks += bool(singles)
        if grouping == "one call for every bucket":
            assert fallbacks, "the fallback to one tc_range per bucket never ran"
        else:
            assert not fallbacks


def test_a_bucket_clock_ahead_is_cut_and_its_older_ids_read_again(cluster):
    with twittercore.open(cluster.url, namespace="ahead", buckets=BUCKETS) as store:
        busy, quiet = 1, next(s for s in range(2, 100) if store._bucket(s) != store._bucket(1))
        sink = 500
        store.follow_many([(sink, busy), (sink, quiet)])
        quiet_ids = [store.publish(quiet, b"q%d" % n).id for n in range(2)]
        before = [store.publish(busy, b"old%d" % n).id for n in range(3)]
        # The busy source's bucket clock jumps a minute ahead (as after a publish
        # whose floor came from a clock that runs ahead): its next ids are past
        # what any other bucket has closed.
        b = store._bucket(busy)
        clock_key = f"{store._tags[b]}:c"
        ahead = int(time.time() * 1_000_000) + 60_000_000
        store._r.run([(store._tags[b], ("SET", clock_key, ahead))], safe=False)
        future = [store.publish(busy, b"new%d" % n).id for n in range(2)]
        assert min(future) > max(before + quiet_ids)
        # The newest two of the busy source are past the cut: the page shows what is
        # closed everywhere, never those, and never a page short of the older ids.
        assert pages(store, sink, 2) == before[:0:-1]
        assert pages(store, sink, 10) == sorted(before + quiet_ids, reverse=True)
        assert pages(store, sink, 10, min_id=0) == sorted(before + quiet_ids, reverse=True)


def _drain(store, sink, limit):
    out, cursor = [], 0
    for _ in range(1_000):
        items, after = store.changes(sink, cursor, limit)
        out += [(type(i).__name__, i.id) for i in items]
        if not items:  # nothing up to the cut, which moves on with the clocks
            return out
        cursor = after
    raise AssertionError("changes() never caught up")


def test_tails_read_per_master_refused_or_split_agree(cluster, graph):
    sinks, _ = graph
    with twittercore.open(cluster.url, namespace="reads", buckets=BUCKETS) as store:
        first = store.home(sinks[0], limit=1)[0]
        store.delete(first.id)  # a deletion notice among the events
        want = {(sink, limit): _drain(store, sink, limit) for sink in sinks for limit in (7, 500)}
        assert any(kind == "Deletion" for items in want.values() for kind, _ in items)
        for grouping in (
            [lambda tags: [list(range(len(tags)))] if tags else []],
            [lambda tags: [[i] for i in range(len(tags))]],
        ):
            store._r.groups = grouping[0]
            for (sink, limit), items in want.items():
                assert _drain(store, sink, limit) == items


@pytest.mark.parametrize("grouping", ["per master", "one call for every bucket", "one call per bucket"])
def test_last_id_and_the_wait_backstop_see_the_newest_change(cluster, grouping):
    with twittercore.open(cluster.url, namespace=f"newest{len(grouping)}", buckets=BUCKETS) as store:
        if grouping == "one call for every bucket":
            store._r.groups = lambda tags: [list(range(len(tags)))] if tags else []
        elif grouping == "one call per bucket":
            store._r.groups = lambda tags: [[i] for i in range(len(tags))]
        assert store.last_id() == 0 and store._newest_mutation() == 0
        ids = [store.publish(source, b"x").id for source in (3, 9, 14, 3)]
        assert store._newest_mutation() == max(ids)
        assert store.last_id() >= max(ids)
        mark = store.last_id()
        assert store.publish(5, b"later").id > mark  # last_id() closed every bucket at or above it
        assert store.wait(max(ids), timeout=0.5)
