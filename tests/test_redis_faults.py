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
from tests.redis_cluster import HOST, Cluster, missing_reason
from twittercore.checking.recorder import Recorder
from twittercore.checking.verify import verify

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


# ---------------------------------------------------------- 2. failover

SOURCES = range(1, 25)
SINKS = range(500, 504)


def _bounded(stats, name, started):
    took = time.monotonic() - started
    stats["longest"] = max(stats["longest"], took)
    stats["slowest_call"] = stats["slowest_call"] if stats["longest"] > took else name


def _error(stats, exc):
    if isinstance(exc, twittercore.Error):
        # Messages begin with the cluster's address, the same for every one.
        stats["errors"][f"{type(exc).__name__}: {str(exc).split(': ', 1)[-1][:90]}"] += 1
    else:
        import traceback

        where = " < ".join(f"{f.name}:{f.lineno}" for f in traceback.extract_tb(exc.__traceback__)[::-1][:6])
        stats["foreign"][f"{type(exc).__name__}: {str(exc)[:60]} at {where}"] += 1


def _new_stats():
    return {"longest": 0.0, "slowest_call": "", "errors": collections.Counter(), "foreign": collections.Counter(),
            "acked": [], "observed": set(), "retried": 0, "unresolved": []}  # fmt: skip


def _load_publisher(url, ns, options, history, index, stop, out, seed, ready):
    """Publish with keys; a failed call is retried with the same key until it returns."""
    rng, stats = random.Random(seed), _new_stats()
    mine = [s for s in SOURCES if s % 2 == index]
    hard_stop = time.monotonic() + 120
    with twittercore.open(url, namespace=ns, **options) as store, Recorder(store, history) as rec:
        ready.put(index)
        n = 0
        while not stop.is_set() and time.monotonic() < hard_stop:
            source, key = rng.choice(mine), f"p{index}-{n}"
            n += 1
            t0 = rec.history.now()  # the first attempt's start: the event may commit in it
            for attempt in range(40):
                started = time.monotonic()
                try:
                    event = store.publish(source, key.encode(), key=key)
                except Exception as exc:
                    _error(stats, exc)
                    _bounded(stats, "publish", started)
                    time.sleep(0.1)
                    continue
                _bounded(stats, "publish", started)
                rec.history.publish(event.source, event.id, t0=t0)
                stats["acked"].append((source, event.id, key))
                stats["retried"] += attempt > 0
                break
            else:
                stats["unresolved"].append((source, key))
            time.sleep(rng.uniform(0, 0.004))
    out.put(stats)


def _load_tailer(url, ns, options, history, sink, after, stop, out, ready):
    stats = _new_stats()
    hard_stop = time.monotonic() + 120
    with twittercore.open(url, namespace=ns, **options) as store, Recorder(store, history) as rec:
        ready.put(sink)
        cursor = after
        while not stop.is_set() and time.monotonic() < hard_stop:
            started = time.monotonic()
            try:
                for item in rec.tail(sink, after=cursor, timeout=0.3):
                    _bounded(stats, "tail", started)
                    cursor = item.position
                    stats["observed"].add(item.id)
                    if stop.is_set():
                        break
                    started = time.monotonic()
                _bounded(stats, "tail", started)
            except Exception as exc:
                _error(stats, exc)
                _bounded(stats, "tail", started)
                time.sleep(0.1)
    out.put(stats)


def _load_reader(url, ns, options, history, stop, out, seed, ready):
    rng, stats = random.Random(seed), _new_stats()
    hard_stop = time.monotonic() + 120
    with twittercore.open(url, namespace=ns, **options) as store, Recorder(store, history) as rec:
        ready.put("reader")
        while not stop.is_set() and time.monotonic() < hard_stop:
            started = time.monotonic()
            try:
                stats["observed"].update(e.id for e in rec.home(rng.choice(SINKS), limit=50))
            except Exception as exc:
                _error(stats, exc)
                time.sleep(0.1)
            _bounded(stats, "home", started)
            time.sleep(0.005)
    out.put(stats)


