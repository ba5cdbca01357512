"""What only the LMDB store has: files, processes, crashes, map growth, snapshots."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import twittercore
from twittercore import ConfigurationError

SPAWN = multiprocessing.get_context("spawn")  # LMDB handles must not cross a fork


def test_data_survives_close_and_reopen(lmdb_path):
    with twittercore.open(lmdb_path) as store:
        store.follow(1, 2)
        events = store.publish_many([(2, b"a"), (2, b"b")])
    with twittercore.open(lmdb_path) as store:
        assert store.home(1) == list(reversed(events))
        assert store.last_id() == events[-1].id
        assert store.publish(2, b"c").id == events[-1].id + 1


def test_one_store_cannot_be_opened_twice_in_a_process(lmdb_path):
    with twittercore.open(lmdb_path):
        with pytest.raises(ConfigurationError, match="already open in this process"):
            twittercore.open(lmdb_path)
    twittercore.open(lmdb_path).close()  # fine once closed


@pytest.mark.parametrize(
    "options", [{"fanout": "sideways"}, {"kernel": "fortran"}, {"durable": "yes"}, {"progress": "50%"}]
)
def test_bad_options_are_configuration_errors(lmdb_path, options):
    with pytest.raises(ConfigurationError):
        twittercore.open(lmdb_path, **options)
    twittercore.open(lmdb_path).close()  # a refused open leaves nothing locked


@pytest.mark.parametrize("mode", ["write", "hybrid"])
def test_a_rebuild_reports_its_progress_to_the_callback(lmdb_path, mode):
    sinks = 600  # more than two report intervals (256 sinks)
    with twittercore.open(lmdb_path, durable=False) as store:
        store.follow_many([(1000 + n, n % 7) for n in range(sinks)])
        store.publish_many([(n % 7, b"x") for n in range(50)])
        expected = [event.id for event in store.home(1003, 20)]
    calls: list[tuple[int, int]] = []
    with twittercore.open(
        lmdb_path, durable=False, fanout=mode, progress=lambda done, total: calls.append((done, total))
    ) as store:
        assert store.fanout == mode
        assert [event.id for event in store.home(1003, 20)] == expected  # the rebuilt windows answer alike
        store._check()
    assert len(calls) >= 3, calls
    dones = [done for done, _ in calls]
    assert dones == sorted(dones) and len(set(dones)) == len(dones), calls
    assert {total for _, total in calls} == {sinks}
    assert calls[-1] == (sinks, sinks)
    calls.clear()
    with twittercore.open(
        lmdb_path, durable=False, fanout=mode, progress=lambda done, total: calls.append((done, total))
    ):
        pass
    assert calls == []  # same settings: nothing rebuilt, nothing reported


@pytest.mark.parametrize("target", [":memory:", "lmdb"])
def test_progress_must_be_callable_on_every_backend(lmdb_path, target):
    target = lmdb_path if target == "lmdb" else target
    with pytest.raises(ConfigurationError, match="progress"):
        twittercore.open(target, progress=3)
    twittercore.open(target, progress=None).close()
    twittercore.open(target, progress=lambda done, total: None).close()


def test_the_map_grows_by_itself(lmdb_path):
    with twittercore.open(lmdb_path, map_size=1 << 20, durable=False) as store:
        payload = b"x" * 4000
        for _round in range(3):
            store.publish_many([(n % 7, payload) for n in range(1000)])
        assert store._env.info()["map_size"] > 1 << 20
        assert store.timeline_count(3) == sum(1 for n in range(3000) if n % 7 == 3)
        store._check()


def test_a_bulk_follow_grows_the_map_first_and_runs_its_transaction_once(lmdb_path, monkeypatch):
    # writemap starts at a 1 MiB map: 50k follows need ~7 MiB, so without the
    # estimate the transaction would abort and rerun at every doubling.
    with twittercore.open(lmdb_path, durable=False, writemap=True) as store:
        assert store._env.info()["map_size"] == 1 << 20
        runs = []
        apply = store._apply_edges
        monkeypatch.setattr(store, "_apply_edges", lambda txn, *rows: (runs.append(1), apply(txn, *rows)))
        pairs = [(sink, 10_000 + (sink * 7 + n) % 5_000) for sink in range(1_000) for n in range(50)]
        assert store.follow_many(pairs + pairs[:10]) == 50_000
        assert len(runs) == 1
        assert store._env.info()["map_size"] > 1 << 20
        assert store.source_count(3) == 50
        assert store.sink_count(10_000) == sum(1 for _, source in pairs if source == 10_000) > 1
        assert store.unfollow_many(pairs[:10] + [(1, 2)] + pairs[:10]) == 10
        assert store.source_count(0) == 40
        store._check()


def _grow_in_other_process(path: str) -> None:
    with twittercore.open(path, map_size=1 << 20, durable=False) as store:
        store.publish_many([(9, b"y" * 4000) for _ in range(2000)])


def test_a_map_grown_by_another_process_is_adopted(lmdb_path):
    with twittercore.open(lmdb_path, map_size=1 << 20, durable=False) as store:
        store.publish(9, b"first")
        child = SPAWN.Process(target=_grow_in_other_process, args=(lmdb_path,))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        assert store.timeline_count(9) == 2001  # reads adopt the larger map
        store.publish(9, b"after")  # and so do writes
        assert store.timeline(9, limit=1)[0].payload == b"after"


def _grow_together(path: str, source: int, start) -> None:
    start.wait(60)
    for _round in range(6):  # reopening maps the store again while the others grow it
        with twittercore.open(path, map_size=1 << 20, durable=False) as store:
            for _batch in range(4):
                store.publish_many([(source, b"z" * 3000) for _ in range(150)])


def test_processes_growing_one_writemap_store_at_once_never_cut_each_others_map(lmdb_path):
    # LMDB ftruncates a writemap file to the size it maps: a process adopting a
    # stale, smaller size would cut pages another is writing (a SIGBUS there).
    twittercore.open(lmdb_path, map_size=1 << 20, durable=False).close()
    start = SPAWN.Event()
    children = [SPAWN.Process(target=_grow_together, args=(lmdb_path, s, start)) for s in range(3)]
    for child in children:
        child.start()
    start.set()
    for child in children:
        child.join(240)
    assert [child.exitcode for child in children] == [0, 0, 0]
    with twittercore.open(lmdb_path, durable=False) as store:
        assert [store.timeline_count(s) for s in range(3)] == [6 * 4 * 150] * 3
        store._check()


def _publish_one(path: str) -> None:
    with twittercore.open(path, durable=False) as store:
        store.publish(9, b"from another process")


def test_an_async_subscriber_wakes_on_another_process_commit(lmdb_path):
    import asyncio

    with twittercore.open(lmdb_path, durable=False) as store:
        store.follow(1, 9)
        start = store.last_id()

        async def main():
            first = asyncio.create_task(anext(store.subscribe(1, after=start)))
            while not (store._waker and store._waker._parked):
                await asyncio.sleep(0.01)
            child = SPAWN.Process(target=_publish_one, args=(lmdb_path,))
            child.start()
            try:
                return await asyncio.wait_for(first, 60)
            finally:
                await asyncio.to_thread(child.join, 60)

        assert asyncio.run(main()).payload == b"from another process"


_CRASHER = """
import os, signal, sys, twittercore
store = twittercore.open(sys.argv[1])  # durable by default
for n in range(200):
    event = store.publish(n % 3, b"event %d" % n)
