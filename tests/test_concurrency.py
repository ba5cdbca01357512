"""Many processes on one store at once, recorded and verified (issue: live subscriptions).

3 publishing processes, 4 tailing subscriber processes and 1 process that
follows and unfollows run on one store.  Each writes its own history; the
verifier must find G1-G3 intact in the merged histories, and each subscriber's
deliveries must be exactly what the store says it owed that sink: nothing
lost, nothing duplicated, nothing foreign.

It runs on an LMDB file for every strategy, and on a real 3-master Redis
Cluster (``tests/redis_cluster.py``), where the processes share nothing but
the cluster.  ``make test`` runs a few seconds of it per store; ``make
test-long`` (or TWITTERCORE_CONCURRENCY_SECONDS=30) the 30-second run.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import time

import pytest

import twittercore
from tests.redis_cluster import Cluster, missing_reason
from twittercore import Deletion, Event
from twittercore.checking.recorder import Recorder
from twittercore.checking.verify import verify

SPAWN = multiprocessing.get_context("spawn")
SECONDS = float(os.environ.get("TWITTERCORE_CONCURRENCY_SECONDS", "4"))
PUBLISHERS, SUBSCRIBERS = 3, 4
SOURCES = range(30)  # publisher p owns the sources s with s % 3 == p
SINKS = range(100, 100 + SUBSCRIBERS)


def _publisher(path, options, history, index, start, seconds, seed):
    rng = random.Random(seed)
    mine = [s for s in SOURCES if s % PUBLISHERS == index]
    with twittercore.open(path, **options) as store, Recorder(store, history) as rec:
        start.wait()
        deadline, published = time.monotonic() + seconds, []
        while time.monotonic() < deadline:
            roll = rng.random()
            if roll < 0.1:
                published += rec.publish_many([(rng.choice(mine), b"batch") for _ in range(rng.randint(2, 20))])
            elif roll < 0.12 and published:
                rec.delete(published.pop(rng.randrange(len(published))).id)
            else:
                published.append(rec.publish(rng.choice(mine), b"one"))
            if rng.random() < 0.3:
                time.sleep(0.0005)


def _follower(path, options, history, start, seconds, seed):
    rng = random.Random(seed)
    with twittercore.open(path, **options) as store, Recorder(store, history) as rec:
        start.wait()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sink, source = rng.choice(SINKS), rng.choice(SOURCES)
            (rec.unfollow if rng.random() < 0.5 else rec.follow)(sink, source)
            if rng.random() < 0.2:
                rec.home(sink, limit=50)
            time.sleep(0.002)


def _subscriber(path, options, history, sink, after, start, stop, out):
    """Tail until every writer has exited (``stop``), then drain what is left."""
    got = []

    def take(items):
        cursor = None
        for item in items:
            got.append(("event", item.id) if isinstance(item, Event) else ("deletion", item.seq, item.id))
            cursor = item.position
            if stop.is_set() and not draining:
                break
        return cursor

    with twittercore.open(path, **options) as store, Recorder(store, history) as rec:
        start.wait()
        cursor, draining = after, False
        while not stop.is_set():
            cursor = take(rec.tail(sink, after=cursor, timeout=0.1)) or cursor
        draining = True  # nothing more will be published: one last tail until it goes quiet
        take(rec.tail(sink, after=cursor, timeout=0.5))
    out.put((sink, got))


@pytest.fixture(scope="module")
def redis_cluster():
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = Cluster(3, 0, durable=False).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.parametrize("fanout", ["read", "write", "hybrid"])
def test_publishers_subscribers_and_churn_in_processes(tmp_path, fanout):
    run(
        tmp_path,
        str(tmp_path / "store"),
        {"durable": False},
        {"fanout": fanout, "window": 50, "celebrity_threshold": 2},
    )


def test_processes_on_redis_cluster(tmp_path, redis_cluster):
    """The same run on a Redis Cluster: 8 buckets, so the sources spread over every master."""
    run(tmp_path, redis_cluster.url, {"namespace": "conc", "buckets": 8}, {})


def run(tmp_path, path, options, creation):
    fanout = creation.get("fanout", "read")
    histories = [str(tmp_path / f"h{n}.jsonl") for n in range(PUBLISHERS + SUBSCRIBERS + 2)]
    with twittercore.open(path, **options, **creation) as store:
        with Recorder(store, histories[-1]) as rec:
            rec.follow_many([(sink, source) for sink in SINKS for source in SOURCES if (sink + source) % 3])
        after = store.last_id()
    start, stop, out = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    writers = [
        SPAWN.Process(target=_publisher, args=(path, options, histories[p], p, start, SECONDS, p))
        for p in range(PUBLISHERS)
    ]
    writers.append(SPAWN.Process(target=_follower, args=(path, options, histories[PUBLISHERS], start, SECONDS, 99)))
    readers = [
        SPAWN.Process(
            target=_subscriber, args=(path, options, histories[PUBLISHERS + 1 + n], sink, after, start, stop, out)
        )
        for n, sink in enumerate(SINKS)
    ]
    try:
        for p in writers + readers:
            p.start()
        start.set()
        for p in writers:
            p.join(SECONDS + 120)
            assert p.exitcode == 0, p
        stop.set()
        delivered = dict(out.get(timeout=120) for _ in SINKS)
        for p in readers:
            p.join(60)
            assert p.exitcode == 0, p
    finally:
        # A failed assertion must not leave processes that multiprocessing joins at exit (a hung CI).
        stop.set()
        for p in writers + readers:
            if p.is_alive():
                p.kill()
            p.join(10)
        out.close()
        out.join_thread()
    report = verify(histories)
    assert report.ok, report.format()

    with twittercore.open(path, **options) as store:
        store._check()
        published = report.stats["events"]
        for sink, got in delivered.items():
            events = [g[1] for g in got if g[0] == "event"]
            assert len(events) == len(set(events)), f"sink {sink}: duplicated deliveries"
            owed = []
            cursor = after
            while True:
                items, cursor2 = store.changes(sink, cursor)
                owed.extend(items)
                if cursor2 == cursor or cursor2 >= store.last_id():
                    break
                cursor = cursor2
            owed_events = [i.id for i in owed if isinstance(i, Event)]
            owed_deletions = {i.id for i in owed if isinstance(i, Deletion)}
            # Deleted events vanish from the store's answer; a live subscriber
            # may have received them before the delete: it then got the notice.
            live = [id for id in events if id not in owed_deletions]
            assert live == owed_events, (
                f"sink {sink}: lost {sorted(set(owed_events) - set(live))[:5]}, "
                f"extra {sorted(set(live) - set(owed_events))[:5]}, {len(live)} delivered, {len(owed_events)} owed, "
                f"first difference at {next((i for i, (a, b) in enumerate(zip(live, owed_events)) if a != b), None)}"
            )
            notices = {g[2] for g in got if g[0] == "deletion"}
            assert notices == owed_deletions
    assert published > 100
    total = sum(len(got) for got in delivered.values())
    print(
        f"\n{path.split(':')[0] if '://' in path else 'lmdb'} {fanout}: {published} acknowledged events in {SECONDS:g} s, {total} deliveries to {len(SINKS)} subscribers, verified"
    )
