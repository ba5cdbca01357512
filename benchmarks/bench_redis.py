#!/usr/bin/env python3
"""What order costs on Redis: the twittercore backend's commands, round trips and server CPU per operation.

    python benchmarks/bench_redis.py [--quick] [--users N] [--followees K] [--ops N] [--out DIR]

Starts a 3-master Redis Cluster (``harness/redis_cluster.py``) and, for
comparison, one ``redis-server`` with the Mastodon-style baseline
(``baselines/redis_zsets.py``); both get the same graph (every user follows
``--followees`` random others) and the same posts.  Then, each in a bounded
loop of ``--ops`` operations:

- **per publish / per home read** (newest 50 with payloads): Redis commands
  from ``INFO commandstats`` deltas summed over every master (calls and usec
  by command; commands run inside an ``FCALL`` are counted there too, under
  their own names); the server's CPU time from ``/proc/<pid>/stat`` of every
  node; client-side *steps* (the backend's ``Router.run`` calls: one serial
  round trip each, to however many masters) and *messages* (every
  ``send_packed_command`` of redis-py: one per master per step; for the
  baseline, one per pipeline or command);
- **the ordering step alone**: ``tc_close`` (what a reader runs on every
  bucket it reads) pipelined over the buckets of one master, and
  ``tc_publish`` (one event) pipelined to one master: closes and publishes
  per second per master, and their usec per call; plus the same publish
  through ``store.publish`` one at a time (a client's view);
- **a bare round trip** (``PING``), the per-message cost the projection adds
  for each master a read touches.

Prints the tables and a projection for 3, 10 and 100 masters (method and
assumptions in benchmarks/README.md), and writes ``redis.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from typing import Any

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import redis  # noqa: E402
import redis.connection  # noqa: E402

import twittercore  # noqa: E402
from harness import redis_cluster, redis_server  # noqa: E402
from twittercore.tools.percentiles import percentile  # noqa: E402

PAYLOAD = b"p" * 140
PAGE = 50
MASTERS_PROJECTED = (3, 10, 100)

# ------------------------------------------------------------ instrumentation

_messages = 0
_send = redis.connection.AbstractConnection.send_packed_command


def _counting_send(self: Any, command: Any, check_health: bool = True) -> None:
    global _messages
    _messages += 1
    _send(self, command, check_health)


redis.connection.AbstractConnection.send_packed_command = _counting_send  # type: ignore[method-assign]


def commandstats(clients: list[Any]) -> Counter[str]:
    """``{"<cmd>.calls": n, "<cmd>.usec": n}`` summed over ``clients`` (INFO itself left out)."""
    total: Counter[str] = Counter()
    for client in clients:
        for key, value in client.info("commandstats").items():
            name = key.removeprefix("cmdstat_")
            if name == "info":
                continue
            total[f"{name}.calls"] += int(value["calls"])
            total[f"{name}.usec"] += int(value["usec"])
    return total


class Meter:
    """Deltas of everything measured, around a block of ``ops`` operations."""

    def __init__(
        self, clients: list[Any], pids: list[int], router: Any = None, sent: Counter[str] | None = None
    ) -> None:
        self.clients, self.pids, self.router = clients, pids, router
        #: Commands the client itself sent, by name (None: every command counted is one).
        self.sent = sent

    def _now(self) -> dict[str, Any]:
        return {
            "stats": commandstats(self.clients),
            "cpu": sum(redis_cluster.cpu_seconds(p) for p in self.pids),
            "steps": self.router.round_trips if self.router else 0,
            "sent": Counter(self.sent or {}),
        }

    def measure(self, ops: int, block: Any) -> dict[str, Any]:
        before = self._now()
        # Client-side counters right around the block: the INFO calls of the
        # snapshots are messages too, and must not count as the operations'.
        m0, c0, w0 = _messages, time.process_time(), time.perf_counter()
        block()
        w1, c1, m1 = time.perf_counter(), time.process_time(), _messages
        after = self._now()
        stats = after["stats"] - before["stats"]
        by_command = {}
        for key in sorted(stats):
            name, _, field = key.partition(".")
            if field == "calls":
                by_command[name] = {
                    "calls_per_op": stats[key] / ops,
                    "usec_per_call": stats.get(f"{name}.usec", 0) / max(1, stats[key]),
                }
        wall = w1 - w0
        sent = after["sent"] - before["sent"]
        top_level_usec = 0.0
        for name, command in by_command.items():
            calls = command["calls_per_op"] * ops
            if self.sent is not None and name in _INSIDE_FCALL:
                calls = min(calls, sent.get(name, 0))  # the rest ran inside FCALL, whose usec has them
            top_level_usec += calls * command["usec_per_call"]
        return {
            "ops": ops,
            "wall_s": wall,
            "ops_per_s": ops / wall if wall else 0.0,
            "client_us_per_op": wall / ops * 1e6,
            "client_cpu_us_per_op": (c1 - c0) / ops * 1e6,
            "server_cpu_us_per_op": (after["cpu"] - before["cpu"]) / ops * 1e6,
            "commandstats_usec_per_op": top_level_usec / ops,
            "messages_per_op": (m1 - m0) / ops,
            "steps_per_op": (after["steps"] - before["steps"]) / ops,
            "commands_per_op": sum(c["calls_per_op"] for c in by_command.values()),
            "client_commands_per_op": (sum(sent.values()) / ops) if self.sent is not None else None,
            "by_command": by_command,
        }


#: Commands the backend's functions run inside FCALL: their usec is already in FCALL's.
#: (The client sends some of them too, ZRANGE and HMGET on a home read: only the
#: calls it sent count as top level, at the command's mean usec per call.)
_INSIDE_FCALL = {
    "get",
    "set",
    "time",
    "hset",
    "hget",
    "zadd",
    "zrangebyscore",
    "zrevrangebyscore",
    "publish",
    "hdel",
    "zrem",
    "zscore",
    "sadd",
    "hmget",
    "zrange",
}


# ------------------------------------------------------------------- workload


def graph(users: int, followees: int, seed: int) -> list[tuple[int, int]]:
    """Every user follows exactly ``followees`` others, drawn at random."""
    rng = random.Random(seed)
    pairs = []
    for sink in range(1, users + 1):
        chosen = [s for s in rng.sample(range(1, users + 1), followees + 1) if s != sink][:followees]
        pairs.extend((sink, source) for source in chosen)
    return pairs


def posts(users: int, per_user: int) -> list[tuple[int, bytes]]:
    """Source by source, so that publish_many sends one FCALL per source while loading."""
    return [(source, PAYLOAD) for source in range(1, users + 1) for _ in range(per_user)]


# -------------------------------------------------------------------- twittercore


def bench_twittercore(
    cluster: redis_cluster.Cluster,
    pairs: list[tuple[int, int]],
    items: list[tuple[int, bytes]],
    users: int,
    ops: int,
    seed: int,
    fanout: str = "read",
    threshold: int = 10_000,
) -> dict[str, Any]:
    rng = random.Random(seed + 1)
    out: dict[str, Any] = {}
    options: dict[str, Any] = {"fanout": fanout, "namespace": f"bench-{fanout}"}
    if fanout == "hybrid":
        options["celebrity_threshold"] = threshold
    if fanout != "read":
        options["fanout_worker"] = False  # this process drives the worker's rounds itself (timed below)
    with twittercore.open(cluster.url, kernel="cython", **options) as store:
        for start in range(0, len(pairs), 20_000):
            store.follow_many(pairs[start : start + 20_000])
        for start in range(0, len(items), 20_000):
            store.publish_many(items[start : start + 20_000])
        if store._windows is not None:
            _drain(store)
        router = store._r
        masters = router.masters()
        sent: Counter[str] = Counter()
        reads: list[list[tuple[int, int]]] = []  # per home read: (commands, distinct buckets) of each step
        run = router.run

        def counted_run(calls: list[Any], *, safe: bool) -> list[Any]:
            for _tag, command in calls:
                sent[str(command[0]).lower()] += 1
            if reads:
                reads[-1].append((len(calls), len({tag for tag, _ in calls})))
            return run(calls, safe=safe)

        router.run = counted_run
        meter = Meter(masters, list(cluster.pids.values()), router, sent)
        sinks = [rng.randrange(1, users + 1) for _ in range(ops)]
        for sink in sinks[:50]:
            store.home(sink, PAGE)  # warm the connections

        took: list[float] = []

        def home_reads() -> None:
            for sink in sinks:
                reads.append([])
                t0 = time.perf_counter()
                store.home(sink, PAGE)
                took.append(time.perf_counter() - t0)

        out["home"] = meter.measure(ops, home_reads)
        out["home"].update(_percentiles(took))
        out["home"]["buckets_per_step"] = _per_step(reads)
        reads.clear()

        sources = [rng.randrange(1, users + 1) for _ in range(ops)]
        out["publish"] = meter.measure(ops, lambda: [store.publish(s, PAYLOAD) for s in sources])
        if store._windows is not None:
            # Fan-out on write: the publishes above only entered the feeds; the worker's rounds that
            # put them in every follower's window are the rest of the cost (the baseline pays it inline).
            out["fan_out"] = meter.measure(ops, lambda: _drain(store))
            total_s = (out["publish"]["wall_s"] + out["fan_out"]["wall_s"]) or 1e-9
            followers = sum(store._sink_count(s) for s in set(sources)) / len(set(sources))
            out["deliveries_per_s"] = ops * followers / total_s
            out["window_paths"] = dict(store._windows.counts)
            out["masters"] = len(masters)
            return out
        out["deliveries_per_s"] = ops * (len(pairs) / users) / (out["publish"]["wall_s"] or 1e-9)

        # The ordering step alone, per master: pipelined closes of its buckets.
        by_master: dict[str, list[int]] = {}
        for b in range(store._nb):
            node = router._node(store._tags[b])
            by_master.setdefault(str(node.get_connection_kwargs()["port"]), []).append(b)
        out["buckets_per_master"] = {port: len(bs) for port, bs in by_master.items()}
        port, buckets = sorted(by_master.items())[0]
        one = [m for m in masters if str(m.get_connection_kwargs()["port"]) == port]
        pid = [cluster.pids[int(port)]]
        single = Meter(one, pid, router, sent)
        rounds = max(1, ops * 20 // len(buckets))
        out["close_pipelined"] = single.measure(
            rounds * len(buckets), lambda: [store._closes(buckets) for _ in range(rounds)]
        )
        out["close_one"] = single.measure(ops, lambda: [store._closes([buckets[n % len(buckets)]]) for n in range(ops)])
        # tc_publish of one event each, pipelined to the same master: the server's rate.
        on_master = [s for s in range(1, users + 1) if store._bucket(s) in set(buckets)]
        at = repr(time.time())
        batch = [
            store._fcall(
                "tc_publish",
                store._bucket(s),
                store._floor_clock(store._bucket(s)),
                at,
                store._retention,
                1,
                s,
                PAYLOAD,
                b"",
            )
            for s in on_master[:200]
        ]
        rounds = max(1, ops * 5 // len(batch))
        out["publish_pipelined"] = single.measure(
            rounds * len(batch), lambda: [store._write(batch) for _ in range(rounds)]
        )
        picks = [on_master[n % len(on_master)] for n in range(ops)]
        out["publish_one_master"] = single.measure(ops, lambda: [store.publish(s, PAYLOAD) for s in picks])
        client = one[0]
        # Ten times the ops: a PING's CPU is near /proc's 10 ms tick over a few hundred.
        out["ping"] = single.measure(ops * 10, lambda: [client.ping() for _ in range(ops * 10)])
        out["masters"] = len(masters)
    return out


def _percentiles(took: list[float]) -> dict[str, float]:
    ordered = sorted(took)
    return {
        "p50_us": percentile(ordered, 50, presorted=True) * 1e6,
        "p99_us": percentile(ordered, 99, presorted=True) * 1e6,
    }


def _drain(store: Any) -> None:
    """Run the fan-out worker's rounds until it is current."""
    store._windows.settle()


