"""Where push beats pull: publish cost vs follower count, home-read cost vs followed sources.

    .venv/bin/python benchmarks/fanout_crossover.py [--quick] [--out reports/fanout]

What is measured, on one LMDB store (``durable=False``, 140-byte payloads):

* **Write cost vs F.**  Probe sources with F = 1 ... 10,000 followers (the
  followers are 10,000 background sinks).  Each probe publishes one event per
  ``publish`` call, timed alone with ``perf_counter_ns``; p50 and p99 per F.
* **Read cost vs k.**  Probe sinks following k = 10 ... 5,000 of 5,000
  sources that each hold ``--per-source`` events; ``home(sink, 50)`` with
  payloads, timed alone; p50 and p99 per k.

The store is built once in ``fanout="read"`` and measured (reads first, so the
probes' publishes never touch the data the reads see), then reopened with
``fanout="write"`` (reopening rebuilds every window) and measured again: both
strategies answer on the same graph and the same events, and the script checks
that every probe sink's page is identical in both (G5).

The crossover: push adds ``w(F) = write(F) - read(F)`` to a publish and saves
``r(k) = read(k) - write(k)`` on every home read.  Pushing one event to F
followers pays for itself once those followers make ``w(F) / r(k)`` home reads
between two of the source's publishes in all (``w(F) / (F r(k))`` each); the
table prints that break-even for k = 100.

Prints rich tables with ``os.getloadavg()``; writes ``fanout.json``,
``fanout_write_cost.png`` and ``fanout_read_cost.png`` to ``--out``.
``--quick`` (fewer repetitions and points) finishes in under 30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import twittercore
from twittercore.tools.percentiles import percentile  # the one definition: nearest rank
from twittercore.tools.report import RebuildBar

PAYLOAD = b"p" * 140
BACKGROUND_SINKS = 10_000
SOURCES = 5_000
# Id ranges kept apart so nothing collides: background sinks, probe sinks,
# probe sources; the 5,000 read sources are 0 ... 4,999.
BACKGROUND_BASE = 1 << 40
PROBE_SINK_BASE = 2 << 40
PROBE_SOURCE_BASE = 3 << 40


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    n = len(ordered)
    return {
        "p50_us": percentile(ordered, 50, presorted=True) / 1000,
        "p99_us": percentile(ordered, 99, presorted=True) / 1000,
        "mean_us": statistics.fmean(ordered) / 1000,
        "n": n,
    }


def build(path: str, fs: list[int], ks: list[int], per_source: int, seed: int) -> None:
    """The graph and the read sources' events, in read mode (one transaction each)."""
    rng = random.Random(seed)
    with twittercore.open(path, fanout="read", durable=False) as store:
        pairs = []
        for f in fs:
            pairs += [(BACKGROUND_BASE + i, PROBE_SOURCE_BASE + f) for i in range(f)]
        for k in ks:
            pairs += [(PROBE_SINK_BASE + k, s) for s in rng.sample(range(SOURCES), k)]
        store.follow_many(pairs)
        events = [(rng.randrange(SOURCES), PAYLOAD) for _ in range(SOURCES * per_source)]
        for start in range(0, len(events), 100_000):
            store.publish_many(events[start : start + 100_000])
        # Each probe source gets a short history, so its followers' windows
        # are not empty when the write-mode rebuild runs.
        store.publish_many([(PROBE_SOURCE_BASE + f, PAYLOAD) for f in fs for _ in range(20)])


