#!/usr/bin/env python3
"""How home-read cost grows with the store: the same k at 10k, 100k and 1M users.

    python benchmarks/bench_scale.py [--quick] [--users 10000,100000,1000000] [--followees 100]
                                     [--posts-per-user 10] [--fanout read] [--out reports/bench-scale]

For each user count, in a fresh process (so peak RSS is that store's alone):
builds an LMDB store (``durable=False``, event cache off) where every user
follows ``--followees`` uniformly random others (``follow_many`` in batches
of 1M edges) and ``--posts-per-user`` x users posts of 140 B by uniformly
random authors (``publish_many`` in batches of 10k), then reads the home page
(newest 50 with payloads) of ``--reads`` distinct random sinks, each once
(cold: no sink read before): half in the building process, half after
closing and reopening the store (a restarted service).  The edges are generated batch by batch (numpy),
so the generator never holds the graph.

Reports build time (follows, posts), disk (blocks allocated under the store)
and data (LMDB's pages in use: a writemap file is its whole reserved map),
peak RSS of the building process (and its anonymous part: RSS also counts
the store's pages the process has mapped), home p50/p99, the p50 ratio to the
smallest store and the page faults per read (major: read from disk; minor:
in the page cache, mapped on first touch); writes ``scale.json``, ``scale.md`` and a log-log plot
``scale.png`` of home p50 against users.  At 1M users and k = 100 the store
holds 100M follows and 10M posts (about 10 GB of disk with both edge
directions); only ``fanout="read"`` is practical there on a small machine
(fan-out on write would make 1G deliveries).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from typing import Any

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import numpy as np  # noqa: E402

import twittercore  # noqa: E402
from twittercore.tools.percentiles import percentile  # noqa: E402

PAGE = 50
PAYLOAD = b"p" * 140
EDGE_BATCH = 1_000_000
POST_BATCH = 10_000


def _disk(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


def _anon() -> int:
    """This process's resident anonymous memory (heap, not the store's mapped pages); 0 off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reads(store: Any, sinks: list[int]) -> dict[str, float]:
    """Home reads of ``sinks``, each once: p50/p99 and page faults per read."""
    took = []
    before = resource.getrusage(resource.RUSAGE_SELF)
    for sink in sinks:
        t0 = time.perf_counter()
        page = store.home(sink, PAGE)
        took.append(time.perf_counter() - t0)
        assert len(page) <= PAGE
    after = resource.getrusage(resource.RUSAGE_SELF)
    took.sort()
    n = max(1, len(took))
    return {
        "home_p50_us": percentile(took, 50, presorted=True) * 1e6,
        "home_p99_us": percentile(took, 99, presorted=True) * 1e6,
        "reads": len(took),
        "major_faults_per_read": (after.ru_majflt - before.ru_majflt) / n,
        "minor_faults_per_read": (after.ru_minflt - before.ru_minflt) / n,
    }


def _say(message: str) -> None:
    print(message, flush=True)


