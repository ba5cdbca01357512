"""Live subscriptions on every store: what tail delivers, and that it wakes."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from twittercore import Deletion, Event


def positions(items):
    return [(type(i).__name__, i.id) for i in items]


def test_tail_delivers_by_follow_time_with_deletion_notices(store):
    store.publish(1, b"before follow")  # published before the follow: not delivered
    start = store.last_id()
    store.follow(9, 1)
    a = store.publish(1, b"a")
    store.publish(2, b"not followed")
    store.unfollow(9, 1)
    store.publish(1, b"after unfollow")  # not delivered
    store.follow(9, 1)
    b = store.publish(1, b"b")
    store.delete(a.id)  # deleted before it was read: it vanishes, the notice remains
    items = list(store.tail(9, after=start, timeout=0))
    assert positions(items) == [("Event", b.id), ("Deletion", a.id)]
    assert isinstance(items[1], Deletion) and items[1].seq > b.id and items[1].source == 1
    # home() shows the sources followed now, backfilled; tail shows what was owed then
    assert [e.payload for e in store.home(9)] == [b"b", b"after unfollow", b"before follow"]


def test_tail_resumes_from_any_position_without_loss_or_repeat(store):
    store.follow(3, 4)
    start = store.last_id()
    published = [store.publish(4, b"%d" % n).id for n in range(50)]
    seen, cursor = [], start
    for _ in range(10):
        for item in store.tail(3, after=cursor, timeout=0):
            seen.append(item.id)
            cursor = item.position
            if len(seen) % 7 == 0:
                break  # a slow subscriber stops and resumes later
    assert seen == published


def test_tail_wakes_on_a_publish_from_another_thread(store):
    store.follow(5, 6)
    start = store.last_id()
    got = []

    def subscriber():
        for item in store.tail(5, after=start, timeout=5):
            got.append((item, time.monotonic()))
            return

    thread = threading.Thread(target=subscriber)
    thread.start()
    time.sleep(0.05)  # the subscriber is waiting now
    sent = time.monotonic()
    event = store.publish(6, b"wake")
    thread.join(5)
    assert got and got[0][0] == event
    assert got[0][1] - sent < 0.5  # milliseconds in practice; generous for a loaded CI machine


def test_tail_timeout_ends_the_iterator(store):
    began = time.monotonic()
    assert list(store.tail(1, timeout=0.05)) == []
    assert time.monotonic() - began < 2


def test_async_subscribe_yields_what_tail_yields(store):
    store.follow(7, 8)
    start = store.last_id()
    events = [store.publish(8, b"%d" % n) for n in range(5)]

    async def collect():
        out = []
        async for item in store.subscribe(7, after=start):
            out.append(item)
            if len(out) == len(events) + 1:
                return out

    async def main():
        task = asyncio.create_task(collect())
        await asyncio.sleep(0.05)
        late = store.publish(8, b"late")  # arrives while subscribe waits
        return await asyncio.wait_for(task, 10), late

    got, late = asyncio.run(main())
    assert got == events + [late]
    assert all(isinstance(e, Event) for e in got)


def test_many_async_subscribers_park_without_polling_and_all_wake(store):
    sinks = range(100, 160)  # far more than the default executor's threads
    store.follow_many([(sink, 9) for sink in sinks])
    start = store.last_id()
    reads = [0]
    changes = store._changes

    def counted(*args):
        reads[0] += 1
        return changes(*args)

    store._changes = counted

    async def first(sink):
        async for item in store.subscribe(sink, after=start):
            return item

    async def main():
        tasks = [asyncio.create_task(first(sink)) for sink in sinks]
        while len(store._waker._parked if store._waker else ()) < len(sinks):
            await asyncio.sleep(0.01)
        before = reads[0]
        await asyncio.sleep(0.3)
        idle = reads[0] - before  # an idle subscriber reads nothing
        event = store.publish(9, b"x")
        return idle, event, await asyncio.wait_for(asyncio.gather(*tasks), 30)

    idle, event, got = asyncio.run(main())
    assert idle == 0
    assert got == [event] * len(sinks)
    assert not store._waker._parked


def test_a_cancelled_subscriber_leaves_nothing_parked(store):
    async def main():
        task = asyncio.create_task(anext(store.subscribe(1)))
        while not (store._waker and store._waker._parked):
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not store._waker._parked


def test_closing_the_store_ends_parked_subscribers(store):
    async def main():
        async def collect():
            return [item async for item in store.subscribe(1)]

        task = asyncio.create_task(collect())
        while not (store._waker and store._waker._parked):
            await asyncio.sleep(0.01)
        store.close()
        return await asyncio.wait_for(task, 10)

    assert asyncio.run(main()) == []


def test_subscribe_poll_rereads_and_bad_polls_are_refused(store):
    from twittercore import InvalidArgumentError

    async def main(poll):
        return await asyncio.wait_for(anext(store.subscribe(1, poll=poll)), 0.3)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(main(0.01))  # re-reads, finds nothing, keeps waiting
    for bad in (-1, "1", True):
        with pytest.raises(InvalidArgumentError):
            asyncio.run(main(bad))


def test_bad_tail_arguments(store):
    from twittercore import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        store.tail(-1)
    with pytest.raises(InvalidArgumentError):
        store.changes(1, after="x")


def test_wait_returns_on_any_change_or_timeout(store):
    last = store.last_id()
    assert store.wait(last, timeout=0.01) is False
    threading.Timer(0.05, lambda: store.follow(1, 2)).start()
    assert store.wait(last, timeout=5) is True
    assert store.last_id() > last
    assert store.wait(0, timeout=0) is True
