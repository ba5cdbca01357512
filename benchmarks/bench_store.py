"""Store microbenchmarks (issue 2): home reads, single publishes and batches.

    .venv/bin/python -m pytest benchmarks/bench_store.py --benchmark-only

Home reads run on the layout PERF_FACTS measures: 10,000 sources with ~200
events each (2M events, 140-byte payloads), sinks following k = 50, 200 and
1,000 random sources, newest 50 with payloads.  Each read is compared, in the
same run, with the compiled kernel and with the pure-Python twin on the same
files (the seed's "change the language, keep the design").  Reads run with
``event_cache=0`` so that they measure LMDB lookups, comparable with the
ceilings in PERF_FACTS; one case shows the default cache on repeated reads.
"""

from __future__ import annotations

import os
import random

import pytest

import twittercore

SOURCES = int(os.environ.get("BENCH_SOURCES", 10_000))
PER_SOURCE = int(os.environ.get("BENCH_PER_SOURCE", 200))
PAYLOAD = b"p" * 140
SINK_BASE = 1 << 40


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """Build the 2M-event store once (a few seconds), in arrival order."""
    path = str(tmp_path_factory.mktemp("bench") / "store")
    rng = random.Random(7)
    with twittercore.open(path, durable=False) as store:
        total = SOURCES * PER_SOURCE
        for _ in range(0, total, 100_000):
            store.publish_many([(rng.randrange(SOURCES), PAYLOAD) for _ in range(min(100_000, total))])
        for k in (50, 200, 1000):
            store.follow_many([(SINK_BASE + k, s) for s in rng.sample(range(SOURCES), k)])
    return path


@pytest.fixture(params=["cython", "python"])
def reader(request, store_path):
    # event_cache=0: measure the store's lookups, not the in-process event cache
    store = twittercore.open(store_path, durable=False, kernel=request.param, event_cache=0)
    yield store
    store.close()


@pytest.mark.parametrize("k", [50, 200, 1000])
def test_home_newest_50(benchmark, reader, k):
    benchmark.group = f"home k={k}"
    sink = SINK_BASE + k
    page = benchmark(reader.home, sink, 50)
    assert len(page) == 50


def test_home_newest_50_with_event_cache(benchmark, store_path):
    """The default configuration: repeated reads hit the decoded-event cache."""
    benchmark.group = "home k=200, event cache on"
    with twittercore.open(store_path, durable=False) as store:
        assert len(benchmark(store.home, SINK_BASE + 200, 50)) == 50


@pytest.mark.parametrize("k", [200])
def test_home_page_2(benchmark, reader, k):
    benchmark.group = f"home page 2 k={k}"
    sink = SINK_BASE + k
    max_id = reader.home(sink, 50)[-1].id - 1
    assert len(benchmark(reader.home, sink, 50, max_id)) == 50


@pytest.fixture(params=[True, False], ids=["durable", "not-durable"])
def writer(request, tmp_path):
    store = twittercore.open(str(tmp_path / "w"), durable=request.param)
    store.publish_many([(n % 1000, PAYLOAD) for n in range(100_000)])
    yield store
    store.close()


def test_publish_one(benchmark, writer):
    benchmark.group = "publish one"
    rng = random.Random(1)
    benchmark(lambda: writer.publish(rng.randrange(1000), PAYLOAD))


def test_publish_many_100k(benchmark, tmp_path):
    """Events per second = 100,000 / the mean time."""
    benchmark.group = "publish_many 100k"
    store = twittercore.open(str(tmp_path / "m"), durable=False)
    rng = random.Random(2)
    batches = iter([[(rng.randrange(SOURCES), PAYLOAD) for _ in range(100_000)] for _ in range(8)])
    benchmark.pedantic(lambda: store.publish_many(next(batches)), rounds=6, iterations=1, warmup_rounds=1)
    store.close()