def _per_step(reads: list[list[tuple[int, int]]]) -> list[dict[str, float]]:
    """Mean commands and distinct buckets of each step of a home read.

    A read is: ZRANGE of the sink's followees (one bucket), ``tc_range`` on every
    bucket of a followed source, sometimes a second ``tc_range`` for sources
    whose newest were past the cut, and HMGET of the page per bucket.
    """
    out: list[dict[str, float]] = []
    shapes = [
        ("followees", lambda r: r[0]),
        ("ranges", lambda r: r[1]),
        ("ranges again (cut short)", lambda r: r[2] if len(r) == 4 else None),
        ("fetch", lambda r: r[-1]),
    ]
    full = [r for r in reads if len(r) >= 3]
    for name, pick in shapes:
        rows = [x for x in (pick(r) for r in full) if x is not None]
        if rows:
            out.append(
                {
                    "step": name,
                    "share_of_reads": len(rows) / len(full),
                    "commands": sum(c for c, _ in rows) / len(rows),
                    "buckets": sum(b for _, b in rows) / len(rows),
                }
            )
    return out


# -------------------------------------------------------------------- baseline


def bench_zsets(
    pairs: list[tuple[int, int]], items: list[tuple[int, bytes]], users: int, ops: int, seed: int
) -> dict[str, Any]:
    from baselines.redis_zsets import RedisZsets

    rng = random.Random(seed + 1)
    out: dict[str, Any] = {}
    with redis_server.running() as url, _tmpdir() as workdir:
        target = RedisZsets(workdir=workdir, redis_url=url)
        try:
            target.load_graph(pairs)
            target.bulk_posts(items)
            target.after_ingest()
            pid = _pid_of(target.r)
            meter = Meter([target.r], [pid] if pid else [])
            sinks = [rng.randrange(1, users + 1) for _ in range(ops)]
            for sink in sinks[:50]:
                target.home(sink, PAGE)
            took: list[float] = []

            def home_reads() -> None:
                for sink in sinks:
                    t0 = time.perf_counter()
                    target.home(sink, PAGE)
                    took.append(time.perf_counter() - t0)

            out["home"] = meter.measure(ops, home_reads)
            out["home"].update(_percentiles(took))
            sources = [rng.randrange(1, users + 1) for _ in range(ops)]
            out["publish"] = meter.measure(ops, lambda: [target.publish(s, PAYLOAD) for s in sources])
            out["deliveries_per_s"] = ops * (len(pairs) / users) / (out["publish"]["wall_s"] or 1e-9)
            out["ping"] = meter.measure(ops * 10, lambda: [target.r.ping() for _ in range(ops * 10)])
        finally:
            target.close()
    return out


