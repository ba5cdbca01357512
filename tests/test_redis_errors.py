"""Errors of the Redis backend on a real cluster: named, bounded in time.

``wait_replicas``: a write is acknowledged only once that many replicas have
it.  A cluster without replicas cannot confirm any, so every write must fail
with a StoreError that says so, within the call's timeout (not the router's
"did not answer" after three timeouts of retries).  A master that accepts TCP
but never answers (frozen) must give a StoreError too, never redis-py's own
exceptions.  The failover tests in ``test_redis_faults.py`` run both against
real replicas.
"""

from __future__ import annotations

import signal
import time

import pytest

import twittercore
from tests.redis_cluster import Cluster, missing_reason


@pytest.fixture(scope="module")
def cluster():
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    started = Cluster(3, 0, durable=False)
    try:
        yield started.start()
    finally:
        started.stop()


def test_unconfirmed_write_is_a_store_error_within_the_timeout(cluster):
    with twittercore.open(cluster.url, namespace="wait1", buckets=4, timeout=0.4, wait_replicas=1) as store:
        started = time.monotonic()
        with pytest.raises(twittercore.StoreError, match="0 of 1 replicas confirmed"):
            store.publish(1, b"x")
        assert time.monotonic() - started < 0.4 * 2
    with twittercore.open(cluster.url, namespace="wait1", buckets=4, timeout=0.4) as store:
        # Applied on the master all the same (the message says it may be lost in a failover).
        assert [e.payload for e in store.timeline(1)] == [b"x"]


def test_wait_replicas_zero_acknowledges_without_replicas(cluster):
    with twittercore.open(cluster.url, namespace="wait0", buckets=4, timeout=0.4, wait_replicas=0) as store:
        assert store.publish(1, b"y").payload == b"y"


def test_wait_replicas_out_of_range_is_refused(cluster):
    with pytest.raises(twittercore.ConfigurationError):
        twittercore.open(cluster.url, namespace="wait2", wait_replicas=17)


def test_frozen_master_is_a_store_error_not_a_redis_exception(cluster):
    with twittercore.open(cluster.url, namespace="frozen", buckets=4, timeout=0.3) as store:
        store.publish(1, b"before")
        tag = store._tags[store._bucket(1)]
        node = store._r._node(tag)
        port = node.connection_pool.connection_kwargs["port"]
        node.connection_pool.disconnect()  # the next call opens a connection: its handshake meets the freeze
        cluster.signal(port, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(twittercore.StoreError, match="did not answer"):
                store.publish(1, b"during")
            took = time.monotonic() - started
        finally:
            cluster.signal(port, signal.SIGCONT)
        assert took < 0.3 * 3 + 1.5, took
        cluster.wait_ok()
        # Nothing was sent while the connection could not be opened: published once, after.
        assert [e.payload for e in store.timeline(1)] == [b"before"]
        assert store.publish(1, b"after").payload == b"after"
