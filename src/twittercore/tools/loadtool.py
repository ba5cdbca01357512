"""``twittercore load URL``: drive a Mastodon-API server at an open-loop rate, record, verify.

Works against any server speaking ``bindings/openapi.yaml`` (ids are opaque
strings), not only twittercore's example server:

1. **setup**: accounts (registered with ``--admin-token``, or given as
   ``--tokens FILE``), the synthetic follow graph of :mod:`twittercore.workload`,
   its initial posts;
2. **streams**: ``--streams`` clients hold ``/api/v1/streaming/user`` open;
3. **load**: the workload's operation stream (home and profile reads,
   posts, follows, unfollows, deletes; or ``--mix home``: home reads only) is
   sent at ``--rate`` requests/s by ``--connections`` clients.  Open loop:
   request *i* is due at ``start + i/rate`` whatever happened before, and its
   latency is measured from that due time, so a server that stalls is charged
   for the queue it causes (no coordinated omission);
4. **ramp** (``--ramp``): steps of rising rate until p99 passes
   ``--p99-limit`` (100 ms) or errors pass ``--error-limit`` (1%); the last
   good step is the maximum sustainable rate, the first bad one the failure
   point; then one step at half the failure point;
5. **verify**: everything acknowledged and observed (pages, second pages
   with ``before_id``, profile reads, streamed events) is written in the
   :mod:`twittercore.checking.history` format and checked by
   :mod:`twittercore.checking.verify` (G1-G4, deletes, real time);
6. **report**: throughput and p50/p99/p99.9 (nearest rank,
   :mod:`twittercore.tools.percentiles`) per step and per operation,
   ``report.json`` and a plot, ``latency.png``.

The generator shares the machine with the server when both run on one host:
on 2 cores the figures measure the pair, not the server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from ..checking.history import HistoryWriter
from ..checking.workload import Delete, Follow, Home, Publish, Timeline, Unfollow, Workload
from ..checking.workload import kind as op_kind
from ..errors import InvalidArgumentError
from .loadtool_http import Connection, HTTPError, split_url
from .percentiles import percentile  # nearest rank, the definition every report shares

_loads: Callable[[bytes], Any]
try:  # parsing every page is most of the generator's own CPU: use orjson when present
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - the stdlib does the same, slower
    _loads = json.loads

__all__ = ["add_arguments", "run", "LoadRun", "percentile"]

KINDS = ("home", "home2", "timeline", "publish", "follow", "unfollow", "delete")


def _summary(latencies: list[float]) -> dict[str, float]:
    values = sorted(latencies)
    return {
        "count": len(values),
        "p50_ms": percentile(values, 50, presorted=True) * 1e3,
        "p99_ms": percentile(values, 99, presorted=True) * 1e3,
        "p999_ms": percentile(values, 99.9, presorted=True) * 1e3,
        "max_ms": (values[-1] * 1e3) if values else 0.0,
    }


class _NoHistory:
    """Stands in for the HistoryWriter with --no-record (pure throughput runs)."""

    def now(self) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class Account:
    __slots__ = ("id", "token", "auth", "home")

    def __init__(self, id: str, token: str, home: int = 0) -> None:
        self.id, self.token, self.home = id, token, home
        self.auth = {"Authorization": f"Bearer {token}"}


class Connections:
    """One keep-alive connection per server URL, opened on first use: with several URLs (the nodes of a
    decentralised deployment) each account's requests go to the server that is its home."""

    def __init__(self, targets: list[tuple[str, int, str]], timeout: float) -> None:
        self.targets, self.timeout = targets, timeout
        self._conns: dict[int, Connection] = {}

    def to(self, home: int) -> Connection:
        conn = self._conns.get(home)
        if conn is None:
            host, port, _ = self.targets[home]
            conn = self._conns[home] = Connection(host, port, timeout=self.timeout)
        return conn

    @property
    def received(self) -> int:
        return sum(c.received for c in self._conns.values())

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()


