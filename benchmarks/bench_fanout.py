"""Fan-out microbenchmarks (issue 5): pushes per second, single publishes, home reads per strategy.

    .venv/bin/python -m pytest benchmarks/bench_fanout.py --benchmark-only -s

The graph is the one the issue names: 10,000 sinks, each following 100
distinct random sources out of 10,000 (1M edges, ~100 followers per source),
140-byte payloads, ``durable=False``.

* ``test_fanout_batched``: a fresh ``fanout="write"`` store gets the whole
  graph in one ``follow_many``, then ``publish_many`` batches of 50,000 events
  from random sources.  Two warm-up batches first fill every window past its
  800 ids, so the timed batches pay trimming too (the steady state).
  Deliveries/s = the rise of ``store.deliveries`` (ids pushed into windows)
  over the time of the timed batches.  Target: >= 2,000,000/s.  Also
  reported per second of the process's CPU time, which the load of other
  jobs on a shared machine moves far less than wall time.
* ``test_publish_one``: one ``publish`` per call from a random source, on the
  same graph in ``read``, ``write`` and ``hybrid`` stores.  Deliveries/s for
  every strategy counts what a publish makes visible (followers of the
  published source); for ``write`` it equals the ids actually pushed.
* ``test_home_newest_50``: ``home(sink, 50)`` with payloads for random sinks
  (k = 100 sources each) on identical data in each strategy: the data is built
  once in ``read`` mode (500,000 events), copied, and each copy reopened with
  its ``fanout=`` (reopening rebuilds the windows).  Target for ``write``:
  <= 40 us p50 (Redis sorted sets measure ~160 us on this machine kind).

Each test prints its figure with ``os.getloadavg()`` (run with ``-s``) and
records it in ``benchmark.extra_info``; the machine is shared, so compare the
strategies within one run.
"""

from __future__ import annotations

import os
import random
import shutil
import time

import lmdb
import pytest

import twittercore

SINKS = int(os.environ.get("BENCH_SINKS", "10000"))
SOURCES = int(os.environ.get("BENCH_SOURCES", "10000"))
K = int(os.environ.get("BENCH_K", "100"))
EVENTS = int(os.environ.get("BENCH_EVENTS", "500000"))
BATCH = 50_000
PAYLOAD = b"p" * 140
# Sinks live in their own id range so a node is never both (it would not
# matter to the store, but it keeps the figures easy to read).
SINK_BASE = 1 << 40
MODES = ("read", "write", "hybrid")


def _pairs(seed: int = 5) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(SINK_BASE + i, source) for i in range(SINKS) for source in rng.sample(range(SOURCES), K)]


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


@pytest.fixture(scope="module")
def base_path(tmp_path_factory):
    """The graph plus EVENTS events, built once in read mode (cheap), closed."""
    path = str(tmp_path_factory.mktemp("fanout") / "base")
    rng = random.Random(11)
    with twittercore.open(path, fanout="read", durable=False) as store:
        store.follow_many(_pairs())
        for start in range(0, EVENTS, 100_000):
            store.publish_many([(rng.randrange(SOURCES), PAYLOAD) for _ in range(min(100_000, EVENTS - start))])
    return path


def _copy(source: str, target: str) -> None:
    """Copy a closed store with LMDB's own compacting copy.

    Not ``shutil.copytree``: with ``writemap`` LMDB sizes data.mdb to the whole
    map (16 GiB, sparse), and a plain copy writes every one of those zeros.
    """
    os.makedirs(target)
    env = lmdb.open(source, readonly=True, lock=False, max_dbs=16, subdir=True)
    try:
        env.copy(target, compact=True)
    finally:
        env.close()


@pytest.fixture(scope="module", params=MODES)
def mode_store(request, base_path, tmp_path_factory):
    """A private copy of the base store reopened with ``fanout=<mode>``.

    Module scope with a parameter: pytest runs every test of one mode, then
    closes that store before opening the next, so one copy is open at a time.
    """
    path = str(tmp_path_factory.mktemp(f"fanout-{request.param}") / "store")
    _copy(base_path, path)
    started = time.perf_counter()
    store = twittercore.open(path, fanout=request.param, durable=False, event_cache=0)  # measure lookups, not the cache
    store.reopen_seconds = time.perf_counter() - started
    yield store
    store.close()
    shutil.rmtree(path, ignore_errors=True)