def _pid_of(client: Any) -> int | None:
    try:
        return int(client.info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None


class _tmpdir:
    def __enter__(self) -> str:
        import tempfile

        self._dir = tempfile.TemporaryDirectory(prefix="twittercore-bench-redis-")
        return self._dir.name

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()


# ------------------------------------------------------------------ projection


def distinct_masters(buckets: float, masters: int) -> float:
    """Expected masters holding ``buckets`` distinct buckets spread evenly over ``masters``."""
    return masters * (1 - (1 - 1 / masters) ** buckets)


def project(tc: dict[str, Any], followers: float) -> list[dict[str, Any]]:
    """Cluster throughput at 3, 10 and 100 masters from measured server CPU per operation.

    Per operation at M masters: server CPU = command CPU (measured at 3 masters;
    the commands of an operation are per bucket, so their number does not
    change with M) + one message's overhead (a bare PING's server CPU) for each
    master the operation touches beyond those it touched at 3.  Masters are one
    core each, busy 100%; throughput = M x 1e6 / (CPU us per op), capped by no
    client (clients scale out).
    """
    ping = tc["ping"]["server_cpu_us_per_op"]
    home, publish = tc["home"], tc["publish"]
    steps = [s for s in home["buckets_per_step"] if "buckets" in s]
    rows = []
    for m in MASTERS_PROJECTED:
        touched = sum(s["share_of_reads"] * distinct_masters(s["buckets"], m) for s in steps)
        touched3 = sum(s["share_of_reads"] * distinct_masters(s["buckets"], 3) for s in steps)
        read_cpu = home["server_cpu_us_per_op"] + (touched - touched3) * ping
        pub_cpu = publish["server_cpu_us_per_op"]
        rows.append(
            {
                "masters": m,
                "messages_per_read": round(touched, 1),
                "server_cpu_us_per_read": round(read_cpu, 1),
                "reads_per_s": round(m * 1e6 / read_cpu),
                "publishes_per_s": round(m * 1e6 / pub_cpu),
                "followers_reached_per_s": round(m * 1e6 / pub_cpu * followers),
            }
        )
    return rows


# ------------------------------------------------------------------------ main


def _fmt(result: dict[str, Any]) -> str:
    return (
        f"{result['ops_per_s']:>10,.0f}/s  client {result['client_us_per_op']:>7,.0f} µs/op  "
        f"server CPU {result['server_cpu_us_per_op']:>7,.1f} µs/op  commandstats {result['commandstats_usec_per_op']:>7,.1f} µs/op  "
        f"commands {result['commands_per_op']:>6.1f}  messages {result['messages_per_op']:>5.1f}  "
        f"steps {result['steps_per_op']:>4.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 users, 300 ops (~20 s)")
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--followees", type=int, default=100)
    parser.add_argument("--per-user", type=int, default=10, help="posts per user loaded before timing")
    parser.add_argument("--ops", type=int, default=2_000, help="operations per measurement")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=os.path.join("reports", "bench-redis"))
    parser.add_argument(
        "--fanout",
        nargs="+",
        default=["read", "write", "hybrid"],
        choices=["read", "write", "hybrid"],
        help="the backend's strategies to run, side by side (read also runs the ordering-step measurements)",
    )
    parser.add_argument(
        "--celebrity-threshold",
        type=int,
        default=120,
        help="hybrid: followers past which a source is read at read time",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.ops = 500, 300
    reason = redis_cluster.missing_reason()
    if reason:
        print(f"bench_redis: skipped: {reason}")
        return 0
    followees = min(args.followees, args.users - 1)
    pairs = graph(args.users, followees, args.seed)
    items = posts(args.users, args.per_user)
    followers = len(pairs) / args.users
    print(
        f"workload: {args.users:,} users each following {followees} (mean followers {followers:.0f}), "
        f"{len(items):,} posts loaded, {args.ops:,} ops per measurement; load {os.getloadavg()[0]:.2f}"
    )
    started = time.perf_counter()
    strategies: dict[str, dict[str, Any]] = {}
    with redis_cluster.running(3) as cluster:
        for fanout in args.fanout:
            print(f"twittercore fanout={fanout} ...", flush=True)
            strategies[fanout] = bench_twittercore(
                cluster, pairs, items, args.users, args.ops, args.seed, fanout, args.celebrity_threshold
            )
    zs = bench_zsets(pairs, items, args.users, args.ops, args.seed)
    tc = strategies.get("read") or next(iter(strategies.values()))
    rows = project(tc, followers) if "read" in strategies else []
    report = {
        "workload": {
            "users": args.users,
            "followees": followees,
            "posts_loaded": len(items),
            "ops": args.ops,
            "mean_followers": followers,
        },
        "cpus": os.cpu_count(),
        "loadavg_end": os.getloadavg(),
        "seconds": round(time.perf_counter() - started, 1),
        "twittercore": tc,
        "twittercore_by_fanout": strategies,
        "redis_zsets": zs,
        "projection": rows,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "redis.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"the price of order, side by side (home: newest {PAGE} with payloads; ratios to redis-zsets):")
    print(
        f"  {'design':<22} {'home p50':>10} {'p99':>10} {'x zsets':>8} {'server CPU/read':>16} {'deliveries/s':>13} {'x zsets':>8}"
    )
    for name, result in [*((f"twittercore {f}", r) for f, r in strategies.items()), ("redis-zsets", zs)]:
        h = result["home"]
        print(
            f"  {name:<22} {h['p50_us']:>8,.0f}µs {h['p99_us']:>8,.0f}µs {h['p50_us'] / zs['home']['p50_us']:>7.2f}x "
            f"{h['server_cpu_us_per_op']:>13,.0f} µs {result['deliveries_per_s']:>13,.0f} "
            f"{result['deliveries_per_s'] / zs['deliveries_per_s']:>7.2f}x"
        )
    for fanout, result in strategies.items():
        print(f"twittercore Redis backend, fanout={fanout} (3 masters):")
        for key in ("home", "publish", "fan_out"):
            if key in result:
                print(f"  {key:<20} {_fmt(result[key])}")
        if "window_paths" in result:
            print(f"  home reads answered by: {result['window_paths']}")
    if "read" in strategies:
        print(f"  home read steps (read): {tc['home']['buckets_per_step']}")
        print(f"ordering step alone, one master ({tc['buckets_per_master']} buckets per master):")
        for key in ("close_pipelined", "close_one", "publish_pipelined", "publish_one_master", "ping"):
            print(f"  {key:<20} {_fmt(tc[key])}")
    print("redis-zsets baseline (1 server):")
    for key in ("home", "publish", "ping"):
        print(f"  {key:<20} {_fmt(zs[key])}")
    for name, result in [*((f"twittercore {f}", r) for f, r in strategies.items()), ("redis-zsets", zs)]:
        for key in ("home", "publish", "fan_out"):
            if key not in result:
                continue
            top = sorted(result[key]["by_command"].items(), key=lambda kv: -kv[1]["calls_per_op"])
            print(
                f"  {name} {key} commandstats: "
                + ", ".join(f"{c} {v['calls_per_op']:.1f}×{v['usec_per_call']:.1f}µs" for c, v in top)
            )
    print("projection (server CPU only, 1 core per master at 100%):")
    for row in rows:
        print(f"  {row}")
    print(f"wrote {args.out}/redis.json in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