class LoadRun:
    """One run: setup, streams, load steps and the history they write."""

    def __init__(self, url: str, args: argparse.Namespace) -> None:
        # Several comma-separated URLs: accounts are registered round-robin over them, and every
        # request of an account goes to the URL that registered it.
        self.targets = [split_url(u.strip()) for u in url.split(",") if u.strip()]
        if not self.targets:
            raise InvalidArgumentError(f"load: {url!r}: no URL")
        self.host, self.port, self.base = self.targets[0]
        self.args = args
        self.ordered = args.ordered_ids
        self.recording = not args.no_record
        self.history: Any = HistoryWriter(os.path.join(args.out, "history.jsonl")) if self.recording else _NoHistory()
        self.accounts: dict[int, Account] = {}  # workload user number -> account
        self.published: dict[int, tuple[Account, str]] = {}  # workload publish number -> (author, id)
        self.stream_tasks: list[asyncio.Task[None]] = []
        self.streamed = 0
        self.stream_errors: list[str] = []
        # Called as on_sample(kind, ok, intended, latency) for every request of a step (the lab's timeline).
        self.on_sample: Any = None
        # Answers per serving worker (the server's x-twittercore-worker header): how evenly load spreads.
        self.served_by: Counter[str] = Counter()

    # ----------------------------------------------------------- helpers

    def norm(self, id: str) -> Any:
        """An id as recorded: opaque string, or int with --ordered-ids."""
        return int(id) if self.ordered else id

    def connection(self) -> Connections:
        return Connections(self.targets, self.args.timeout)

    async def call(
        self,
        conn: Connections,
        method: str,
        path: str,
        account: Account | None = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        parse: bool = True,
        home: int = 0,
    ) -> tuple[int, Any, dict[str, str]]:
        h = dict(headers or {})
        if account is not None:
            h.update(account.auth)
            home = account.home
        body = None
        if form is not None:
            body = urlencode(form).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        elif method == "POST":
            body = b""
        r = await conn.to(home).request(method, self.targets[home][2] + path, h, body)
        worker = r.headers.get("x-twittercore-worker")
        if worker is not None:
            self.served_by[f"{self.targets[home][0]}:{self.targets[home][1]}/{worker}"] += 1
        data = None
        if parse and r.body and r.headers.get("content-type", "").startswith("application/json"):
            data = _loads(r.body)
        return r.status, data, r.headers

    async def pool(self, jobs: list[Any], work: Any, connections: int) -> None:
        """Run ``work(conn, job)`` for every job over a few connections."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)

        async def worker() -> None:
            conn = self.connection()
            try:
                while not queue.empty():
                    await work(conn, queue.get_nowait())
            finally:
                conn.close()

        await asyncio.gather(*(worker() for _ in range(max(1, min(connections, len(jobs))))))

    # ------------------------------------------------------------- setup

    async def setup(self, workload: Workload | None) -> None:
        args = self.args
        users = args.users
        assigned: list[tuple[int, str, int | None]] = []  # (user number, token, home URL or None: unknown)
        if args.tokens:
            with open(args.tokens) as f:
                tokens = [line.strip() for line in f if line.strip() and not line.startswith("#")]
            if len(tokens) < 2:
                raise InvalidArgumentError(f"--tokens {args.tokens}: needs at least 2 tokens, one a line")
            users = len(tokens)
            assigned = [(n, token, None) for n, token in enumerate(tokens, 1)]
        elif args.admin_token:
            tag = secrets.token_hex(3)

            async def register(conn: Connections, n: int) -> None:
                home = (n - 1) % len(self.targets)
                status, data, _ = await self.call(
                    conn,
                    "POST",
                    "/api/v1/accounts",
                    form={"username": f"load{tag}_{n}"},
                    headers={"Authorization": f"Bearer {args.admin_token}"},
                    home=home,
                )
                if status != 200:
                    raise InvalidArgumentError(f"load: registering an account failed: {status} {data}")
                assigned.append((n, data["access_token"], home))

            await self.pool(list(range(1, users + 1)), register, 8)
        else:
            raise InvalidArgumentError("load: pass --admin-token (to register accounts) or --tokens FILE")

        async def identify(conn: Connections, item: tuple[int, str, int | None]) -> None:
            n, token, known = item
            t0 = self.history.now()
            # A token from a file may belong to any of the URLs: its home is the one that accepts it.
            for home in range(len(self.targets)) if known is None else [known]:
                status, data, _ = await self.call(
                    conn, "GET", "/api/v1/accounts/verify_credentials", Account("", token, home)
                )
                if status == 200:
                    break
            if status != 200:
                raise InvalidArgumentError(f"load: a token was refused by verify_credentials ({status})")
            account = self.accounts[n] = Account(str(data["id"]), token, home)
            # Mastodon's home timeline includes one's own posts: record that edge.
            self.history.follow(account.id, account.id, t0=t0)

        await self.pool(assigned, identify, 8)
        if workload is None:
            workload = Workload(
                users=users,
                seed=args.seed,
                mean_followees=args.followees,
                max_followees=max(1, users - 1),
                posts=args.posts,
                reads=10**9,
                page_limit=args.limit,
                timeline_limit=min(args.limit, 20),
                payload_bytes=args.payload,
            )
        self.workload = workload
        edges = list(workload.graph())

        async def follow(conn: Connections, pair: tuple[int, int]) -> None:
            sink, source = self.accounts[pair[0]], self.accounts[pair[1]]
            t0 = self.history.now()
            status, _, _ = await self.call(conn, "POST", f"/api/v1/accounts/{quote(source.id)}/follow", sink)
            if status == 200:
                self.history.follow(sink.id, source.id, t0=t0)

        await self.pool(edges, follow, 16)
        posts = list(enumerate(workload.posts()))

        async def post(conn: Connections, item: tuple[int, tuple[int, bytes]]) -> None:
            await self.publish(conn, item[0], *item[1])

        await self.pool(posts, post, 16)
        print(f"load: setup: {len(self.accounts)} accounts, {len(edges)} follows, {len(posts)} posts", flush=True)

    # ----------------------------------------------------------- streams

    async def stream(self, name: str, account: Account) -> None:
        conns = self.connection()
        conn = conns.to(account.home)
        path = self.targets[account.home][2] + "/api/v1/streaming/user"
        try:
            async for event, data, _ in conn.events(path, account.auth):
                if event == "update":
                    try:
                        id = json.loads(data)["id"]
                    except (ValueError, KeyError, TypeError):
                        self.stream_errors.append(f"{name}: malformed update {data[:80]!r}")
                        continue
                    self.streamed += 1
                    self.history.observe(account.id, [self.norm(str(id))], kind="tail", stream=name)
        except HTTPError as exc:
            self.stream_errors.append(f"{name}: {exc}")
        finally:
            conns.close()

    def start_streams(self, count: int) -> None:
        chosen = sorted(self.accounts)[:count]
        for k, n in enumerate(chosen):
            task = asyncio.get_running_loop().create_task(self.stream(f"s{k}", self.accounts[n]))
            self.stream_tasks.append(task)

    async def stop_streams(self) -> None:
        for task in self.stream_tasks:
            task.cancel()
        await asyncio.gather(*self.stream_tasks, return_exceptions=True)

    # -------------------------------------------------------- operations

    async def publish(self, conn: Connections, number: int, source: int, payload: bytes) -> tuple[str, bool]:
        author = self.accounts[source]
        text = payload.decode("latin-1")[:500]
        t0 = self.history.now()
        status, data, _ = await self.call(
            conn,
            "POST",
            "/api/v1/statuses",
            author,
            form={"status": text},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        if status != 200:
            return "publish", False
        self.history.publish(author.id, self.norm(str(data["id"])), t0=t0)
        self.published[number] = (author, str(data["id"]))
        return "publish", True

    async def read_page(
        self, conn: Connections, sink: Account, limit: int, kind: str, path: str, **bounds: Any
    ) -> tuple[bool, Any, dict[str, str]]:
        t0 = self.history.now()
        status, data, headers = await self.call(conn, "GET", path, sink, parse=self.recording)
        if not self.recording:  # measuring only: the status is all we need
            return status == 200, [], headers
        if status != 200 or not isinstance(data, list):
            return False, None, headers
        ids = [self.norm(str(s["id"])) for s in data]
        self.history.observe(sink.id, ids, kind=kind, limit=limit, t0=t0, **bounds)
        return True, data, headers

    async def execute(self, conn: Connections, op: Any, number: int | None) -> tuple[str, bool]:
        """Send one workload operation; returns (kind, succeeded)."""
        limit = min(self.args.limit, 40)
        if isinstance(op, Home):
            sink = self.accounts[op.sink]
            ok, data, headers = await self.read_page(conn, sink, limit, "page", f"/api/v1/timelines/home?limit={limit}")
            if ok and op.pages > 1 and (data or not self.recording):
                return "home2", await self.next_page(conn, sink, limit, headers)
            return "home", ok
        if isinstance(op, Timeline):
            source = self.accounts[op.source]
            tl_limit = min(op.limit, 40)
            ok, _, _ = await self.read_page(
                conn, source, tl_limit, "timeline", f"/api/v1/accounts/{quote(source.id)}/statuses?limit={tl_limit}"
            )
            return "timeline", ok
        if isinstance(op, Publish):
            assert number is not None, op  # operations() numbers every publish
            return await self.publish(conn, number, op.source, op.payload)
        if isinstance(op, (Follow, Unfollow)):
            kind = "follow" if isinstance(op, Follow) else "unfollow"
            sink, source = self.accounts[op.sink], self.accounts[op.source]
            t0 = self.history.now()
            status, _, _ = await self.call(conn, "POST", f"/api/v1/accounts/{quote(source.id)}/{kind}", sink)
            if status == 200:
                getattr(self.history, kind)(sink.id, source.id, t0=t0)
            return kind, status == 200
        if isinstance(op, Delete):
            target = self.published.pop(op.publish, None)
            if target is None:
                return "delete", True  # its publish failed or is still in flight: nothing to delete
            author, id = target
            t0 = self.history.now()
            status, _, _ = await self.call(conn, "DELETE", f"/api/v1/statuses/{quote(id)}", author)
            if status == 200:
                self.history.delete(self.norm(id), t0=t0)
            return "delete", status in (200, 404)
        raise InvalidArgumentError(f"load: unknown operation {op!r}")

    async def next_page(self, conn: Connections, sink: Account, limit: int, headers: dict[str, str]) -> bool:
        """Follow the Link header's rel="next", as a client scrolling down does."""
        url = None
        for part in headers.get("link", "").split(","):
            if 'rel="next"' in part and "<" in part:
                url = part[part.index("<") + 1 : part.index(">")]
        if url is None:
            return True  # no older page
        parts = urlsplit(url)
        path = parts.path + ("?" + parts.query if parts.query else "")
        base = self.targets[sink.home][2]
        if parts.path.startswith(base) and base:
            path = path[len(base) :]
        query = parse_qs(parts.query)
        # Mastodon's max_id is exclusive: recorded as before_id, so opaque ids need no
        # arithmetic and the verifier can join this page to the first (G4: no skip, no repeat).
        bounds = {}
        for name, recorded in (("max_id", "before_id"), ("since_id", "since_id"), ("min_id", "min_id")):
            value = query.get(name, [None])[0]
            if value is not None:
                if self.ordered and not value.isdigit():
                    return False  # --ordered-ids promised integer ids
                bounds[recorded] = self.norm(value)
        ok, _, _ = await self.read_page(conn, sink, limit, "page", path, **bounds)
        return ok

    def operations(self) -> Iterator[tuple[Any, int | None]]:
        """The operation stream, with each publish's number in the workload."""
        if self.args.mix == "home":
            rng = random.Random(f"load-home:{self.args.seed}")
            users = sorted(self.accounts)
            while True:
                yield Home(rng.choice(users), self.args.limit, 1), None
        workload = self.workload
        assert workload is not None, "setup() makes the workload"
        number = workload.posts_count
        for op in workload.operations():
            if isinstance(op, Publish):
                yield op, number
                number += 1
            else:
                yield op, None

    # -------------------------------------------------------------- steps

    async def step(self, rate: float, duration: float, ops: Iterator[tuple[Any, int | None]]) -> dict[str, Any]:
        """Offer ``rate`` requests/s for ``duration`` seconds, open loop; summarise."""
        loop = asyncio.get_running_loop()
        total = max(1, int(rate * duration))
        queue: asyncio.Queue[tuple[float, Any, int | None] | None] = asyncio.Queue()
        latencies: dict[str, list[float]] = defaultdict(list)
        errors: Counter[str] = Counter()
        start = loop.time() + 0.05
        connections = self.args.connections
        served_before = Counter(self.served_by)

        async def dispatch() -> None:
            sent = 0
            while sent < total:
                now = loop.time()
                due = min(total, int((now - start) * rate) + 1)
                while sent < due:
                    op, number = next(ops)
                    queue.put_nowait((start + sent / rate, op, number))
                    sent += 1
                # Sleep to the next due time, but not less than a millisecond: the
                # requests due meanwhile go out together, still timed from when they
                # were due, so batching costs no accuracy and saves many wake-ups.
                await asyncio.sleep(max(0.001, start + sent / rate - loop.time()))
            for _ in range(connections):
                queue.put_nowait(None)

        received = 0

        async def worker() -> None:
            nonlocal received
            conn = self.connection()
            try:
                while (item := await queue.get()) is not None:
                    intended, op, number = item
                    try:
                        kind, ok = await self.execute(conn, op, number)
                    except HTTPError:
                        kind, ok = op_kind(op), False
                    latencies[kind].append(loop.time() - intended)
                    if self.on_sample is not None:
                        self.on_sample(kind, ok, intended, latencies[kind][-1])
                    if not ok:
                        errors[kind] += 1
            finally:
                received += conn.received
                conn.close()

        workers = [loop.create_task(worker()) for _ in range(connections)]
        dispatcher = loop.create_task(dispatch())
        # Bounded: whatever is unfinished well after the step's end is an error.
        done, pending = await asyncio.wait([dispatcher, *workers], timeout=duration + self.args.timeout + 5)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        elapsed = loop.time() - start
        finished = sum(len(v) for v in latencies.values())
        unfinished = total - finished
        all_latencies = [x for v in latencies.values() for x in v]
        failed = sum(errors.values()) + unfinished
        result = {
            "rate": rate,
            "duration_s": round(elapsed, 3),
            "requests": total,
            "completed": finished,
            "errors": failed,
            "error_rate": failed / total,
            "throughput": finished / elapsed if elapsed > 0 else 0.0,
            "bytes_per_response": received / finished if finished else 0.0,
            **_summary(all_latencies),
            "by_kind": {k: {**_summary(v), "errors": errors[k]} for k, v in sorted(latencies.items())},
        }
        served = {w: n - served_before[w] for w, n in sorted(self.served_by.items())}
        if served:
            # HTTP requests/s each worker answered in this step (an op that reads a second page
            # makes two; workers seen earlier count, as 0, if idle now), and the busiest over the idlest (None when one answered nothing)
            result["by_worker"] = {w: round(n / elapsed, 1) for w, n in served.items()}
            low = min(served.values())
            result["worker_spread"] = round(max(served.values()) / low, 3) if low else None
        result["ok"] = result["p99_ms"] <= self.args.p99_limit and result["error_rate"] <= self.args.error_limit
        return result