def measure_reads(store: Any, ks: list[int], reps: int) -> tuple[dict[int, dict], dict[int, list[int]]]:
    results, pages = {}, {}
    for k in ks:
        sink = PROBE_SINK_BASE + k
        for _ in range(max(5, reps // 10)):  # warm-up
            store.home(sink, 50)
        samples = []
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            page = store.home(sink, 50)
            samples.append(time.perf_counter_ns() - t0)
        pages[k] = [e.id for e in page]
        results[k] = percentiles(samples)
    return results, pages


def measure_writes(store: Any, fs: list[int], reps: int) -> dict[int, dict]:
    results = {}
    for f in fs:
        source = PROBE_SOURCE_BASE + f
        # Big fan-outs cost tens of ms each: fewer repetitions keep the run short.
        n = max(9, min(reps, int(reps * 300 / f))) if f > 300 else reps
        store.publish(source, PAYLOAD)  # warm-up
        samples = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            store.publish(source, PAYLOAD)
            samples.append(time.perf_counter_ns() - t0)
        results[f] = percentiles(samples)
    return results


def plot(out: str, data: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    load = "load {:.1f} {:.1f} {:.1f}".format(*data["loadavg_end"])
    for name, key, xlabel, title in (
        ("fanout_write_cost.png", "write_cost", "followers F of the publishing source", "publish latency vs followers"),
        (
            "fanout_read_cost.png",
            "read_cost",
            "followed sources k of the reading sink",
            "home read (newest 50) vs followed sources",
        ),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for mode, style in (("read", "o-"), ("write", "s-")):
            series = data[key][mode]
            xs = sorted(int(x) for x in series)
            ax.plot(xs, [series[str(x)]["p50_us"] for x in xs], style, label=f"fanout={mode} p50")
            ax.plot(xs, [series[str(x)]["p99_us"] for x in xs], style[0] + ":", alpha=0.5, label=f"fanout={mode} p99")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("latency (µs)")
        ax.set_title(f"twittercore LMDB: {title}\n({load}, 2 shared cores)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        target = os.path.join(out, name)
        fig.savefig(target, dpi=110)
        plt.close(fig)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer points and repetitions (< 30 s)")
    parser.add_argument("--out", default="reports/fanout", help="directory for JSON and PNGs")
    parser.add_argument("--per-source", type=int, default=None, help="events per read source (default 40, quick 20)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    if args.quick:
        fs = [1, 10, 100, 1000, 10_000]
        ks = [10, 100, 1000, 5000]
        read_reps, write_reps, per_source = 500, 200, args.per_source or 20
    else:
        fs = [1, 3, 10, 30, 100, 300, 1000, 3000, 10_000]
        ks = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
        read_reps, write_reps, per_source = 2000, 400, args.per_source or 40
    if 100 not in ks:
        ks.append(100)  # the break-even column uses k = 100
        ks.sort()

    from rich.console import Console
    from rich.table import Table

    # Piped output (CI logs, tee) would otherwise wrap the tables at 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 120)
    os.makedirs(args.out, exist_ok=True)
    started = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="twittercore-fanout-")
    path = os.path.join(workdir, "store")
    data: dict[str, Any] = {
        "what": "publish latency vs followers F, home newest-50 latency vs followed sources k; LMDB, durable=False",
        "quick": args.quick,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "per_source_events": per_source,
        "read_sources": SOURCES,
        "loadavg_start": os.getloadavg(),
        "read_cost": {},
        "write_cost": {},
    }
    try:
        t0 = time.perf_counter()
        build(path, fs, ks, per_source, args.seed)
        data["build_seconds"] = round(time.perf_counter() - t0, 2)
        pages = {}
        for mode in ("read", "write"):
            t0 = time.perf_counter()
            with RebuildBar(f"fanout={mode}: building windows") as bar:
                store = twittercore.open(path, fanout=mode, durable=False, event_cache=0, progress=bar)
            with store:
                data[f"reopen_{mode}_seconds"] = round(time.perf_counter() - t0, 2)
                reads, pages[mode] = measure_reads(store, ks, read_reps)
                writes = measure_writes(store, fs, write_reps)
            data["read_cost"][mode] = {str(k): v for k, v in reads.items()}
            data["write_cost"][mode] = {str(f): v for f, v in writes.items()}
        mismatched = [k for k in ks if pages["read"][k] != pages["write"][k]]
        data["pages_identical"] = not mismatched
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    data["loadavg_end"] = os.getloadavg()

    rc, wc = data["read_cost"], data["write_cost"]
    saved_100 = rc["read"]["100"]["p50_us"] - rc["write"]["100"]["p50_us"]
    load = "load {:.2f} {:.2f} {:.2f}".format(*data["loadavg_end"])

    table = Table(title=f"publish latency vs followers F (µs; {load})")
    for col in ("F", "read p50", "read p99", "write p50", "write p99", "push extra", "pay-back reads", "per follower"):
        table.add_column(col, justify="right")
    breakeven = {}
    for f in fs:
        r, w = wc["read"][str(f)], wc["write"][str(f)]
        extra = w["p50_us"] - r["p50_us"]
        payback = extra / saved_100 if saved_100 > 0 else float("inf")
        breakeven[str(f)] = {"push_extra_us": extra, "reads_to_pay_back": payback, "reads_per_follower": payback / f}
        table.add_row(
            f"{f:,}",
            f"{r['p50_us']:,.0f}",
            f"{r['p99_us']:,.0f}",
            f"{w['p50_us']:,.0f}",
            f"{w['p99_us']:,.0f}",
            f"{extra:,.0f}",
            f"{payback:,.1f}",
            f"{payback / f:.2f}",
        )
    console.print(table)
    data["breakeven_k100"] = breakeven
    data["home_saved_per_read_k100_us"] = saved_100

    table = Table(title=f"home newest 50 vs followed sources k (µs; {load})")
    for col in ("k", "read p50", "read p99", "write p50", "write p99", "pull / push"):
        table.add_column(col, justify="right")
    # Push "wins" from the smallest k after which pull stays >10% slower
    # (a single noisy point must not decide it).
    crossing = None
    for k in reversed(ks):
        if rc["read"][str(k)]["p50_us"] <= 1.1 * rc["write"][str(k)]["p50_us"]:
            break
        crossing = k
    for k in ks:
        r, w = rc["read"][str(k)], rc["write"][str(k)]
        table.add_row(
            f"{k:,}",
            f"{r['p50_us']:,.0f}",
            f"{r['p99_us']:,.0f}",
            f"{w['p50_us']:,.0f}",
            f"{w['p99_us']:,.0f}",
            f"{r['p50_us'] / w['p50_us']:.1f}x",
        )
    console.print(table)
    data["read_push_wins_from_k"] = crossing
    console.print(
        f"Reads: push (write) is >10% faster from k = {crossing} on; at k = 100 it saves {saved_100:.0f} µs "
        f"per home read.\nWrites: a publish to F followers costs 'push extra' more with push; it pays back "
        f"after 'pay-back reads' home reads (k = 100) by its followers before the source's next publish."
    )
    if mismatched:
        console.print(f"[red]pages differ between read and write for k = {mismatched} (G5 broken)[/red]")
    data["seconds"] = round(time.perf_counter() - started, 1)
    with open(os.path.join(args.out, "fanout.json"), "w") as fh:
        json.dump(data, fh, indent=1)
    written = plot(args.out, data)
    console.print(f"wrote {os.path.join(args.out, 'fanout.json')}, {', '.join(written)} in {data['seconds']} s")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
