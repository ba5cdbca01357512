"""``make demo`` / ``python -m twittercore demo``: a synthetic Twitter, replayed, recorded, verified.

Steps: generate a workload (default 10,000 users, ~1M follows, 200,000 posts),
load it into an LMDB store (a temporary directory, or ``--data DIR``), replay
its operation stream (home reads timed) while another process tails a few
sinks live, read back the streams of more sinks, verify the recorded history
for G1-G3, then print a table and write a report folder (``--out``, default
``reports/demo``): ``summary.json``, ``history.jsonl`` and
``live-tails.jsonl`` (re-check them with ``twittercore verify``),
``degrees.png`` and ``latency.png``.  Exit status 0 when every guarantee
holds and every live tail ran without an error.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import tempfile
import threading
import time
from typing import Any

from ..checking.recorder import Recorder
from ..checking.verify import verify
from ..checking.workload import Workload, replay
from ..errors import ConfigurationError
from . import report as rp


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=10_000, help="users (nodes); default 10,000")
    parser.add_argument("--posts", type=int, default=200_000, help="initial posts; default 200,000")
    parser.add_argument("--reads", type=int, default=20_000, help="read operations replayed; default 20,000")
    parser.add_argument("--follows", "--mean-followees", dest="mean_followees", type=float, default=100,
                        help="mean followees per user; default 100")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", help="store directory (default: a temporary one, removed afterwards)")
    parser.add_argument("--memory", action="store_true", help="use the in-memory reference store instead of LMDB")
    parser.add_argument(
        "--tails",
        type=int,
        default=50,
        help="sinks whose stream since the replay began is read back (changes) and checked",
    )
    parser.add_argument("--live", type=int, default=2,
                        help="sinks tailed live by threads during the replay, and checked")  # fmt: skip
    parser.add_argument("--out", default=os.path.join("reports", "demo"), help="report folder")
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")


def _open_store(args: argparse.Namespace, scratch: str) -> Any:
    import twittercore

    if args.memory:
        return twittercore.open(":memory:"), ":memory:"
    target = args.data or os.path.join(scratch, "store")
    if args.data and os.path.isdir(target) and os.listdir(target):
        raise ConfigurationError(
            f"--data {target}: the directory is not empty (the demo needs a fresh store; pick a new directory)"
        )
    # Batched commits are few, so fsync on each costs little; durable is the default worth showing.
    # A store whose fan-out settings change rebuilds its windows at open: the bar shows it.
    with rp.RebuildBar("building fan-out windows") as bar:
        return twittercore.open(target, progress=bar), target


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console()
    started = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    workload = Workload(users=args.users, posts=args.posts, reads=args.reads,
                        mean_followees=args.mean_followees, seed=args.seed)  # fmt: skip
    history_path = os.path.join(args.out, "history.jsonl")
    summary: dict[str, Any] = {"workload": workload.params}
    with tempfile.TemporaryDirectory(prefix="twittercore-demo-") as scratch:
        store, where = _open_store(args, scratch)
        args.store_path = where
        console.print(f"[bold]twittercore demo[/]: {workload!r} into {type(store).__name__} ({where})")
        with store, Recorder(store, history_path) as recorder:
            columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]}"), TimeElapsedColumn())  # fmt: skip
            with Progress(*columns, console=console, transient=False) as progress:
                result = _replay(workload, recorder, progress, args)
                tail_started = time.perf_counter()
                tails = _follow_tails(recorder, result.start_of_operations, args.tails, args.users, progress)
                result.seconds["tails"] = time.perf_counter() - tail_started
            followers = [store.sink_count(u) for u in range(1, args.users + 1)]
            followees = [store.source_count(u) for u in range(1, args.users + 1)]
        console.print("verifying the recorded history ...")
        histories = [history_path] + ([result.live["history"]] if result.live["history"] else [])
        check = verify(histories)
    summary.update(_summary(workload, result, recorder, check, tails, followers, followees))
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)
    console.print(check.format())
    for error in result.live["errors"]:
        console.print(f"[bold red]✗ live tail failed[/]: {error}")
    console.print(_table(summary))
    if args.plots:
        rp.plot_degrees(os.path.join(args.out, "degrees.png"), followers, followees)
        rp.plot_latencies(os.path.join(args.out, "latency.png"), recorder.home_ns)
    rp.write_json(os.path.join(args.out, "summary.json"), summary)
    files = ["summary.json", "history.jsonl"] + (["live-tails.jsonl"] if result.live["history"] else [])
    files += ["degrees.png", "latency.png"] if args.plots else []
    console.print(f"report written to {args.out}/ ({', '.join(files)}) in {time.perf_counter() - started:.1f} s")
    console.print(f"re-check with: twittercore verify {' '.join(histories)}")
    return 0 if check.ok and not result.live["errors"] else 1


def _replay(workload: Workload, recorder: Recorder, progress: Any, args: argparse.Namespace) -> Any:
    expected_follows = int(args.users * args.mean_followees)
    tasks = {
        "graph": progress.add_task("loading follows", total=expected_follows, rate=""),
        "posts": progress.add_task("publishing posts", total=args.posts, rate=""),
        "operations": progress.add_task("replaying operations", total=None, rate=""),
    }
    counts = dict.fromkeys(tasks, 0)
    phase_start: dict[str, float] = {}
    last_tick = [time.perf_counter()]

    def tick(phase: str, n: int) -> None:
        # A phase's first tick comes after its first batch: it began at the previous tick.
        phase_start.setdefault(phase, last_tick[0])
        last_tick[0] = time.perf_counter()
        counts[phase] += n
        if phase == "operations" and counts[phase] % 500:
            return  # redraw bookkeeping every 500 operations, not every one
        elapsed = time.perf_counter() - phase_start[phase]
        rate = f"{counts[phase] / elapsed:,.0f}/s" if elapsed > 0 else ""
        progress.update(tasks[phase], completed=counts[phase], rate=rate)

    loaded = replay(workload, recorder, phases=("graph", "posts"), progress=tick)
    progress.update(tasks["graph"], total=loaded.follows, completed=loaded.follows)
    start_of_operations = recorder.last_id()
    last_tick[0] = time.perf_counter()
    store_path = None if args.memory else args.store_path
    # Tail busy sinks (the most followees among a spread sample): quiet ones may get nothing to check.
    candidates = _spread(args.live * 20, args.users, offset=7)
    busy = sorted(candidates, key=lambda sink: -len(workload.followees(sink)))[: args.live]
    live = _LiveTails(recorder, busy, start_of_operations, store_path, args.out)
    try:
        replay(workload, recorder, phases=("operations",), progress=tick, resume=loaded)
    finally:
        loaded.live = live.stop()
    progress.update(tasks["operations"], total=counts["operations"], completed=counts["operations"])
    loaded.start_of_operations = start_of_operations
    return loaded


def _spread(count: int, users: int, offset: int = 0) -> list[int]:
    """``count`` sinks spread evenly over the users."""
    return sorted({1 + (offset + (n * users) // max(count, 1)) % users for n in range(count)})


class _LiveTails:
    """Tail a few sinks live while the operations replay, recorded like any tail.

    With an LMDB store the tails run in a child process with its own history
    file (``live-tails.jsonl``, merged by the verifier): that keeps them off
    this process's GIL, so they do not distort the read latencies, and shows
    the cross-process path.  The in-memory store can only be tailed by threads.
    A tail that fails is reported (``errors``), never silently empty.
    """

    def __init__(self, recorder: Recorder, sinks: list[int], after: int, store_path: str | None, out: str) -> None:
        self.sinks = len(sinks)
        self.history_path = os.path.join(out, "live-tails.jsonl") if store_path and sinks else None
        self.delivered, self.errors = [0] * len(sinks), list[str]()
        if self.history_path:
            context = multiprocessing.get_context("spawn")
            self.stop_event: Any = context.Event()
            self.results: Any = context.Queue()
            self.workers: list[Any] = [context.Process(
                target=_tail_process, args=(store_path, self.history_path, sinks, after, self.stop_event, self.results)
            )]  # fmt: skip
        else:
            self.stop_event, self.results = threading.Event(), None
            self.workers = [
                threading.Thread(target=_tail_until, daemon=True,
                                 args=(recorder, sink, after, self.stop_event, self.delivered, n, self.errors))
                for n, sink in enumerate(sinks)
            ]  # fmt: skip
        for worker in self.workers:
            worker.start()

    def stop(self) -> dict[str, Any]:
        self.stop_event.set()
        if self.results is not None:
            process = self.workers[0]
            try:
                self.delivered, self.errors = self.results.get(timeout=60)
            except queue.Empty:
                self.errors = [f"the tail process ended without a result (exit code {process.exitcode})"]
        for worker in self.workers:
            worker.join(timeout=10)
        return {"sinks": self.sinks, "deliveries": sum(self.delivered), "history": self.history_path,
                "errors": self.errors}  # fmt: skip


def _tail_until(recorder: Recorder, sink: int, cursor: int, stop: Any, counts: list[int], n: int,
                errors: list[str]) -> None:  # fmt: skip
    try:
        while not stop.is_set():
            # A short timeout lets the loop notice the stop; each tail call is one recorded stream.
            for item in recorder.tail(sink, after=cursor, timeout=0.2):
                cursor = item.position
                counts[n] += 1
    except Exception as exc:  # report it: a failing tail is a finding, not an empty stream
        errors.append(f"tail of sink {sink}: {type(exc).__name__}: {exc}")


def _tail_process(store_path: str, history_path: str, sinks: list[int], after: int, stop: Any, results: Any) -> None:
    import twittercore

    counts, errors = [0] * len(sinks), list[str]()
    try:
        with twittercore.open(store_path) as store, Recorder(store, history_path) as recorder:
            threads = [threading.Thread(target=_tail_until, args=(recorder, sink, after, stop, counts, n, errors))
                       for n, sink in enumerate(sinks)]  # fmt: skip
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    except Exception as exc:
        errors.append(f"tail process: {type(exc).__name__}: {exc}")
    results.put((counts, errors))


def _follow_tails(recorder: Recorder, after: int, count: int, users: int, progress: Any) -> dict[str, Any]:
    """Read back the stream of ``count`` sinks since the operations began (recorded as tail)."""
    sinks = _spread(count, users)
    task = progress.add_task("reading back streams", total=len(sinks), rate="")
    delivered = 0
    for sink in sinks:
        cursor = after
        while True:
            items, cursor = recorder.changes(sink, cursor)
            delivered += len(items)
            if not items:
                break
        progress.advance(task)
    return {"sinks": len(sinks), "deliveries": delivered}


def _summary(workload: Workload, result: Any, recorder: Recorder, check: Any, tails: dict[str, Any],
             followers: list[int], followees: list[int]) -> dict[str, Any]:  # fmt: skip
    home = rp.latency_summary(recorder.home_ns)
    timeline = rp.latency_summary(recorder.timeline_ns)
    return {
        "graph": {"follows": result.follows, "seconds": round(result.seconds["graph"], 3),
                  "follows_per_s": round(result.rate("graph", result.follows)),
                  "followers": rp.degree_counts(followers), "followees": rp.degree_counts(followees)},
        "ingest": {"posts": result.posts, "seconds": round(result.seconds["posts"], 3),
                   "events_per_s": round(result.rate("posts", result.posts))},
        "operations": {"counts": result.counts, "seconds": round(result.seconds["operations"], 3),
                       "ops_per_s": round(result.rate("operations", sum(result.counts.values())))},
        "home_read": home,
        "timeline_read": timeline,
        "tails": tails,
        "live_tails": result.live,
        "verification": {"ok": check.ok, "holds": check.holds, "violations": check.counts,
                         "examples": {g: v for g, v in check.violations.items() if v},
                         "reads_checked": check.stats.get("reads_checked", 0),
                         "observed_ids": check.stats.get("observed", 0),
                         "seconds": round(check.stats.get("seconds", 0), 3)},
    }  # fmt: skip


def _table(s: dict[str, Any]) -> Any:
    v, home, tl = s["verification"], s["home_read"], s["timeline_read"]

    def mark(ok: bool) -> str:
        return "✓" if ok else "✗"

    rows = [
        ("follows loaded", f"{s['graph']['follows']:,} at {s['graph']['follows_per_s']:,}/s"),
        ("top account's followers", f"{s['graph']['followers']['max']:,}"),
        ("ingest (publish_many)", f"{s['ingest']['events_per_s']:,} events/s"),
        ("home reads", f"{home.get('count', 0):,}"),
        ("home read p50 / p99", f"{home.get('p50_us', 0):,.0f} / {home.get('p99_us', 0):,.0f} µs"),
        ("profile read p50 / p99", f"{tl.get('p50_us', 0):,.0f} / {tl.get('p99_us', 0):,.0f} µs"),
        ("operations", f"{sum(s['operations']['counts'].values()):,} at {s['operations']['ops_per_s']:,}/s"),
        ("stream deliveries checked", f"{s['tails']['deliveries']:,} to {s['tails']['sinks']} sinks"),
        (
            "live tail deliveries",
            f"{s['live_tails']['deliveries']:,} to {s['live_tails']['sinks']} sinks"
            + (" (other process)" if s["live_tails"]["history"] else " (threads)"),
        ),
        ("verification", f"{v['seconds']:.2f} s, {v['observed_ids']:,} observed ids"),
        ("G1 / G2 / G3 / global", " ".join(mark(v["holds"][g]) for g in ("G1", "G2", "G3", "global"))),
    ]
    return rp.table("twittercore demo", rows, ("measure", "value"))