# ---------------------------------------------------------------- report


def plot(
    steps: list[dict[str, Any]], path: str, title: str, p99_limit: float, half: dict[str, Any] | None = None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    rates = [s["rate"] for s in steps]
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        line = left.plot(rates, [max(s[key], 1e-3) for s in steps], marker="o", label=label)[0]
        if half is not None:  # the confirmation step at half the failure point: a star, not on the line
            left.plot(
                [half["rate"]],
                [max(half[key], 1e-3)],
                marker="*",
                markersize=12,
                color=line.get_color(),
                linestyle="none",
            )
    if half is not None:
        left.plot([], [], marker="*", color="grey", linestyle="none", label="at half the failure point")
    left.axhline(p99_limit, color="red", linestyle="--", linewidth=1, label=f"p99 limit {p99_limit:g} ms")
    left.set_yscale("log")
    left.set_xlabel("offered rate (requests/s)")
    left.set_ylabel("latency from intended send (ms)")
    left.set_title("latency (open loop)")
    left.legend(fontsize=8)
    right.plot(rates, [s["throughput"] for s in steps], marker="o", label="achieved")
    right.plot(rates, rates, linestyle=":", color="grey", label="offered")
    right2 = right.twinx()
    right2.bar(rates, [100 * s["error_rate"] for s in steps], width=max(rates) * 0.03 or 1, alpha=0.3, color="red")
    right2.set_ylim(0, max(2.0, *(100 * s["error_rate"] * 1.2 for s in steps)))
    right2.set_ylabel("errors (%, bars)")
    right.set_xlabel("offered rate (requests/s)")
    right.set_ylabel("throughput (requests/s)")
    right.set_title("throughput")
    right.legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_step(s: dict[str, Any]) -> str:
    mark = "ok " if s["ok"] else "BAD"
    return (
        f"  {mark} offered {s['rate']:8.0f}/s  achieved {s['throughput']:8.0f}/s  "
        f"p50 {s['p50_ms']:7.1f} ms  p99 {s['p99_ms']:7.1f} ms  p99.9 {s['p999_ms']:7.1f} ms  "
        f"errors {100 * s['error_rate']:5.2f}%  ({s['completed']}/{s['requests']}, "
        f"{s.get('bytes_per_response', 0) / 1024:.1f} KiB each)"
    ) + _format_workers(s)


def _format_workers(s: dict[str, Any]) -> str:
    by_worker = s.get("by_worker")
    if not by_worker or len(by_worker) < 2:
        return ""
    spread = s.get("worker_spread")
    each = "  ".join(f"{w.rsplit('/', 1)[-1]}: {r:.0f}/s" for w, r in by_worker.items())
    return f"\n      per worker {each}  (busiest/idlest {spread if spread is not None else 'inf'})"


# ------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url",
        help="the server's base URL, e.g. http://127.0.0.1:8000; several, comma-separated, for servers that each "
        "host their own accounts (decentralised nodes): accounts are registered round-robin and each one's "
        "requests go to its own server",
    )
    who = parser.add_argument_group("accounts")
    who.add_argument(
        "--admin-token",
        default=os.environ.get("TWITTERCORE_ADMIN_TOKEN"),
        help="register --users fresh accounts with this admin token (POST /api/v1/accounts)",
    )
    who.add_argument("--tokens", help="use existing accounts instead: a file of bearer tokens, one a line")
    shape = parser.add_argument_group("workload")
    shape.add_argument("--users", type=int, default=50)
    shape.add_argument("--followees", type=float, default=10, help="mean accounts each user follows")
    shape.add_argument("--posts", type=int, default=200, help="posts made during setup")
    shape.add_argument("--payload", type=int, default=140, help="characters per post")
    shape.add_argument("--limit", type=int, default=20, help="page size of home reads (at most 40)")
    shape.add_argument(
        "--mix",
        choices=("workload", "home"),
        default="workload",
        help="workload: Twitter's mix of reads, posts, follows, deletes; home: home reads only",
    )
    shape.add_argument("--seed", type=int, default=1)
    drive = parser.add_argument_group("load")
    drive.add_argument("--rate", type=float, default=200.0, help="requests/s (the first step when ramping)")
    drive.add_argument("--duration", type=float, default=10.0, help="seconds per step")
    drive.add_argument("--connections", type=int, default=64, help="concurrent clients (keep-alive connections)")
    drive.add_argument("--streams", type=int, default=4, help="clients holding the user stream open")
    drive.add_argument("--timeout", type=float, default=10.0, help="seconds before a request counts as failed")
    drive.add_argument("--warmup", type=float, default=0.0, help="seconds at the first rate before measuring")
    drive.add_argument("--ramp", action="store_true", help="raise the rate step by step to the failure point")
    drive.add_argument("--ramp-factor", type=float, default=1.5)
    drive.add_argument("--cooldown", type=float, default=3.0, help="seconds of rest before the half-failure-point step")
    drive.add_argument("--max-steps", type=int, default=8)
    drive.add_argument("--p99-limit", type=float, default=100.0, help="ms: a step with a higher p99 fails")
    drive.add_argument("--error-limit", type=float, default=0.01, help="a step with more errors than this share fails")
    parser.add_argument(
        "--ordered-ids",
        action="store_true",
        help="the server's ids are integers in commit order (twittercore's are): lets the "
        "verifier check one global order and pages read with max_id",
    )
    parser.add_argument("--out", default="load-report", help="directory for history.jsonl, report.json, latency.png")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--no-record",
        action="store_true",
        help="measure only: no history, no verification (the generator then parses no pages, "
        "leaving more CPU to the server when both share a machine)",
    )