def run_one(users: int, followees: int, per_user: int, reads: int, fanout: str, seed: int, out: Any) -> None:
    """Build and read one store (in a child process); puts its figures on ``out``."""
    rng = np.random.default_rng(seed)
    where = tempfile.mkdtemp(prefix=f"tc-scale-{users}-")
    path = os.path.join(where, "store")
    try:
        with twittercore.open(path, durable=False, event_cache=0, fanout=fanout) as store:
            began = time.perf_counter()
            per_batch = max(1, EDGE_BATCH // followees)
            anon = 0
            edges = 0
            for first in range(0, users, per_batch):
                sinks = np.repeat(np.arange(first, min(users, first + per_batch), dtype=np.int64), followees)
                sources = rng.integers(0, users, size=len(sinks), dtype=np.int64)
                edges += store.follow_many(list(zip(sinks.tolist(), sources.tolist())))
                anon = max(anon, _anon())
                if first // per_batch % 20 == 0:
                    _say(
                        f"  {users:,} users: {first + per_batch:,} sinks' follows in {time.perf_counter() - began:.0f} s"
                    )
            follows_s = time.perf_counter() - began
            posts = users * per_user
            began = time.perf_counter()
            for first in range(0, posts, POST_BATCH):
                authors = rng.integers(0, users, size=min(POST_BATCH, posts - first), dtype=np.int64).tolist()
                store.publish_many([(a, PAYLOAD) for a in authors])
                if first // POST_BATCH % 10 == 0:
                    anon = max(anon, _anon())
                if first // POST_BATCH % 100 == 0:
                    _say(f"  {users:,} users: {first + POST_BATCH:,} posts in {time.perf_counter() - began:.0f} s")
            posts_s = time.perf_counter() - began
            anon = max(anon, _anon())
            sinks = rng.choice(users, size=min(reads, users), replace=False).tolist()
            built = _reads(store, sinks[: len(sinks) // 2])
            # The pages in use (LMDB's last page): under writemap the file is the
            # whole reserved map, so "disk" alone overstates the data.
            info = store._env.info()
            data = (info["last_pgno"] + 1) * store._env.stat()["psize"]
        # The other half after a reopen: a restarted service maps nothing yet.
        with twittercore.open(path, durable=False, event_cache=0, fanout=fanout) as store:
            reopened = _reads(store, sinks[len(sinks) // 2 :])
            anon = max(anon, _anon())
        out.put(
            {
                "users": users,
                "follows": edges,
                "posts": posts,
                "follows_s": follows_s,
                "posts_s": posts_s,
                "build_s": follows_s + posts_s,
                "disk_bytes": _disk(path),
                "data_bytes": data,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "peak_anon_bytes": anon,
                **{key: value for key, value in built.items()},
                **{f"reopened_{key}": value for key, value in reopened.items()},
            }
        )
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _table(rows: list[dict[str, Any]], fanout: str, followees: int) -> str:
    base = rows[0]["home_p50_us"]
    lines = [
        f"fanout={fanout!r}, k = {followees}, newest {PAGE} with payloads, each sink read once, event cache off",
        "",
        "| users | follows | posts | build (follows + posts) | disk (data) | peak RSS (anon) | home p50 / p99 "
        "| p50 vs smallest | faults per read (disk / minor) | reopened: p50 / p99 | faults (disk / minor) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['users']:,} | {r['follows']:,} | {r['posts']:,} | {r['build_s']:.0f} s "
            f"({r['follows_s']:.0f} + {r['posts_s']:.0f}) | {r['disk_bytes'] / 2**30:.2f} GiB "
            f"({r['data_bytes'] / 2**30:.2f}) | "
            f"{r['peak_rss_bytes'] / 2**30:.2f} GiB ({r['peak_anon_bytes'] / 2**30:.2f}) | "
            f"{r['home_p50_us']:.0f} / {r['home_p99_us']:.0f} µs | {r['home_p50_us'] / base:.2f}× | "
            f"{r['major_faults_per_read']:.2f} / {r['minor_faults_per_read']:.1f} | "
            f"{r['reopened_home_p50_us']:.0f} / {r['reopened_home_p99_us']:.0f} µs | "
            f"{r['reopened_major_faults_per_read']:.2f} / {r['reopened_minor_faults_per_read']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict[str, Any]], path: str, fanout: str, followees: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    users = [r["users"] for r in rows]
    ax.loglog(users, [r["home_p50_us"] for r in rows], "o-", label="home p50")
    ax.loglog(users, [r["home_p99_us"] for r in rows], "s--", label="home p99")
    ax.loglog(users, [r["reopened_home_p50_us"] for r in rows], "^:", label="home p50, store reopened")
    ax.set_xlabel("users (store size; k fixed)")
    ax.set_ylabel("µs per home read")
    ax.set_title(f"LMDB fanout={fanout}, k = {followees}: read cost vs store size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k users, k = 20 (seconds)")
    parser.add_argument("--users", default="10000,100000,1000000")
    parser.add_argument("--followees", type=int, default=100)
    parser.add_argument("--posts-per-user", type=int, default=10)
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--fanout", default="read", choices=["read", "write", "hybrid"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3_600.0, help="seconds per store before it is killed")
    parser.add_argument("--out", default=os.path.join("reports", "bench-scale"))
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.followees, args.reads = "1000,10000", 20, 300
    sizes = [int(n) for n in args.users.split(",")]
    os.makedirs(args.out, exist_ok=True)
    spawn = multiprocessing.get_context("spawn")
    rows = []
    load = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for users in sizes:
        _say(f"{users:,} users, k = {args.followees}, {args.posts_per_user} posts each ...")
        out = spawn.Queue()
        child = spawn.Process(
            target=run_one,
            args=(users, args.followees, args.posts_per_user, args.reads, args.fanout, args.seed, out),
        )
        child.start()
        child.join(args.timeout)
        if child.is_alive():
            child.kill()
            child.join()
            _say(f"  {users:,} users: killed after {args.timeout:g} s")
            break
        if child.exitcode != 0 or out.empty():
            _say(f"  {users:,} users: failed (exit code {child.exitcode})")
            break
        row = out.get()
        rows.append(row)
        _say(
            f"  built in {row['build_s']:.0f} s, {row['disk_bytes'] / 2**30:.2f} GiB, "
            f"home p50 {row['home_p50_us']:.0f} µs p99 {row['home_p99_us']:.0f} µs"
        )
    if not rows:
        return 1
    table = _table(rows, args.fanout, args.followees)
    header = f"`python benchmarks/bench_scale.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
    header += f" (started {started}, load average {load:.2f} at the start)\n\n"
    with open(os.path.join(args.out, "scale.md"), "w") as f:
        f.write(header + table)
    with open(os.path.join(args.out, "scale.json"), "w") as f:
        json.dump({"fanout": args.fanout, "followees": args.followees, "load_start": load, "rows": rows}, f, indent=1)
    _plot(rows, os.path.join(args.out, "scale.png"), args.fanout, args.followees)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
