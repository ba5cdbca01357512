"""Decentralised nodes over the Mastodon API: publish-to-visible latency on a follower's node, deliveries/s,
bytes per publish, for 3 and 5 nodes.

    PYTHONPATH=src python benchmarks/bench_nodes_mastodon.py [--nodes 3 5] [--events 200] [--rate 50]
        [--seconds 5] [--writers 4]

For each node count, starts that many ``twittercore node`` processes on
loopback (stopped on exit), one account per node registered through
``POST /api/v1/accounts``; the account on node1 follows every other one.

1. **latency**: the account on node2 posts ``--events`` statuses at ``--rate``
   (``POST /api/v1/statuses``); two pollers on node1 read every ~2 ms with
   ``since_id``: the Mastodon home timeline (a *fresh* read: it asks each
   origin for a promise first) and the minimal API's ``/node/v1/home`` (the
   watermark alone, no wait).  An event's latency runs from just before its
   publish request to the first poll that shows it (the poll period is in it).
2. **throughput**: ``--writers`` threads per node post as fast as they can for
   ``--seconds``, every account following every other one (so each publish is
   pushed to every other node); deliveries/s is links applied on follower
   nodes per second, bytes per publish is node-to-node request bytes (pushes,
   heartbeats, promises; replies and pulls not counted) per publish, with the
   idle heartbeat traffic of the same period reported beside it.

On a 2-core machine the nodes, the pollers and the writers share the cores:
the figures measure the whole set.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time

import httpx

from twittercore.node.testing import TOKEN, NodeCluster
from twittercore.tools.percentiles import percentile


def register(http: httpx.Client, url: str, name: str) -> tuple[str, dict[str, str]]:
    r = http.post(url + "/api/v1/accounts", data={"username": name}, headers={"authorization": f"Bearer {TOKEN}"})
    r.raise_for_status()
    auth = {"authorization": f"Bearer {r.json()['access_token']}"}
    return http.get(url + "/api/v1/accounts/verify_credentials", headers=auth).json()["id"], auth


def latency(c: NodeCluster, accounts: list[tuple[str, dict[str, str]]], events: int, rate: float) -> dict:
    sink_id, sink_auth = accounts[0]
    writer_auth = accounts[1][1]
    sent: dict[str, float] = {}
    seen: dict[str, dict[str, float]] = {"fresh": {}, "watermark": {}}
    done = threading.Event()

    def poll(kind: str) -> None:
        since = None
        with httpx.Client(timeout=10) as http:
            while not done.is_set():
                if kind == "fresh":
                    params = {"limit": 40} if since is None else {"limit": 40, "since_id": since}
                    r = http.get(c.urls[0] + "/api/v1/timelines/home", params=params, headers=sink_auth)
                    page = [(s["id"], s["content"][3:-4]) for s in r.json()] if r.status_code == 200 else []
                else:
                    params = {"user": sink_id, "limit": 200}
                    r = http.get(
                        c.urls[0] + "/node/v1/home", params=params, headers={"authorization": f"Bearer {TOKEN}"}
                    )
                    # The minimal API pages by its own keys; read the newest page each time.
                    page = [(None, json.loads(e["content"])["t"]) for e in r.json()]
                now = time.perf_counter()
                for _id, text in page:
                    seen[kind].setdefault(text, now)
                if page and page[0][0] is not None:
                    since = page[0][0]
                time.sleep(0.002)

    pollers = [threading.Thread(target=poll, args=(k,)) for k in seen]
    for t in pollers:
        t.start()
    try:
        with httpx.Client(timeout=10) as http:
            start = time.perf_counter()
            for n in range(events):
                time.sleep(max(0.0, start + n / rate - time.perf_counter()))
                text = f"e{n}"
                sent[text] = time.perf_counter()
                http.post(c.urls[1] + "/api/v1/statuses", data={"status": text}, headers=writer_auth).raise_for_status()
        deadline = time.monotonic() + 10
        while any(len(s.keys() & sent.keys()) < len(sent) for s in seen.values()) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        done.set()
        for t in pollers:
            t.join()
    out = {}
    for kind, when in seen.items():
        ms = sorted((when[t] - sent[t]) * 1000 for t in sent if t in when)
        out[kind] = {"visible": len(ms), "of": len(sent), "p50": percentile(ms, 50), "p99": percentile(ms, 99)}
    return out


def throughput(c: NodeCluster, accounts: list[tuple[str, dict[str, str]]], seconds: float, writers: int) -> dict:
    with httpx.Client(timeout=10) as http:
        for i, (_, auth) in enumerate(accounts):
            for j, (other, _) in enumerate(accounts):
                if i != j:
                    http.post(f"{c.urls[i]}/api/v1/accounts/{other}/follow", headers=auth).raise_for_status()
    time.sleep(1.0)  # subscriptions confirmed, backfills done
    idle0 = [c.stats(i) for i in range(1, c.count + 1)]
    time.sleep(seconds)
    idle1 = [c.stats(i) for i in range(1, c.count + 1)]
    idle_bytes = sum(b["bytes_sent"] - a["bytes_sent"] for a, b in zip(idle0, idle1)) / seconds
    before = [c.stats(i) for i in range(1, c.count + 1)]
    published = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def write(i: int) -> None:
        auth = accounts[i][1]
        with httpx.Client(timeout=10) as http:
            while time.perf_counter() < stop:
                r = http.post(c.urls[i] + "/api/v1/statuses", data={"status": "x" * 100}, headers=auth)
                if r.status_code == 200:
                    with lock:
                        published[0] += 1

    began = time.perf_counter()
    threads = [threading.Thread(target=write, args=(i,)) for i in range(c.count) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    want = published[0] * (c.count - 1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        after = [c.stats(i) for i in range(1, c.count + 1)]
        applied = sum(b["applied"] - a["applied"] for a, b in zip(before, after))
        if applied >= want:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - began
    sent_bytes = sum(b["bytes_sent"] - a["bytes_sent"] for a, b in zip(before, after))
    return {
        "publishes": published[0],
        "publishes_per_s": published[0] / seconds,
        "deliveries": applied,
        "deliveries_per_s": applied / elapsed,
        "bytes_per_publish": (sent_bytes - idle_bytes * elapsed) / max(1, published[0]),
        "idle_bytes_per_s": idle_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args(argv)
    ok = True
    for count in args.nodes:
        with tempfile.TemporaryDirectory() as tmp, NodeCluster(count, tmp) as c, httpx.Client(timeout=10) as http:
            accounts = [register(http, c.urls[i], f"user{i + 1}") for i in range(count)]
            for other, _ in accounts[1:]:
                http.post(f"{c.urls[0]}/api/v1/accounts/{other}/follow", headers=accounts[0][1]).raise_for_status()
            lat = latency(c, accounts, args.events, args.rate)
            for kind, r in lat.items():
                ok &= r["visible"] == r["of"]
                print(
                    f"{count} nodes, {kind:9s} read on node1: {r['visible']}/{r['of']} visible, "
                    f"publish-to-visible p50 {r['p50']:.1f} ms  p99 {r['p99']:.1f} ms",
                    flush=True,
                )
            t = throughput(c, accounts, args.seconds, args.writers)
            ok &= t["deliveries"] >= t["publishes"] * (count - 1)
            print(
                f"{count} nodes, throughput: {t['publishes_per_s']:.0f} publishes/s, "
                f"{t['deliveries_per_s']:.0f} deliveries/s ({t['deliveries']} of {t['publishes']}x{count - 1}), "
                f"{t['bytes_per_publish']:.0f} peer bytes per publish (idle heartbeats: {t['idle_bytes_per_s']:.0f} B/s)",
                flush=True,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