async def drive(url: str, args: argparse.Namespace) -> dict[str, Any]:
    os.makedirs(args.out, exist_ok=True)
    load = LoadRun(url, args)
    steps: list[dict[str, Any]] = []
    try:
        await load.setup(None)
        load.start_streams(min(args.streams, len(load.accounts)))
        await asyncio.sleep(0.3)  # let the streams connect before the load starts
        ops = load.operations()
        rate = args.rate
        if args.warmup > 0:
            # Fills the server's caches and the page cache of its disk; recorded
            # in the history (so verified) but not a step of the ramp.
            warm = await load.step(rate, args.warmup, ops)
            print("  warmup:" + format_step(warm)[5:], flush=True)
        for _ in range(args.max_steps if args.ramp else 1):
            step = await load.step(rate, args.duration, ops)
            steps.append(step)
            print(format_step(step), flush=True)
            if not step["ok"]:
                break
            rate *= args.ramp_factor
        failure = next((s["rate"] for s in steps if not s["ok"]), None)
        sustainable = max((s["rate"] for s in steps if s["ok"]), default=None)
        half = None
        if args.ramp and failure is not None:
            # The failed step left the server (and its host) loaded: let it drain first.
            await asyncio.sleep(args.cooldown)
            half = await load.step(failure / 2, args.duration, ops)
            half["half_of_failure_point"] = True
            print("  at half the failure point:", flush=True)
            print(format_step(half), flush=True)
        await asyncio.sleep(0.5)  # let the streams deliver the last posts
    finally:
        await load.stop_streams()
        load.history.close()

    from ..checking.verify import Report, verify

    if load.recording:
        report = verify([os.path.join(args.out, "history.jsonl")], ordered=True if args.ordered_ids else False)
    else:
        report = Report()
        report.notes.append("--no-record: nothing was recorded, so nothing was verified")
    summary = {
        "url": url,
        "mix": args.mix,
        "connections": args.connections,
        "steps": steps,
        "half_of_failure_point": half,
        "failure_point": failure,
        "max_sustainable_rate": sustainable,
        "streamed_events": load.streamed,
        "stream_errors": load.stream_errors[:10],
        "verify": {
            "recorded": load.recording,
            "ok": report.ok,
            "counts": report.counts,
            "violations": report.violations,
            "stats": report.stats,
        },
    }
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    if not args.no_plot and steps:
        plot(
            steps,
            os.path.join(args.out, "latency.png"),
            f"twittercore load {url} ({args.mix}, {args.connections} clients)",
            args.p99_limit,
            half,
        )
    print(report.format() if load.recording else "load: --no-record: nothing verified")
    if failure is not None:
        print(
            f"load: failure point {failure:.0f} requests/s; maximum sustainable rate {sustainable:.0f} requests/s"
            if sustainable
            else f"load: failure point {failure:.0f} requests/s"
        )
    elif args.ramp:
        print(f"load: no failure up to {steps[-1]['rate']:.0f} requests/s")
    print(f"load: {load.streamed} streamed events; report in {args.out}/", flush=True)
    return summary


def _run_loop(coro: Any) -> Any:
    """asyncio.run, on uvloop when installed: it halves the generator's CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def run(args: argparse.Namespace) -> int:
    try:
        for url in args.url.split(","):
            split_url(url.strip())
        if not 0 < args.rate or not 0 < args.duration or args.connections < 1:
            raise InvalidArgumentError("load: --rate, --duration and --connections must be positive")
        summary = _run_loop(drive(args.url, args))
    except (InvalidArgumentError, ValueError) as exc:
        print(f"twittercore {exc}", file=sys.stderr)
        return 2
    except HTTPError as exc:
        print(f"twittercore load: {exc} (is the server running?)", file=sys.stderr)
        return 2
    return 0 if summary["verify"]["ok"] else 1