def test_fanout_batched(benchmark, tmp_path):
    """Deliveries per second of ``publish_many`` batches of 50,000 events, fanout=write."""
    benchmark.group = "fanout batched"
    rng = random.Random(3)
    store = twittercore.open(str(tmp_path / "w"), fanout="write", durable=False)
    pairs = _pairs()
    started = time.perf_counter()
    store.follow_many(pairs)
    follow_seconds = time.perf_counter() - started
    rounds, warmup = 5, 2
    batches = iter([[(rng.randrange(SOURCES), PAYLOAD) for _ in range(BATCH)] for _ in range(rounds + warmup)])
    timed = {"deliveries": 0, "seconds": 0.0, "cpu": 0.0, "calls": 0}

    def one_batch() -> None:
        batch = next(batches)
        before = store.deliveries
        c0, t0 = time.process_time(), time.perf_counter()
        store.publish_many(batch)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        timed["calls"] += 1
        if timed["calls"] > warmup:  # pedantic runs the warm-up rounds through this function too
            timed["deliveries"] += store.deliveries - before
            timed["seconds"] += seconds
            timed["cpu"] += cpu

    benchmark.pedantic(one_batch, rounds=rounds, iterations=1, warmup_rounds=warmup)
    rate = timed["deliveries"] / timed["seconds"]
    # On a shared machine the process is often off the CPU: deliveries per
    # second of its own CPU time is the figure that load does not move much.
    cpu_rate = timed["deliveries"] / timed["cpu"]
    benchmark.extra_info.update(
        deliveries_per_s=round(rate),
        deliveries_per_cpu_s=round(cpu_rate),
        cpu_share=round(timed["cpu"] / timed["seconds"], 2),
        events_per_s=round(BATCH * rounds / timed["seconds"]),
        deliveries_per_event=timed["deliveries"] / (BATCH * rounds),
        follow_many_seconds=round(follow_seconds, 2),
        loadavg=os.getloadavg(),
    )
    print(
        f"\nfanout=write publish_many({BATCH:,}): {rate:,.0f} deliveries/s "
        f"({BATCH * rounds / timed['seconds']:,.0f} events/s; {cpu_rate:,.0f} per CPU second, "
        f"on CPU {timed['cpu'] / timed['seconds']:.0%} of the time); follow_many of {len(pairs):,} edges "
        f"{follow_seconds:.1f} s; target >= 2,000,000/s; {_load()}"
    )
    store.close()


def test_home_newest_50(benchmark, mode_store):
    """One home page (newest 50 with payloads) of a random sink following K sources."""
    mode = mode_store.fanout
    benchmark.group = f"home newest 50, k={K}"
    rng = random.Random(4)
    sinks = [SINK_BASE + rng.randrange(SINKS) for _ in range(4096)]
    position = iter(range(1 << 62))

    def read() -> int:
        return len(mode_store.home(sinks[next(position) & 4095], 50))

    for _ in range(200):  # warm the page cache and the code paths
        read()
    assert benchmark(read) == 50
    stats = benchmark.stats.stats
    p50 = stats.median * 1e6
    benchmark.extra_info.update(
        fanout=mode, p50_us=round(p50, 1), reopen_seconds=round(mode_store.reopen_seconds, 2), loadavg=os.getloadavg()
    )
    target = "  (target <= 40 us)" if mode == "write" else ""
    print(f"\nhome newest 50, k={K}, fanout={mode}: p50 {p50:.1f} us{target}; {_load()}")


def test_publish_one(benchmark, mode_store):
    """One ``publish`` per call from a random source (~100 followers), per strategy."""
    mode = mode_store.fanout
    benchmark.group = "publish one"
    rng = random.Random(6)
    sources = [rng.randrange(SOURCES) for _ in range(4096)]
    followers = {s: mode_store.sink_count(s) for s in set(sources)}
    position = iter(range(1 << 62))
    made_visible = [0]

    def publish() -> None:
        source = sources[next(position) & 4095]
        mode_store.publish(source, PAYLOAD)
        made_visible[0] += followers[source]

    before = mode_store.deliveries
    benchmark.pedantic(publish, rounds=1000, iterations=1, warmup_rounds=20)
    stats = benchmark.stats.stats
    calls = 1020
    seconds = stats.total  # the timed rounds only
    visible = made_visible[0] * 1000 / calls  # the warm-up calls are not in stats.total
    pushed = (mode_store.deliveries - before) * 1000 / calls
    benchmark.extra_info.update(
        fanout=mode,
        publishes_per_s=round(1000 / seconds),
        deliveries_per_s=round(visible / seconds),
        pushed_per_s=round(pushed / seconds),
        p50_us=round(stats.median * 1e6, 1),
        loadavg=os.getloadavg(),
    )
    print(
        f"\npublish one, fanout={mode}: p50 {stats.median * 1e6:.0f} us, {1000 / seconds:,.0f} publishes/s, "
        f"{visible / seconds:,.0f} deliveries/s (pushed {pushed / seconds:,.0f}/s); {_load()}"
    )