class Load:
    """Two keyed publishers, one tailer per sink and a page reader, each recording a history."""

    def __init__(self, url, ns, options, directory, seed):
        self.url, self.ns, self.options = url, ns, options
        self.histories = [str(directory / f"{ns}-{n}.jsonl") for n in range(3 + len(SINKS) + 1)]
        with twittercore.open(url, namespace=ns, **options) as store, Recorder(store, self.histories[-1]) as rec:
            rec.follow_many([(sink, source) for sink in SINKS for source in SOURCES if (sink + source) % 3])
            for source in SOURCES:  # every log exists before the faults
                event = store.publish(source, b"first", key=f"first-{source}")
                rec.history.publish(event.source, event.id)
            after = store.last_id()
            #: The hash tag of the first source's bucket: the fault goes to its master.
            self.tag = store._tags[store._bucket(SOURCES[0])]
        self.stop, self.out, self.ready = SPAWN.Event(), SPAWN.Queue(), SPAWN.Queue()
        h = iter(self.histories)
        args = (url, ns, options)
        pub = [(next(h), i, self.stop, self.out, seed + i, self.ready) for i in (0, 1)]
        self.procs = [SPAWN.Process(target=_load_publisher, args=(*args, *a)) for a in pub]
        tail = [(next(h), s, after, self.stop, self.out, self.ready) for s in SINKS]
        self.procs += [SPAWN.Process(target=_load_tailer, args=(*args, *a)) for a in tail]
        self.procs.append(
            SPAWN.Process(target=_load_reader, args=(*args, next(h), self.stop, self.out, seed + 7, self.ready))
        )

    def __enter__(self):
        for p in self.procs:
            p.start()
        # Faults start once every process has opened its store (an open reads the slot table).
        for _ in self.procs:
            self.ready.get(timeout=120)
        return self

    def finish(self):
        """Stop the load; the merged stats of every process."""
        self.stop.set()
        merged = _new_stats()
        for _ in self.procs:
            try:
                stats = self.out.get(timeout=60)
            except Exception:
                states = [(p.name, p.is_alive(), p.exitcode) for p in self.procs]
                raise AssertionError(f"a load process did not report within 60 s of the stop: {states}") from None
            merged["longest"] = max(merged["longest"], stats["longest"])
            if merged["longest"] == stats["longest"]:
                merged["slowest_call"] = stats["slowest_call"]
            for k in ("errors", "foreign"):
                merged[k].update(stats[k])
            for k in ("acked", "unresolved"):
                merged[k] += stats[k]
            merged["observed"] |= stats["observed"]
            merged["retried"] += stats["retried"]
        for p in self.procs:
            p.join(30)
            assert p.exitcode == 0, p
        return merged

    def __exit__(self, *exc):
        # A failed assertion must not leave processes that multiprocessing joins at exit.
        self.stop.set()
        for p in self.procs:
            if p.is_alive():
                p.kill()
            p.join(10)
        for q in (self.out, self.ready):
            q.close()
            q.join_thread()


def _audit(url, ns, options, stats, histories):
    """Figures of one trial: what the verifier and the final store say about the load."""
    report = verify(histories)
    lost, doubled = [], 0
    with twittercore.open(url, namespace=ns, **options) as store:
        for _source, id, key in stats["acked"]:
            try:
                if store.event(id).payload != key.encode():
                    lost.append(id)
            except twittercore.NotFoundError:
                lost.append(id)
        existing = set()
        for source in SOURCES:
            payloads = _check_log(store, source)
            doubled += len(payloads) - len(set(payloads)) - (payloads.count(b"first") - 1)
            existing.update(_raw_log(store, source)[0])
        # An acknowledged event must be in its source's log, not only stored.
        lost += [id for _, id, _ in stats["acked"] if id not in existing and id not in lost]
        stored = set()
        for b in range(BUCKETS):
            stored.update(
                int(c) << 10 | b for c in store._call([(store._tags[b], ("HKEYS", store._key(b, "e")))], safe=True)[0]
            )
        store._check()
    return {
        "acked": len(stats["acked"]),
        "lost": len(lost),
        "doubled": doubled,
        "seen_then_gone": len(stats["observed"] - existing),
        "orphans": len(stored - existing),  # stored events in no log: half-applied calls
        "retried_ok": stats["retried"],
        "unresolved": len(stats["unresolved"]),
        "errors": sum(stats["errors"].values()),
        "foreign": dict(stats["foreign"]),
        "longest_call_s": round(stats["longest"], 2),
        "slowest": stats["slowest_call"],
        **{g: report.counts[g] for g in ("G1", "G2", "G3", "G4", "realtime")},
        "report": report,
        "error_kinds": stats["errors"],
    }


