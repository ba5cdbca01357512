"""Fan-out on write on Redis Cluster: windows filled by workers, trusted only up to their frontier.

A real 3-master cluster (tests/redis_cluster.py). The answers are compared with the memory store;
the window counters say which path answered, so each test can fail in the way it claims to test.
"""

from __future__ import annotations

import itertools

import pytest

import twittercore
from tests.node_checks import wait
from tests.redis_cluster import Cluster, missing_reason
from tests.redis_view import follow_cut_short, wipe
from twittercore.errors import ConfigurationError

_names = itertools.count()


@pytest.fixture(scope="module")
def cluster():
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    c = Cluster(3, 0, durable=False).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def namespace(cluster):
    name = f"fo{next(_names)}"
    yield name
    wipe(cluster, name)


def _open(cluster, namespace, **options):
    return twittercore.open(cluster.url, **{"buckets": 8, "namespace": namespace, **options})


def _graph(stores, sinks=range(1, 6), sources=range(1, 9)):
    for s in stores:
        for sink in sinks:
            for source in sources:
                if (sink * 3 + source) % 4:
                    s.follow(sink, source)


def _publish(stores, count, tag, source=lambda n: 1 + n % 8):
    """The same ``count`` posts, in one order, to every store: post n is ``tag`` + n by ``source(n)``."""
    for n in range(count):
        for s in stores:
            s.publish(source(n), b"%s%d" % (tag, n))


def _same(store, ref, sinks=range(1, 6), **page):
    for sink in sinks:
        got = [e.payload for e in store.home(sink, **page)]
        want = [e.payload for e in ref.home(sink, **page)]
        assert got == want, (sink, page, got, want)


def _settle(store):
    if not store._windows.settle(50):
        raise AssertionError("the fan-out worker did not become current")


def test_without_a_worker_reads_come_from_the_logs_and_are_right_then_the_window_serves(cluster, namespace):
    store = _open(cluster, namespace, fanout="write", window=50, fanout_worker=False)
    with store, twittercore.open(":memory:") as ref:
        _graph([store, ref])
        _publish([store, ref], 60, b"p")
        # No worker ran: every bucket with posts is behind its frontier, so its sources come from the logs.
        _same(store, ref, limit=20)
        _same(store, ref, limit=5, max_id=None)
        assert store._windows.counts["window"] == 0
        assert store._windows.counts["mixed"] + store._windows.counts["logs"] >= 10
        _settle(store)
        before = dict(store._windows.counts)
        _same(store, ref, limit=20)
        assert store._windows.counts["window"] - before["window"] == 5, store._windows.counts


def test_pages_below_the_window_come_from_the_logs(cluster, namespace):
    store = _open(cluster, namespace, fanout="write", window=10, fanout_worker=False)
    with store, twittercore.open(":memory:") as ref:
        _graph([store, ref])
        _publish([store, ref], 80, b"p")
        _settle(store)
        pages_ref, pages = [], []
        for s, out in ((ref, pages_ref), (store, pages)):
            max_id = None
            while True:
                page = s.home(2, limit=7, max_id=max_id)
                out.append([e.payload for e in page])
                if len(page) < 7:
                    break
                max_id = page[-1].id - 1
        assert pages == pages_ref and sum(map(len, pages)) > 40
        assert store._windows.counts["window"] >= 1 and store._windows.counts["logs"] >= 1


def test_follow_backfills_and_unfollow_cuts_the_window(cluster, namespace):
    store = _open(cluster, namespace, fanout="write", window=30, fanout_worker=False)
    with store, twittercore.open(":memory:") as ref:
        # Posts before anyone follows: only the follow's backfill puts them in windows.
        _publish([store, ref], 40, b"old", lambda n: 7)
        _settle(store)
        for s in (store, ref):
            s.follow(1, 7)
        before = store._windows.counts["window"]
        _same(store, ref, sinks=[1], limit=10)
        assert store._windows.counts["window"] == before + 1  # served by the backfilled window
        _same(store, ref, sinks=[1], limit=40)  # more than the window: its floor sends this to the logs
        for s in (store, ref):
            s.unfollow(1, 7)
        _same(store, ref, sinks=[1], limit=10)


