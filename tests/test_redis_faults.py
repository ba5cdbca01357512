"""Fault tests of the Redis Cluster backend on a real cluster (issue 14).

Every test here is slow (``make test-redis-faults``, or ``-m slow``):

1. a publishing process is killed with SIGKILL at random points; the logs
   must have no hole, and retrying its last publish with the same keys from
   another process must return what committed, or publish it once;
2. a master is frozen (SIGSTOP) until its replica takes over, then thawed;
   publishers, tailers and page readers record a history for the verifier,
   and every acknowledged publish must still be there;
3. slots of buckets in use move from one master to another under load.

The measured figures are printed per trial and written down in
``docs/reliability.md`` ("Redis Cluster: what an acknowledged publish survives").
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import random
import signal
import time

import pytest

import twittercore
from twittercore.checking.recorder import Recorder
from twittercore.checking.verify import verify
from tests.redis_cluster import HOST, Cluster, missing_reason

pytestmark = pytest.mark.slow

SPAWN = multiprocessing.get_context("spawn")
BUCKETS = 16
#: Seconds per Redis call: a frozen master costs a client at most a few of these per call.
TIMEOUT = 1.0
#: No store call may take longer than this, whatever the cluster does (3 timeouts of
#: retries in the router, one socket timeout for the last read, a slot-table refresh).
CALL_BOUND = 8 * TIMEOUT


@pytest.fixture(autouse=True)
def _needs_redis():
    reason = missing_reason()
    if reason:
        pytest.skip(reason)


def _redis(port: int):
    import redis

    return redis.Redis(host=HOST, port=port, socket_timeout=2)


def _slot_owner(cluster: Cluster, tag: str) -> tuple[int, list[int]]:
    """(master port, replica ports) serving the slot of ``tag``, as a live master says."""
    from redis.crc import key_slot

    slot = key_slot(tag.encode())
    for port in cluster.master_ports():
        client = _redis(port)
        try:
            for start, end, master, *replicas in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(master[1]), [int(r[1]) for r in replicas]
        finally:
            client.close()
    raise AssertionError(f"no master serves slot {slot}")


def _raw_log(store, source: int) -> tuple[list[int], list[bytes | None]]:
    """The clocks in ``source``'s log and the stored value of each (None: a hole)."""
    b = store._bucket(source)
    clocks = store._one(source, "ZRANGE", store._key(b, f"g:{source}"), 0, -1)
    if not clocks:
        return [], []
    values = store._one(source, "HMGET", store._key(b, "e"), *clocks)
    return [int(c) << 10 | b for c in clocks], values


def _check_log(store, source: int) -> list[bytes]:
    """Assert that ``source``'s log has no hole and is in order; its payloads, oldest first."""
    ids, values = _raw_log(store, source)
    assert all(a < b for a, b in zip(ids, ids[1:])), f"source {source}: log out of order"
    payloads = []
    for id, value in zip(ids, values):
        assert value is not None, f"source {source}: hole at id {id} (in the log, no event)"
        event = store.event(id)
        assert event.source == source, (id, event)
        payloads.append(event.payload)
    return payloads


# ------------------------------------------------------------ 1. SIGKILL


def _keyed_publisher(url, ns, sources, trial, journal, ready):
    """Publish forever with keys; the journal says what was begun and what returned."""
    fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with twittercore.open(url, namespace=ns, buckets=BUCKETS, timeout=TIMEOUT) as store:
        ready.set()
        n = 0
        while True:
            # Even steps publish one event, odd ones a batch over two buckets (two server calls).
            items = [(sources[0], f"{trial}:{n}:0".encode(), f"k{trial}-{n}-0")]
            if n % 2:
                items.append((sources[1], f"{trial}:{n}:1".encode(), f"k{trial}-{n}-1"))
            os.write(fd, f"begin {n}\n".encode())  # the page cache outlives SIGKILL
            events = store.publish_many(items)
            os.write(fd, f"done {n} {' '.join(str(e.id) for e in events)}\n".encode())
            n += 1


def _journal(path: str) -> tuple[int | None, dict[int, list[int]]]:
    """(the step begun but not returned, or None; the ids each returned step got)."""
    begun, done = None, {}
    with open(path) as f:
        for line in f:
            word, n, *ids = line.split()
            if word == "begin":
                begun = int(n)
            else:
                done[int(n)] = [int(i) for i in ids]
    return (begun if begun is not None and begun not in done else None), done


def test_sigkill_inside_publish_leaves_no_hole_and_retries_resolve(tmp_path):
    cluster = Cluster(3, 0, durable=True).start()
    outcomes = collections.Counter()
    started = time.monotonic()
    try:
        ns = "kill"
        with twittercore.open(cluster.url, namespace=ns, buckets=BUCKETS, timeout=TIMEOUT) as store:
            for trial in range(10):
                a = 1000 + 10 * trial
                b = next(s for s in range(a + 1, a + 100) if store._bucket(s) != store._bucket(a))
                journal = str(tmp_path / f"journal{trial}")
                ready = SPAWN.Event()
                child = SPAWN.Process(target=_keyed_publisher, args=(cluster.url, ns, (a, b), trial, journal, ready))
                child.start()
                try:
                    assert ready.wait(60), "the publisher did not start"
                    time.sleep(random.uniform(0.05, 0.6))
                    child.kill()
                    child.join(10)
                finally:
                    if child.is_alive():
                        child.kill()
                    child.join(10)
                assert child.exitcode == -signal.SIGKILL
                in_flight, done = _journal(journal)
                logs = {s: _check_log(store, s) for s in (a, b)}
                every = logs[a] + logs[b]
                assert len(every) == len(set(every)), f"trial {trial}: an event published twice"
                for n, ids in done.items():
                    for j, id in enumerate(ids):
                        assert store.event(id).payload == f"{trial}:{n}:{j}".encode(), (trial, n, j)
                if in_flight is None:
                    outcomes["between calls"] += 1
                    continue
                items = [(a, f"{trial}:{in_flight}:0".encode(), f"k{trial}-{in_flight}-0")]
                if in_flight % 2:
                    items.append((b, f"{trial}:{in_flight}:1".encode(), f"k{trial}-{in_flight}-1"))
                before = {p: i for s in (a, b) for p, i in zip(logs[s], _raw_log(store, s)[0])}
                committed = [p in before for _, p, _ in items]
                retried = store.publish_many(items)
                for (source, payload, _), event, had in zip(items, retried, committed):
                    assert event.payload == payload and event.source == source
                    if had:
                        assert event.id == before[payload], f"trial {trial}: the retry did not return the original"
                    else:
                        assert event.id > max(before.values(), default=0)
                after = {s: _check_log(store, s) for s in (a, b)}
                for _, payload, _ in items:
                    assert (after[a] + after[b]).count(payload) == 1, f"trial {trial}: {payload!r} not exactly once"
                shape = "batch" if len(items) == 2 else "single"
                outcomes[f"{shape}: committed {sum(committed)}/{len(items)} before the kill"] += 1
                print(f"\ntrial {trial}: killed in step {in_flight} ({shape}), {len(done)} steps returned, "
                      f"committed {sum(committed)}/{len(items)} of the in-flight step; the retry resolved it")  # fmt: skip
            store._check()
    finally:
        cluster.stop()
    print(f"\nSIGKILL: {dict(outcomes)} in {time.monotonic() - started:.1f} s")
    assert sum(v for k, v in outcomes.items() if k != "between calls") >= 3, "too few kills landed inside a publish"
