#!/usr/bin/env python3
"""Compare every twittercore implementation with the baselines, on one workload, in one run.

    python benchmarks/compare.py [--quick] [--scale large] [--out reports/bench]
    twittercore bench ...        (the same, from a source checkout)

Each implementation (see ``harness/registry.py``) runs in a fresh process
that loads the same ordered ingest, passes the cross-check against the
reference store's pages, then times its calls in-process.  Writes
``results.json``, ``results.md`` and three PNGs to ``--out`` and prints a
table relative to the fastest.  Exit status 1 when any implementation failed
the cross-check, crashed or timed out; skipped ones (Redis without
``redis-server``, strategies not built yet) do not fail the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from typing import Any

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

from harness import plots, registry, report, runner, workload_file  # noqa: E402
from harness.workload_file import Samples, WorkloadSpec  # noqa: E402

# The three sizes.  quick: CI in <= 60 s.  default: the ~100-followee workload
# of the targets.  large: the throughput sweep to 1M users (needs a big machine).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "spec": WorkloadSpec(users=1_000, posts=20_000, mean_followees=50, max_followees=1_000),
        "samples": Samples(
            reads=500, timelines=300, check_sinks=20, probe_reads=50, churn=150, fanout_reps=10, timed_posts=2_000
        ),
        "sweep_users": [300, 1_000],
        "timeout": 60.0,
    },
    "default": {
        "spec": WorkloadSpec(),
        "samples": Samples(),
        "sweep_users": [1_000, 3_000, 10_000],
        "timeout": 1_800.0,
    },
    # A second shape, after one built independently of the project (issue 13):
    # milder skew (followee counts median ~80, p90 ~190; authors Zipf 0.7),
    # every post one publish (no bulk load), and cold reads: 2,000 distinct
    # sinks, each read once.  Compare the event-cache-off rows on it.
    "cold": {
        "spec": WorkloadSpec(degree_sigma=0.67, author_exponent=0.7, distinct_reads=True),
        "samples": Samples(timed_posts=200_000),
        "sweep_users": [1_000, 3_000, 10_000],
        "timeout": 3_600.0,
    },
    "large": {
        "spec": WorkloadSpec(),
        "samples": Samples(),
        "sweep_users": [10_000, 100_000, 1_000_000],
        "timeout": 7_200.0,
    },
}
SWEEP_SAMPLES = Samples(
    reads=500, timelines=0, check_sinks=10, probe_reads=0, churn=0, fanout_reps=0, timed_posts=5_000
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny workload, finishes in <= 60 s (CI)")
    parser.add_argument(
        "--scale",
        choices=["default", "cold", "large"],
        default="default",
        help="large: sweep users 10k -> 1M for the throughput plot; cold: the second workload "
        "(milder skew, built one publish per post, each sink read once; see benchmarks/README.md)",
    )
    parser.add_argument("--out", default=os.path.join("reports", "bench"), help="output directory")
    parser.add_argument("--only", help="comma-separated implementation names (default: all)")
    parser.add_argument("--users", type=int, help="override the workload's user count")
    parser.add_argument("--posts", type=int, help="override the workload's post count")
    parser.add_argument("--followees", type=int, help="override the mean followees per user")
    parser.add_argument("--seed", type=int, help="workload seed (default 1)")
    parser.add_argument("--timeout", type=float, help="seconds per implementation before it is killed")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run every implementation N times, interleaved, and report medians (try 3)",
    )
    parser.add_argument("--no-sweep", action="store_true", help="skip the throughput-vs-users runs")
    parser.add_argument(
        "--sweep-users",
        type=lambda text: [int(n) for n in text.split(",")],
        metavar="N,N,...",
        help="user counts of the throughput sweep (default: the scale's preset)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--extra-impl",
        action="append",
        default=[],
        metavar="NAME=module:Class",
        help="also run this Target class (see harness/target.py)",
    )
    parser.add_argument(
        "--extra-path",
        action="append",
        default=[],
        metavar="DIR",
        help="directory put on sys.path for --extra-impl modules",
    )


def _preset(args: argparse.Namespace) -> dict[str, Any]:
    preset = dict(PRESETS["quick" if args.quick else args.scale])
    spec = preset["spec"]
    if args.users:
        spec = spec.scaled(args.users)
    if args.posts:
        spec = replace(spec, posts=args.posts)
    if args.followees:
        spec = replace(spec, mean_followees=args.followees)
    if args.seed is not None:
        spec = replace(spec, seed=args.seed)
    preset["spec"] = spec
    if args.timeout:
        preset["timeout"] = args.timeout
    return preset


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def run(args: argparse.Namespace) -> int:
    console = _console()
    preset = _preset(args)
    spec: WorkloadSpec = preset["spec"]
    try:
        entries = registry.select(args.only, args.extra_impl)
    except ValueError as exc:
        console.print(f"[red]compare.py: {exc}")
        return 2
    left_out = [e for e in entries if args.quick and not args.only and not e.quick]
    entries = [e for e in entries if e not in left_out]
    progress = not args.no_progress and console.is_terminal
    extra_paths = [os.path.abspath(p) for p in args.extra_path]
    os.makedirs(args.out, exist_ok=True)
    loadavg_start = os.getloadavg()
    started = time.perf_counter()

    def on_result(entry: registry.Entry, result: dict[str, Any]) -> None:
        status = result["status"]
        colour = {"ok": "green", "skipped": "yellow"}.get(status, "red")
        detail = f"{result['wall_s']:.1f} s" if status == "ok" else (result.get("reason") or "").strip()
        console.print(f"  [{colour}]{status:>9}[/] {entry.name:<12} {detail}")

    with tempfile.TemporaryDirectory(prefix="twittercore-fixture-") as tmp:
        console.print(f"[bold]workload[/] {spec} (generator: {workload_file.generator_name()})")
        t0 = time.perf_counter()
        fixture = workload_file.build(spec, preset["samples"])
        fixture_path = os.path.join(tmp, "fixture.pickle")
        workload_file.save(fixture, fixture_path)
        console.print(
            f"  built in {time.perf_counter() - t0:.1f} s: {fixture.edges:,} follows, "
            f"{fixture.post_count:,} posts; each implementation in a fresh process"
        )
        rounds = []
        for n in range(max(1, args.repeat)):
            if args.repeat > 1:
                console.print(f"[bold]round {n + 1} of {args.repeat}")
            rounds.append(
                runner.run_all(
                    entries,
                    fixture_path,
                    edges=fixture.edges,
                    timeout=preset["timeout"],
                    progress=progress,
                    sweep=False,
                    extra_paths=extra_paths,
                    on_result=on_result,
                )
            )
        results = runner.median_of(rounds)
        for entry in left_out:
            results[entry.name] = {
                "name": entry.name,
                "status": "skipped",
                "wall_s": 0.0,
                "reason": f"not part of --quick (make bench, or --only {entry.name})",
            }
            on_result(entry, results[entry.name])
        graph_edges, timed_posts = fixture.edges, fixture.post_count - fixture.bulk_posts
        del fixture

        sweep: dict[str, dict[str, dict[str, Any]]] = {}
        if not args.no_sweep:
            sweep_entries = [e for e in entries if results.get(e.name, {}).get("status") == "ok"]
            for users in args.sweep_users or preset["sweep_users"]:
                if users == spec.users:
                    sweep[str(users)] = results
                    continue
                small = spec.scaled(users)
                console.print(f"[bold]sweep[/] {users:,} users ({small.posts:,} posts)")
                samples = replace(SWEEP_SAMPLES, timed_posts=min(SWEEP_SAMPLES.timed_posts, small.posts // 4))
                path = os.path.join(tmp, f"sweep-{users}.pickle")
                small_fixture = workload_file.build(small, samples)
                workload_file.save(small_fixture, path)
                edges = small_fixture.edges
                del small_fixture
                sweep[str(users)] = runner.median_of(
                    [
                        runner.run_all(
                            sweep_entries,
                            path,
                            edges=edges,
                            timeout=preset["timeout"],
                            progress=progress,
                            sweep=True,
                            extra_paths=extra_paths,
                            on_result=on_result,
                        )
                        for _round in range(max(1, args.repeat))
                    ]
                )

    failed = {n: r for by in [results, *sweep.values()] for n, r in by.items() if r["status"] not in ("ok", "skipped")}
    command = "python benchmarks/compare.py" + "".join(" " + shlex.quote(a) for a in _argv_of(args))
    meta = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "loadavg_start": loadavg_start,
        "loadavg_end": os.getloadavg(),
        "seconds": round(time.perf_counter() - started, 1),
        "repeat": max(1, args.repeat),
        "workload": vars(spec) | {},
        "generator": workload_file.generator_name(),
        "graph_edges": graph_edges,
        "timed_posts": timed_posts,
        "reference": next((n for n, r in results.items() if r.get("reference")), None),
        "ratios": report.ratios(results),
        "price_of_order": report.price_of_order(results),
        "failed": sorted(failed),
    }
    report.write_json(os.path.join(args.out, "results.json"), meta, results, sweep)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(report.markdown(meta, results))
    subtitle = f"{spec.users:,} users, {spec.posts:,} posts, load {loadavg_start[0]:.1f}"
    plots.write_all(args.out, results, sweep, subtitle)

    report.print_table(
        results,
        f"twittercore vs baselines ({spec.users:,} users, relative to the fastest; "
        f"load {loadavg_start[0]:.2f} -> {meta['loadavg_end'][0]:.2f})",
    )
    for key, r in meta["ratios"].items():
        console.print(
            f"  {key}: {r['value']}× ({r['means']})"
            + ("" if r["target"] is None else f", target ≥ {r['target']}×: {'met' if r['met'] else 'NOT met'}")
        )
    if meta["price_of_order"]:
        report.print_price_of_order(meta["price_of_order"])
    console.print(f"wrote {args.out}/results.json, results.md and plots in {meta['seconds']} s")
    if failed:
        for name, r in failed.items():
            console.print(f"[red]FAILED {name}: {r['status']}: {(r.get('reason') or '').strip()}")
        return 1
    return 0


def _argv_of(args: argparse.Namespace) -> list[str]:
    """The options that made this run, for the command line in results.md (no local paths)."""
    out = []
    if args.quick:
        out.append("--quick")
    if args.scale != "default":
        out += ["--scale", args.scale]
    for flag in ("only", "users", "posts", "followees", "seed", "timeout"):
        value = getattr(args, flag)
        if value is not None:
            out += [f"--{flag}", str(value)]
    if args.repeat > 1:
        out += ["--repeat", str(args.repeat)]
    if args.no_sweep:
        out.append("--no-sweep")
    if args.sweep_users:
        out += ["--sweep-users", ",".join(map(str, args.sweep_users))]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="compare.py", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