def test_stale_and_deleted_ids_in_a_window_are_cleaned_and_never_shown(cluster, namespace):
    store = _open(cluster, namespace, fanout="write", window=30, fanout_worker=False)
    with store, twittercore.open(":memory:") as ref:
        for s in (store, ref):
            s.follow(1, 2)
        kept = [store.publish(2, b"k%d" % n) for n in range(5)]
        for n in range(5):
            ref.publish(2, b"k%d" % n)
        stranger = store.publish(3, b"not followed")
        _settle(store)
        # A worker that read 3's followers before an unfollow would leave this behind:
        store._windows.add({1: [b"%016x" % stranger.id]})
        store.delete(kept[1].id)
        ref.delete(ref.home(1, limit=10)[3].id)
        _same(store, ref, sinks=[1], limit=10)
        assert store._windows.counts["cleaned"] >= 1


def test_hybrid_celebrities_are_read_from_their_logs(cluster, namespace):
    store = _open(cluster, namespace, fanout="hybrid", window=50, celebrity_threshold=2, fanout_worker=False)
    with store, twittercore.open(":memory:") as ref:
        for s in (store, ref):
            for sink in (1, 2, 3, 4):
                s.follow(sink, 9)  # 4 followers: a celebrity
            s.follow(1, 5)  # 1 follower: fanned out
        _publish([store, ref], 20, b"h", lambda n: 9 if n % 2 else 5)
        _settle(store)
        b = store._bucket(9)
        assert store._one(9, "SISMEMBER", store._key(b, "cb"), 9) == 1
        assert store._one(2, "ZCARD", store._key(store._bucket(2), "w:2")) == 0  # 9 is not fanned out
        _same(store, ref, sinks=[1, 2, 3, 4], limit=15)
        assert store._windows.counts["mixed"] >= 4


def test_the_background_worker_keeps_windows_current(cluster, namespace):
    import time

    store = _open(cluster, namespace, fanout="write", window=50)
    with store, twittercore.open(":memory:") as ref:
        _graph([store, ref])
        _publish([store, ref], 30, b"b")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _same(store, ref, limit=10)
            if store._windows.counts["window"] >= 5:
                break
            time.sleep(0.05)
        assert store._windows.counts["window"] >= 5 and store._windows.rounds > 0


def test_a_namespace_keeps_its_strategy(cluster, namespace):
    with _open(cluster, namespace, fanout="write", window=20, fanout_worker=False):
        pass
    with pytest.raises(ConfigurationError, match="created with fanout='write'"):
        _open(cluster, namespace, fanout="read")
    with pytest.raises(ConfigurationError, match="created with window=20"):
        _open(cluster, namespace, fanout="write", window=30)
    with _open(cluster, namespace, fanout_worker=False) as adopted:
        assert (adopted.fanout, adopted.window) == ("write", 20)
    with pytest.raises(ConfigurationError, match="fanout_worker: expected True or False"):
        _open(cluster, namespace, fanout_worker="no")


def test_every_read_right_after_a_publish_holds_it_while_the_worker_runs(cluster, namespace):
    """Reads race the background worker: each publish is read back at once by every follower, so a read
    that trusted a window the worker had not finished (or raised its frontier around) would miss it."""
    store = _open(cluster, namespace, fanout="write", window=40)
    with store, twittercore.open(":memory:") as ref:
        _graph([store, ref])
        for n in range(120):
            for s in (store, ref):
                s.publish(1 + n % 8, b"r%d" % n)
            _same(store, ref, limit=8)
        counts = store._windows.counts
        assert counts["window"] + counts["mixed"] >= 100, counts  # the races were run, not skipped


def test_an_idle_worker_looks_at_every_bucket_only_once_a_second(cluster, namespace):
    """Between its one-second sweeps a worker reads only the feeds of buckets the wake channel named,
    so an idle namespace costs each master a sweep a second, not one every 50 ms."""
    import time

    store = _open(cluster, namespace, fanout="write", window=20)
    with store:
        store.follow(1, 2)
        time.sleep(0.3)  # the start-up sweep and the follow's wake
        before = store._windows.polled
        time.sleep(2.2)
        idle = store._windows.polled - before
        assert idle <= 3 * store._nb, idle  # at most the sweeps of 2.2 s (8 buckets each)
        start = store._windows.polled
        store.publish(2, b"wake")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and [e.payload for e in store.home(1)] != [b"wake"]:
            time.sleep(0.01)
        assert [e.payload for e in store.home(1)] == [b"wake"]
        assert store._windows.polled > start  # the publish's bucket was looked at before the next sweep


def _split(stores):
    """The lease groups each store's worker holds, if they cover every group exactly once."""
    held = [s._windows.leases.held for s in stores]
    groups = stores[0]._windows.leases.groups
    union = frozenset().union(*held)
    return held if sum(map(len, held)) == groups and len(union) == groups else None