def _wait_role(port: int, role: str, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client = _redis(port)
        try:
            info = client.info("replication")
            if info.get("role") == role and (role == "master" or info.get("master_link_status") == "up"):
                return time.monotonic()
        except Exception:
            pass
        finally:
            client.close()
        time.sleep(0.05)
    raise AssertionError(f"node {port} did not become {role} within {timeout} s")


def _replicas_in_sync(cluster: Cluster, timeout: float = 30) -> None:
    """A new cluster reports cluster_state:ok before its replicas have caught up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        linked = 0
        for port in cluster.ports:
            client = _redis(port)
            try:
                info = client.info("replication")
                linked += info.get("role") == "slave" and info.get("master_link_status") == "up"
            finally:
                client.close()
        if linked == cluster.masters * cluster.replicas:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the replicas did not connect to their masters")
    # Linked is not yet acknowledging: on a fresh cluster about half the first writes' WAITs
    # (500 ms at this test's timeout) came back with 0 replicas although every replica was
    # online with lag 0 (2026-12-06, with the code of before and after that day's changes).
    # Wait until a write on every master is confirmed by its replicas within that time.
    import redis

    probe = redis.RedisCluster(host=HOST, port=cluster.ports[0])
    try:
        pending = {f"tc-probe-{i}" for i in range(64)}
        while pending and time.monotonic() < deadline:
            for key in sorted(pending):
                node = probe.get_redis_connection(probe.get_node_from_key(key))
                node.set(key, 1)
                if node.wait(cluster.replicas, 500) >= cluster.replicas:
                    pending.discard(key)
                    node.delete(key)
        assert not pending, "the replicas did not confirm writes"
    finally:
        probe.close()


def _master_with_replica(cluster: Cluster, tag: str) -> tuple[int, int]:
    """The master of ``tag``'s slot and its replica, once the replica is in sync (a new cluster
    reports cluster_state:ok before its replicas have caught up)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        master, replicas = _slot_owner(cluster, tag)
        if replicas:
            _wait_role(replicas[0], "slave")
            return master, replicas[0]
        time.sleep(0.1)
    raise AssertionError(f"the slot of {tag} has no replica")


def _print_trial(label, figures):
    shown = {k: v for k, v in figures.items() if k not in ("report", "error_kinds")}
    print(f"\n{label}: {shown}")
    for kind, count in figures["error_kinds"].most_common(4):
        print(f"    {count} x {kind}")


