"""Runs each implementation in a fresh child process, with a timeout, and collects results.

The reference (:data:`registry.REFERENCE`, the memory store) runs first when
selected; its cross-check pages go to every later child, which compares its
own pages with them before timing anything.  When the reference is not
selected, the first implementation that succeeds plays its part.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from . import redis_cluster, redis_server
from .registry import REFERENCE, Entry

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (BENCH_DIR, env.get("PYTHONPATH", "")) if p)
    return env


def _run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Start the child in its own process group; kill the whole group on timeout."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.child", spec["spec_path"]],
        env=_child_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=None,
    )
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return {
            "name": spec["entry"]["name"],
            "status": "timeout",
            "reason": f"no result after {timeout:.0f} s (raise --timeout, or use a smaller workload)",
        }
    except BaseException:  # Ctrl-C reaches only our process group: take the child down with us
        _kill(proc)
        raise
    try:
        with open(spec["result"]) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {
            "name": spec["entry"]["name"],
            "status": "error",
            "reason": f"child exited with code {proc.returncode} and wrote no result",
        }


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_all(
    entries: list[Entry],
    fixture_path: str,
    *,
    edges: int,
    timeout: float,
    progress: bool,
    sweep: bool,
    extra_paths: list[str],
    on_result: Callable[[Entry, dict[str, Any]], None],
) -> dict[str, dict[str, Any]]:
    """Run every entry on the fixture; returns ``{name: result}`` (pages included)."""
    ordered = sorted(entries, key=lambda e: e.name != REFERENCE)  # stable: the reference first
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="twittercore-bench-") as tmp:
        reference_path, reference_name = None, None
        for entry in ordered:
            workdir = os.path.join(tmp, entry.name)
            os.makedirs(workdir)
            spec: dict[str, Any] = {
                "entry": dataclasses.asdict(entry),
                "fixture": fixture_path,
                "workdir": workdir,
                "result": os.path.join(tmp, f"{entry.name}.result.json"),
                "spec_path": os.path.join(tmp, f"{entry.name}.spec.json"),
                "reference": reference_path,
                "reference_name": reference_name,
                "progress": progress,
                "sweep": sweep,
                "extra_paths": extra_paths,
            }
            started = time.perf_counter()
            if entry.max_edges is not None and edges > entry.max_edges:
                result = {
                    "name": entry.name,
                    "status": "skipped",
                    "reason": f"{edges:,} follows is over its limit of {entry.max_edges:,} "
                    "(it would need more memory than the machine has)",
                }
            elif entry.needs_redis and (reason := redis_server.missing_reason()):
                result = {"name": entry.name, "status": "skipped", "reason": reason}
            elif entry.needs_cluster and (reason := redis_cluster.missing_reason()):
                result = {"name": entry.name, "status": "skipped", "reason": reason}
            elif entry.needs_cluster:
                try:
                    with redis_cluster.running(3) as cluster:
                        spec["redis_url"] = cluster.url
                        result = _write_and_run(spec, timeout)
                except RuntimeError as exc:
                    result = {"name": entry.name, "status": "skipped", "reason": str(exc)}
            elif entry.needs_redis:
                try:
                    with redis_server.running() as url:
                        spec["redis_url"] = url
                        result = _write_and_run(spec, timeout)
                except RuntimeError as exc:
                    result = {"name": entry.name, "status": "skipped", "reason": str(exc)}
            else:
                result = _write_and_run(spec, timeout)
            result["wall_s"] = time.perf_counter() - started
            if result["status"] == "ok" and reference_path is None:
                reference_path = os.path.join(tmp, "reference.pages.json")
                with open(reference_path, "w") as f:
                    json.dump(result["pages"], f)
                reference_name = entry.name
                result["reference"] = True
            results[entry.name] = result
            on_result(entry, result)
    return results


def _write_and_run(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    with open(spec["spec_path"], "w") as f:
        json.dump(spec, f)
    return _run_child(spec, timeout)


def median_of(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Merge the results of interleaved rounds: the median of every number, per implementation.

    Rounds run A B C, A B C, ... so a burst of load from a neighbour hits one
    round of each rather than all of one implementation.  An implementation
    that did not succeed in every round keeps its first unsuccessful result.
    """
    if len(rounds) == 1:
        return rounds[0]
    merged: dict[str, dict[str, Any]] = {}
    for name in rounds[0]:
        runs = [r[name] for r in rounds if name in r]
        bad = [run for run in runs if run.get("status") != "ok"]
        if bad:
            merged[name] = bad[0]
        else:
            merged[name] = _median_tree(runs)
            merged[name]["rounds"] = len(runs)
    return merged


def _median_tree(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, bool) or first is None or isinstance(first, str):
        return first
    if isinstance(first, (int, float)):
        ordered = sorted(v for v in values if isinstance(v, (int, float)))
        return ordered[len(ordered) // 2]
    if isinstance(first, dict):
        if all(isinstance(v, dict) for v in values):
            return {k: _median_tree([v[k] for v in values if k in v]) for k in first}
        return first
    if isinstance(first, (list, tuple)) and all(isinstance(v, (list, tuple)) and len(v) == len(first) for v in values):
        if first and all(isinstance(x, (int, float, dict)) for x in first):
            return [_median_tree([v[i] for v in values]) for i in range(len(first))]
    return first