def _fair(stores, most):
    held = _split(stores)
    return held is not None and max(map(len, held)) <= most


def _from_window(store, ref, sinks=range(1, 6)):
    """Read every sink (asserting the answers); True if the windows answered all of them."""
    before = store._windows.counts["window"]
    _same(store, ref, sinks=sinks, limit=10)
    return store._windows.counts["window"] - before == len(sinks)


def test_the_workers_of_several_stores_split_the_buckets_by_lease(cluster, namespace):
    """Three processes' workers each take a fair share of the lease groups and fan out only those
    buckets; together they keep every window current; one that closes hands its groups over."""
    stores = [_open(cluster, namespace, fanout="write", window=30, buckets=16) for _ in range(3)]
    with twittercore.open(":memory:") as ref:
        try:
            fair = 6  # ceil(16 / 3): the first worker to start holds all 16 until the others register
            assert wait(lambda: _fair(stores, fair), 15), "a fair split of the groups"
            _graph([stores[0], ref])
            _publish([stores[1], ref], 40, b"l")
            assert wait(lambda: all(_from_window(s, ref) for s in stores), 10), "windows current"
            # Each worker fanned out its own buckets only, and every bucket with posts was fanned out.
            fanned = [set(s._windows.fanned) for s in stores]
            for s, buckets in zip(stores, fanned):
                assert buckets <= set(s._windows.leases.buckets()), (buckets, s._windows.leases.buckets())
            assert set().union(*fanned) == {stores[0]._bucket(1 + n % 8) for n in range(40)}
            stores.pop().close()  # releases its leases: the two left take them over
            assert wait(lambda: _fair(stores, 8), 10), "the groups of the closed worker taken over"
            _publish([stores[0], ref], 20, b"m")
            assert wait(lambda: all(_from_window(s, ref) for s in stores), 10), "windows current again"
        finally:
            for s in stores:
                s.close()


def test_a_killed_worker_groups_are_taken_over_when_its_leases_lapse(cluster, namespace):
    import os
    import signal
    import subprocess
    import sys

    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, twittercore\n"
            "s = twittercore.open(sys.argv[1], buckets=16, namespace=sys.argv[2], fanout='write', window=30)\n"
            "print('open', flush=True)\n"
            "time.sleep(60)\n",
            cluster.url,
            namespace,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "open"
        store = _open(cluster, namespace, fanout="write", window=30, buckets=16)
        with store, twittercore.open(":memory:") as ref:
            leases = store._windows.leases
            assert wait(lambda: leases.workers == 2 and len(leases.held) == 8, 15), "half the groups each"
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
            # The dead worker's leases lapse (3 s) and it drops out of the registry: all groups are ours.
            assert wait(lambda: len(leases.held) == 16, 15), "the dead worker's groups taken over"
            _graph([store, ref])
            _publish([store, ref], 30, b"k")
            assert wait(lambda: _from_window(store, ref), 10), "windows current from this worker alone"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stdout.close()


def test_a_follow_cut_short_by_its_writer_dying_reads_right_and_a_worker_completes_it(cluster, namespace, monkeypatch):
    """The sink side of an edge is written, then the writer dies before the source side and the window
    backfill: reads pull that source from its log at once, and a worker completes the edge."""
    from twittercore.backends.redis import fanout

    monkeypatch.setattr(fanout, "REPAIR_S", 0.2)
    monkeypatch.setattr(fanout, "STALE_EDGE_S", 0.5)
    worker = _open(cluster, namespace, fanout="write", window=30)
    dying = _open(cluster, namespace, fanout="write", window=30, fanout_worker=False)
    with worker, dying, twittercore.open(":memory:") as ref:
        for s in (worker, ref):
            s.follow(1, 2)
        _publish([worker, ref], 25, b"d", source=lambda n: 7 if n % 2 else 2)
        assert wait(lambda: _from_window(worker, ref, [1]), 10), "windows current"
        assert follow_cut_short(dying, 1, 7)
        ref.follow(1, 7)
        assert worker.is_following(1, 7) and 1 not in worker.sinks(7)
        # Right at once (7's older posts are not in the window yet: they come from its log) ...
        for limit in (10, 30):
            _same(worker, ref, sinks=[1], limit=limit)
        assert worker._windows.counts["mixed"] >= 2
        # ... and complete soon: the worker writes the source side and the backfill.
        assert wait(lambda: worker._windows.repaired == 1, 10), "the worker's repair"
        assert 1 in worker.sinks(7)
        assert _from_window(worker, ref, [1])
        worker._check()