@pytest.mark.parametrize("wait_replicas", [1, 0])
def test_failover_of_a_frozen_master(tmp_path, wait_replicas):
    options = {"buckets": BUCKETS, "timeout": TIMEOUT, "wait_replicas": wait_replicas}
    totals = collections.Counter()
    started = time.monotonic()
    for trial in range(3):
        cluster = Cluster(3, 1, durable=True).start()
        try:
            ns = f"fo{trial}"
            _replicas_in_sync(cluster)
            load = Load(cluster.url, ns, options, tmp_path, seed=trial * 10)
            victim, replica = _master_with_replica(cluster, load.tag)
            with load:
                time.sleep(1.5)
                frozen = time.monotonic()
                cluster.signal(victim, signal.SIGSTOP)
                try:
                    promoted = _wait_role(replica, "master")
                    time.sleep(1.0)  # the load runs on the new master while the old one is frozen
                finally:
                    cluster.signal(victim, signal.SIGCONT)
                thawed = time.monotonic()
                rejoined = _wait_role(victim, "slave")
                cluster.wait_ok()
                time.sleep(1.5)
                stats = load.finish()
            figures = _audit(cluster.url, ns, options, stats, load.histories)
        finally:
            cluster.stop()
        figures.update(
            failover_s=round(promoted - frozen, 2),
            frozen_s=round(thawed - frozen, 2),
            rejoin_s=round(rejoined - thawed, 2),
        )
        _print_trial(f"failover wait_replicas={wait_replicas} trial {trial}", figures)
        totals.update({k: figures[k] for k in ("acked", "lost", "G1", "G2", "G3", "doubled")})
        assert not figures["foreign"], "calls must fail with twittercore.Error subclasses"
        assert figures["longest_call_s"] < CALL_BOUND, "a call took too long"
        assert figures["G1"] == figures["G2"] == 0, figures["report"].format()
        assert figures["doubled"] == 0, "a retried publish was published twice"
        assert figures["unresolved"] == 0
        if wait_replicas or figures["lost"] == 0:
            # With WAIT every acknowledged publish is on the replica that takes over.
            assert figures["lost"] == 0 and figures["G3"] == 0, figures["report"].format()
    print(f"\nfailover wait_replicas={wait_replicas}: {dict(totals)} in {time.monotonic() - started:.1f} s")


# ----------------------------------------------------------- 3. reshard


def _node_id(port: int) -> str:
    client = _redis(port)
    try:
        return client.execute_command("CLUSTER", "MYID").decode()
    finally:
        client.close()


def _migrate(cluster: Cluster, slot: int, src: int, dst: int, batch: int) -> int:
    """Move ``slot`` as redis-cli --cluster reshard does, ``batch`` keys per MIGRATE,
    pausing between batches so the load meets the slot half moved.  The keys moved."""
    src_id, dst_id = _node_id(src), _node_id(dst)
    source, target = _redis(src), _redis(dst)
    moved = 0
    try:
        target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        for _ in range(1000):
            keys = source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not keys:
                break
            source.execute_command("MIGRATE", HOST, dst, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
            time.sleep(0.05)
        else:
            raise AssertionError(f"slot {slot}: keys kept appearing on the old master")
        for port in cluster.master_ports():
            client = _redis(port)
            try:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            finally:
                client.close()
    finally:
        source.close()
        target.close()
    return moved


def test_reshard_under_load(tmp_path):
    from redis.crc import key_slot

    options = {"buckets": BUCKETS, "timeout": TIMEOUT}
    started = time.monotonic()
    cluster = Cluster(3, 0, durable=True).start()
    try:
        ns = "rs"
        load = Load(cluster.url, ns, options, tmp_path, seed=3)
        src, _ = _slot_owner(cluster, load.tag)
        dst = next(p for p in cluster.master_ports() if p != src)
        tags = [f"{{{ns}.{b}}}" for b in range(BUCKETS)]
        slots = sorted({key_slot(t.encode()) for t in tags if _slot_owner(cluster, t)[0] == src})
        with load:
            time.sleep(1.0)
            moving = time.monotonic()
            moved = sum(_migrate(cluster, slot, src, dst, batch=2) for slot in slots)
            took = time.monotonic() - moving
            cluster.wait_ok()
            time.sleep(1.0)
            stats = load.finish()
        assert all(_slot_owner(cluster, t)[0] != src for t in tags)
        figures = _audit(cluster.url, ns, options, stats, load.histories)
    finally:
        cluster.stop()
    figures.update(slots=len(slots), keys_moved=moved, migration_s=round(took, 2))
    _print_trial("reshard", figures)
    print(f"\nreshard: {time.monotonic() - started:.1f} s")
    assert not figures["foreign"], "calls must fail with twittercore.Error subclasses"
    assert figures["longest_call_s"] < CALL_BOUND
    assert figures["lost"] == figures["doubled"] == figures["unresolved"] == 0
    assert figures["G1"] == figures["G2"] == figures["G3"] == 0, figures["report"].format()
    # Calls on a half-moved slot are refused before they run (every key is declared), never half applied.
    assert figures["orphans"] == 0, "a call stored an event but not its log entry"
    assert not [k for k in figures["error_kinds"] if "non local key" in k]