print(event.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no close, no atexit
"""


def test_returned_publishes_survive_kill_9(lmdb_path):
    run = subprocess.run([sys.executable, "-c", _CRASHER, lmdb_path], capture_output=True, text=True, timeout=120)
    assert run.returncode == -signal.SIGKILL, run.stderr
    last_id = int(run.stdout.split()[-1])
    with twittercore.open(lmdb_path) as store:
        assert store.last_id() == last_id
        assert sum(store.timeline_count(s) for s in range(3)) == 200
        assert store.event(last_id).payload == b"event 199"
        store._check()


def test_threads_publishing_and_reading_at_once(lmdb_path):
    store = twittercore.open(lmdb_path, durable=False)
    store.follow_many([(100, s) for s in range(4)])
    errors = []

    def publisher(source):
        for n in range(300):
            store.publish(source, b"%d" % n)

    def reader():
        try:
            for _ in range(300):
                ids = [e.id for e in store.home(100, limit=50)]
                assert ids == sorted(set(ids), reverse=True)
        except AssertionError as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publisher, args=(s,)) for s in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for source in range(4):  # each source's events in publish order (G1)
        assert [e.payload for e in store.timeline(source, limit=300)] == [b"%d" % n for n in reversed(range(300))]
    store._check()
    store.close()


# ------------------------------------------------ two processes, one store

EVENTS = 10_000
SOURCES = 7


def _publish_one_by_one(path: str, ready) -> None:
    with twittercore.open(path, durable=False) as store:
        ready.wait()
        for n in range(EVENTS):
            store.publish(n % SOURCES, b"%d" % n)


def test_reads_racing_a_publisher_in_another_process_are_snapshots(lmdb_path):
    """Every page: strictly decreasing ids, none missing between its ends, never older than the last page."""
    with twittercore.open(lmdb_path, durable=False) as store:
        store.follow_many([(1, s) for s in range(SOURCES)])
        base = store.last_id()
        ready = SPAWN.Event()
        child = SPAWN.Process(target=_publish_one_by_one, args=(lmdb_path, ready))
        child.start()
        ready.set()
        newest_seen, reads, deadline = 0, 0, time.monotonic() + 120
        while time.monotonic() < deadline:
            page = store.home(1, limit=50)
            reads += 1
            if page:
                ids = [e.id for e in page]
                # publishes are the only mutations, so ids are consecutive: no gap, no reorder
                assert ids == list(range(ids[0], ids[0] - len(ids), -1)), ids
                for e in page:
                    assert e.payload == b"%d" % (e.id - base - 1)
                    assert e.source == (e.id - base - 1) % SOURCES
                assert ids[0] >= newest_seen, (ids[0], newest_seen)
                newest_seen = ids[0]
                if len(page) < 50:
                    assert ids[-1] == base + 1  # a short page reaches the very first event
            if newest_seen == base + EVENTS:
                break
        child.join(60)
        assert child.exitcode == 0
        assert newest_seen == base + EVENTS
        assert reads > 10, reads
        print("reads during the race:", reads)
        store._check()


def test_backup_is_a_consistent_compact_copy(tmp_path):
    with twittercore.open(str(tmp_path / "live"), durable=False) as store:
        store.follow(1, 2)
        events = store.publish_many([(2, b"%d" % n) for n in range(500)])
        store.backup(str(tmp_path / "copy"))
        store.publish(2, b"after the backup")
        with pytest.raises(ConfigurationError, match="not empty"):
            store.backup(str(tmp_path / "copy"))
    copy_size = os.path.getsize(tmp_path / "copy" / "data.mdb")
    assert copy_size < 50 * 1024 * 1024  # not the sparse 16 GiB map
    with twittercore.open(str(tmp_path / "copy")) as copy:
        assert [e.id for e in copy.home(1, limit=1000)] == [e.id for e in reversed(events)]
        copy._check()


def test_home_pages_reach_below_the_heads_into_sealed_chunks(lmdb_path):
    # Each source's head holds its newest ids; older pages of a home read
    # load the older chunks of the streams the merge reports short.
    reference = twittercore.open(":memory:")
    with twittercore.open(lmdb_path, durable=False) as store:
        for s in (store, reference):
            s.follow_many([(9, 1), (9, 2), (9, 3)])
            s.publish_many([(1 + n % 3 if n < 600 else 2, b"%d" % n) for n in range(900)])
            s.delete(s.timeline(2, limit=1)[0].id)

        def view(events):
            return [(e.id, e.source, e.payload) for e in events]  # times are each store's own clock

        walked = []
        page = store.home(9, limit=50)
        while page:
            walked += page
            assert view(page) == view(reference.home(9, limit=50, max_id=page[0].id))
            page = store.home(9, limit=50, max_id=page[-1].id - 1)
        assert view(walked) == view(reference.home(9, limit=10_000)) and len(walked) == 899
