"""Durable publishes with and without group commit: acknowledged events/s and publish latency.

    PYTHONPATH=src python benchmarks/bench_group_commit.py [--threads 1 4 16 32] [--processes 2]
        [--seconds 3] [--quick] [--out reports/group-commit]

Every case opens a fresh durable LMDB store (``durable=True``: every commit
is fsynced) on the disk under ``--dir`` (default: a temporary directory
beside the output; never a tmpfs, where fsync is free) and runs publishers
for ``--seconds``: each publisher calls ``store.publish(source, 140 bytes)``
in a loop, one source per publisher.  An event counts once ``publish``
returned, i.e. once the fsync that covers it is done.  Cases:

* ``N threads``: N threads of one process share one handle;
* ``P processes x N threads``: P processes, each with its own handle and N
  threads, on one store (LMDB's write lock serialises their commits);

each with ``group_commit=False`` (one transaction and one fsync per call)
and ``group_commit=True`` (the default: concurrent calls share one), in
alternating order so a burst of machine load hits both alike.  Reports
events/s, the ratio on/off, commits per second, calls per commit, and the
p50/p99 of one publish call; writes ``group_commit.json`` and a PNG.
Targets (issue 13): >= 50,000 events/s with 16 threads in one process,
>= 20,000 events/s from 2 processes together.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import twittercore
from twittercore.tools.percentiles import percentile

PAYLOAD = b"x" * 140


def _publishers(path: str, threads: int, seconds: float, group: bool, base: int, start: float) -> dict[str, Any]:
    """Run ``threads`` publishers on one handle until ``start + seconds``; counts and latencies (µs)."""
    store = twittercore.open(path, group_commit=group)
    counts = [0] * threads
    lat: list[list[float]] = [[] for _ in range(threads)]

    def run(n: int) -> None:
        source, mine, clock = base + n, lat[n], time.perf_counter
        while time.time() < start:
            time.sleep(0.0005)
        end = start + seconds
        done = 0
        while time.time() < end:
            t = clock()
            store.publish(source, PAYLOAD)
            mine.append((clock() - t) * 1e6)
            done += 1
        counts[n] = done

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    g = store._group  # type: ignore[attr-defined]
    commits = g.commits if g is not None else sum(counts)
    store.close()
    return {"events": sum(counts), "commits": commits, "latency_us": [x for part in lat for x in part]}


def _child(path: str, threads: int, seconds: float, group: bool, base: int, start: float, queue: Any) -> None:
    queue.put(_publishers(path, threads, seconds, group, base, start))


def case(root: Path, processes: int, threads: int, seconds: float, group: bool) -> dict[str, Any]:
    path = tempfile.mkdtemp(dir=root)
    twittercore.open(path).close()  # create it once, so the processes only open
    start = time.time() + 0.5
    try:
        if processes == 1:
            parts = [_publishers(path, threads, seconds, group, 0, start)]
        else:
            ctx = multiprocessing.get_context("spawn")  # an LMDB handle must not cross a fork
            queue = ctx.Queue()
            start = time.time() + 2.0  # spawn start-up
            procs = [
                ctx.Process(target=_child, args=(path, threads, seconds, group, p * 1000, start, queue))
                for p in range(processes)
            ]
            for p in procs:
                p.start()
            parts = [queue.get(timeout=seconds + 60) for _ in procs]
            for p in procs:
                p.join(30)
        with twittercore.open(path) as store:
            sources = [p * 1000 + n for p in range(processes) for n in range(threads)]
            stored = sum(store.timeline_count(s) for s in sources)
    finally:
        shutil.rmtree(path, ignore_errors=True)
    events = sum(p["events"] for p in parts)
    if stored != events:
        raise SystemExit(f"group commit: {events} publishes returned but {stored} events are stored")
    commits = sum(p["commits"] for p in parts)
    lat = [x for p in parts for x in p["latency_us"]]
    return {
        "processes": processes,
        "threads": threads,
        "group_commit": group,
        "events": events,
        "stored": stored,
        "events_per_s": events / seconds,
        "commits_per_s": commits / seconds,
        "calls_per_commit": events / commits if commits else 0.0,
        "p50_us": percentile(lat, 50),
        "p99_us": percentile(lat, 99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--processes", type=int, default=2, help="the multi-process case (16 threads each; 0: skip)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="1 and 16 threads, 1 s each")
    parser.add_argument("--out", default="reports/group-commit")
    parser.add_argument("--dir", default=None, help="where the stores go (default: under --out)")
    args = parser.parse_args(argv)
    if args.quick:
        args.threads, args.seconds = [1, 16], 1.0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(args.dir or out / "stores")
    root.mkdir(parents=True, exist_ok=True)
    plan = [(1, n) for n in args.threads] + ([(args.processes, 16)] if args.processes > 1 else [])
    rows: list[dict[str, Any]] = []
    for i, (procs, threads) in enumerate(plan):
        order = (False, True) if i % 2 == 0 else (True, False)
        for group in order:
            label = f"{procs} processes x {threads} threads" if procs > 1 else f"{threads} threads"
            print(f"  {label}, group_commit={group} ...", file=sys.stderr, flush=True)
            rows.append(case(root, procs, threads, args.seconds, group))
    shutil.rmtree(root, ignore_errors=True)
    load = os.getloadavg()
    print(f"\nDurable publishes, {args.seconds:g} s per case, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print(
        f"| {'publishers':<26} | {'group':>5} | {'events/s':>9} | {'vs off':>6} | {'commits/s':>9} "
        f"| {'calls/commit':>12} | {'p50 µs':>8} | {'p99 µs':>8} |"
    )
    print(f"|{'-' * 28}|{'-' * 7}|{'-' * 11}|{'-' * 8}|{'-' * 11}|{'-' * 14}|{'-' * 10}|{'-' * 10}|")
    off = {(r["processes"], r["threads"]): r["events_per_s"] for r in rows if not r["group_commit"]}
    for r in sorted(rows, key=lambda r: (r["processes"], r["threads"], r["group_commit"])):
        label = (
            f"{r['processes']} processes x {r['threads']} threads" if r["processes"] > 1 else f"{r['threads']} threads"
        )
        ratio = r["events_per_s"] / off[(r["processes"], r["threads"])]
        print(
            f"| {label:<26} | {'on' if r['group_commit'] else 'off':>5} | {r['events_per_s']:>9,.0f} | {ratio:>5.2f}× "
            f"| {r['commits_per_s']:>9,.0f} | {r['calls_per_commit']:>12.1f} | {r['p50_us']:>8,.0f} | {r['p99_us']:>8,.0f} |"
        )
    (out / "group_commit.json").write_text(json.dumps({"load": load, "seconds": args.seconds, "rows": rows}, indent=2))
    _plot(rows, out / "group_commit.png")
    print(f"\nwrote {out / 'group_commit.json'} and {out / 'group_commit.png'}")
    return 0


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({(r["processes"], r["threads"]) for r in rows})
    names = [f"{p}x{t}" if p > 1 else f"{t}" for p, t in labels]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.38
    for k, group in enumerate((False, True)):
        values = [
            next(
                r["events_per_s"] for r in rows if (r["processes"], r["threads"]) == lab and r["group_commit"] is group
            )
            for lab in labels
        ]
        ax.bar([i + (k - 0.5) * width for i in range(len(labels))], values, width, label=f"group_commit={group}")
    ax.set_xticks(range(len(labels)), names)
    ax.set_xlabel("publishers (threads, or processes x threads)")
    ax.set_ylabel("acknowledged durable events/s")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Durable publish with and without group commit")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
