"""Decentralised nodes: publish-to-visible latency on a follower's node, and convergence after a partition heals.

    PYTHONPATH=src python benchmarks/bench_nodes.py [--events 300] [--rate 50] [--consistency strict]

Starts 3 ``twittercore node`` processes on loopback (stopped on exit).  A user
on node2 publishes at ``--rate``; a user on node1 follows them and users on
node2 and node3 (so node1's watermark needs both origins).  A poller on node1
reads the home timeline with ``since_id`` every ~2 ms; an event's latency is
from just before its publish request to the first poll that shows it (the
poll period is part of the figure).  Then node3 is isolated, publishes
``--events // 3`` events, is healed, and the time until node1 shows them all
is the convergence time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time

from twittercore.node.testing import NodeCluster


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--consistency", choices=["strict", "bounded"], default="strict")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, NodeCluster(3, tmp, consistency=args.consistency) as c:
        sink = c.create_user(1, "sink")
        writer, other = c.create_user(2, "writer"), c.create_user(3, "other")
        for source in (writer, other, sink):
            c.follow(1, sink, source)
        c.publish(3, other, "warm-up")
        deadline = time.monotonic() + 10
        while not c.home(1, sink) and time.monotonic() < deadline:
            time.sleep(0.01)
        sent: dict[str, float] = {}
        seen: dict[str, float] = {}
        done = threading.Event()

        def poll() -> None:
            since = None
            while not done.is_set() or len(seen) < len(sent):
                params = {} if since is None else {"since_id": since}
                page = c.home(1, sink, **params)
                now = time.perf_counter()
                for event in page:
                    seen.setdefault(event["content"], now)
                if page:
                    since = page[0]["id"]
                if done.is_set() and time.perf_counter() - now > 10:
                    return
                time.sleep(0.002)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            start = time.perf_counter()
            for n in range(args.events):
                due = start + n / args.rate
                time.sleep(max(0.0, due - time.perf_counter()))
                text = f"e{n}"
                sent[text] = time.perf_counter()
                c.publish(2, writer, text)
            wait_until = time.monotonic() + 10
            while len([t for t in sent if t in seen]) < len(sent) and time.monotonic() < wait_until:
                time.sleep(0.01)
        finally:
            done.set()
            poller.join()
        latencies = [(seen[t] - sent[t]) * 1000 for t in sent if t in seen]
        print(f"3 nodes, {args.consistency}: {len(latencies)}/{len(sent)} events visible on the follower's node")
        print(
            f"publish-to-visible ms: p50 {percentile(latencies, 0.5):.1f}  p99 {percentile(latencies, 0.99):.1f}"
            f"  max {max(latencies):.1f}  mean {statistics.mean(latencies):.1f}"
        )

        during = max(1, args.events // 3)
        c.isolate(3)
        try:
            for n in range(during):
                c.publish(3, other, f"p{n}")
        finally:
            c.isolate(3, False)
        healed = time.perf_counter()
        want = len(sent) + during + 1
        while len(c.home_all(1, sink)) < want and time.perf_counter() - healed < 20:
            time.sleep(0.005)
        converged = (time.perf_counter() - healed) * 1000
        ok = len(c.home_all(1, sink)) == want
        print(
            f"partition of node3 ({during} events published behind it) healed: "
            f"node1 converged in {converged:.0f} ms ({'ok' if ok else 'NOT converged'})"
        )
        stats = [c.stats(i) for i in (1, 2, 3)]
        print("bytes sent per node:", [s["bytes_sent"] for s in stats], " late:", [s["late"] for s in stats])
        return 0 if ok and len(latencies) == len(sent) else 1


if __name__ == "__main__":
    sys.exit(main())
