"""Idempotency keys: a retried publish returns the original event, on every backend,
across reopen, processes and kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import twittercore
from tests.conftest import FakeClock, open_kind
from twittercore.errors import InvalidArgumentError, NotFoundError


def test_a_retry_returns_the_first_event_and_publishes_nothing(store):
    first = store.publish(1, b"hello", key="k-1")
    again = store.publish(1, b"a different payload", key=b"k-1")
    assert again == first
    assert store.timeline_count(1) == 1
    assert [e.id for e in store.timeline(1)] == [first.id]


def test_keys_are_scoped_per_source(store):
    a = store.publish(1, b"x", key="same")
    b = store.publish(2, b"x", key="same")
    assert a.id != b.id and store.timeline_count(2) == 1


def test_publish_many_mixes_keyed_and_plain_items(store):
    old = store.publish(3, b"old", key="o")
    batch = store.publish_many([(3, b"a", "n"), (3, b"b", "n"), (3, b"c"), (3, b"d", None), (3, b"e", "o")])
    assert batch[1] == batch[0]  # the same key twice in one call publishes once
    assert batch[4] == old
    assert len({e.id for e in batch}) == 4
    assert store.timeline_count(3) == 4


def test_a_retry_of_a_deleted_event_refuses_and_changes_nothing(store):
    event = store.publish(1, b"x", key="k")
    store.delete(event.id)
    before = store.last_id
    with pytest.raises(NotFoundError, match="deleted"):
        store.publish(1, b"x", key="k")
    with pytest.raises(NotFoundError):  # the whole batch is refused, not just that item
        store.publish_many([(2, b"fine"), (1, b"x", "k")])
    assert store.last_id == before and store.timeline_count(2) == 0


@pytest.mark.parametrize("bad", ["", b"", "\ud800", 7, b"k" * 256, ["k"]])
def test_bad_keys_are_refused_before_anything_changes(store, bad):
    before = store.last_id
    with pytest.raises(InvalidArgumentError, match="key"):
        store.publish(1, b"x", key=bad)
    with pytest.raises(InvalidArgumentError, match=r"items\[1\] key"):
        store.publish_many([(1, b"x"), (1, b"y", bad)])
    assert store.last_id == before


@pytest.mark.parametrize("kind", ["memory", "lmdb-python"])
def test_keys_expire_after_the_retention(kind, tmp_path):
    clock = FakeClock()
    store = open_kind(kind, tmp_path, clock=clock, key_retention=60)
    try:
        first = store.publish(1, b"x", key="k")
        clock.now += 59
        assert store.publish(1, b"x", key="k") == first
        clock.now += 10
        renewed = store.publish(1, b"x", key="k")
        assert renewed.id > first.id
        assert store.publish(1, b"x", key="k") == renewed
        store._check()
    finally:
        store.close()


def test_bad_retention_is_a_configuration_error():
    for bad in (0, -1, "1h", float("inf"), True):
        with pytest.raises(twittercore.ConfigurationError, match="key_retention"):
            twittercore.open(":memory:", key_retention=bad)


def test_keys_survive_reopening(lmdb_path):
    with twittercore.open(lmdb_path) as store:
        first = store.publish(5, b"x", key="survives")
    with twittercore.open(lmdb_path) as store:
        assert store.publish(5, b"x", key="survives") == first
        store._check()


_WRITER = textwrap.dedent(
    """
    import sys, twittercore
    path, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with twittercore.open(path, durable=True) as store:
        for n in range(start, start + count):
            store.publish(n % 7, b"post %d" % n, key=b"key-%d" % n)
            print(n, flush=True)
    """
)


def test_kill_9_inside_keyed_publishes_then_retries_leave_each_post_exactly_once(lmdb_path):
    """A client retries every post it is not sure of; after crashes each exists once."""
    twittercore.open(lmdb_path).close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    total, start = 300, 0
    for _ in range(3):  # three crashes at arbitrary points, each followed by retries from 0
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, lmdb_path, "0", str(total)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        seen = 0
        deadline = time.monotonic() + 30
        while seen < start + 40 and time.monotonic() < deadline:
            if not proc.stdout.readline():
                break
            seen += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        start = seen
    done = subprocess.run(
        [sys.executable, "-c", _WRITER, lmdb_path, "0", str(total)], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    with twittercore.open(lmdb_path) as store:
        payloads = [e.payload for s in range(7) for e in store.timeline(s, limit=200)]
        assert sorted(payloads) == sorted(b"post %d" % n for n in range(total))
        store._check()
