"""One scenario on one deployment: up, load with faults on schedule, recovery checks, verify, report, down.

The load is :class:`twittercore.tools.loadtool.LoadRun` itself (setup,
streams, open-loop steps with the workload's mix), so a lab run and a
``twittercore load`` run measure the same thing; the lab adds a per-request
timeline, the faults, reconnecting streams, and after the load (and
``settle`` seconds) a read of every acknowledged post by id: each must be
there, each acknowledged delete must be gone.  Then the history goes
through :func:`twittercore.checking.verify.verify` unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..checking.verify import verify
from ..errors import InvalidArgumentError
from ..tools import loadtool
from ..tools.loadtool_http import HTTPError
from . import report
from .config import LabError, Scenario, load_deployment
from .faults import run_faults
from .supervisor import Lab, group_members

__all__ = ["run_scenario", "run_deployment", "load_args", "LAB_LOAD_KEYS"]

#: [load] keys the lab adds to the load tool's own options (every ``twittercore load`` option is a key too).
LAB_LOAD_KEYS = {"ramp_from": None, "ramp_step_s": 3.0, "rate_fraction": 0.5, "ramp_confirm": True}
_RECOVERY_CONNECTIONS = 8
#: After Ctrl-C the run has this long to tear down through asyncio's cancellation before the watchdog does it.
INTERRUPT_GRACE_S = 20.0


def _watch_interrupt(lab: Lab) -> Any:
    """Wrap the running event loop's SIGINT handler with a watchdog; returns the handler to restore.

    asyncio cancels the run on Ctrl-C and the ``finally`` blocks tear the
    deployment down.  If some await never returns (once seen on a loaded CI
    machine: no output for 60 s), the watchdog prints every thread's stack,
    stops every process the lab started and exits 130, so an interrupted lab
    never leaves a deployment running.
    """
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous) or threading.current_thread() is not threading.main_thread():
        return None

    def watchdog() -> None:
        time.sleep(INTERRUPT_GRACE_S)
        print(f"lab: still running {INTERRUPT_GRACE_S:g} s after Ctrl-C; where it hangs:", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(sys.stderr, all_threads=True)
        lab.aborting = True
        lab.down()
        print(
            "twittercore lab: interrupted; everything it started was stopped (by the watchdog)",
            file=sys.stderr,
            flush=True,
        )
        os._exit(130)

    def on_sigint(signum: int, frame: Any) -> None:
        # Python 3.11's asyncio.wait_for can lose the cancel this sends (it raced
        # an inner future that completed): the flag makes the run end as
        # interrupted even when the load then finishes normally.
        lab.interrupted = True
        threading.Thread(target=watchdog, name="lab-interrupt-watchdog", daemon=True).start()
        previous(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    return previous


class _LabLoad(loadtool.LoadRun):
    """The load tool's run, with streams that reconnect (a killed worker takes its streams with it)."""

    reconnect_delay = 0.2
    stopping = False

    async def stream(self, name: str, account: loadtool.Account) -> None:
        for attempt in range(1000):  # bounded: 1000 reconnects is a server that never stays up
            await super().stream(f"{name}.{attempt}" if attempt else name, account)
            # A cancel can be lost in asyncio.wait_for on 3.11 (it raced a connect that completed):
            # the flag, not the cancel alone, is what ends the loop.
            task = asyncio.current_task()
            if self.stopping or (task is not None and task.cancelling()):
                return
            await asyncio.sleep(self.reconnect_delay)

    async def stop_streams(self) -> None:
        self.stopping = True
        await super().stop_streams()


def load_args(
    url: str, token: str, out: Path, ordered: bool, options: dict[str, Any]
) -> tuple[argparse.Namespace, dict[str, Any]]:
    """The load tool's options from a scenario's [load] table (its defaults for the rest), and the lab's own."""
    parser = argparse.ArgumentParser()
    loadtool.add_arguments(parser)
    args = parser.parse_args(
        [url, "--admin-token", token, "--out", str(out), "--no-plot", *(["--ordered-ids"] if ordered else [])]
    )
    lab = dict(LAB_LOAD_KEYS)
    for key, value in options.items():
        dest = key.replace("-", "_")
        if dest in lab:
            lab[dest] = value
        elif dest in ("url", "out", "admin_token", "tokens", "ramp", "no_plot", "ordered_ids"):
            raise LabError(f"[load] {key}: set by the lab, not the scenario")
        elif hasattr(args, dest):
            current = getattr(args, dest)
            if (
                current is not None
                and not isinstance(value, type(current))
                and not (isinstance(current, float) and isinstance(value, int))
            ):
                raise LabError(
                    f"[load] {key} = {value!r}: expected {type(current).__name__} (as twittercore load --{key.replace('_', '-')})"
                )
            setattr(args, dest, float(value) if isinstance(current, float) else value)
        else:
            raise LabError(
                f"[load] {key}: not an option of twittercore load nor of the lab ({', '.join(LAB_LOAD_KEYS)})"
            )
    if args.rate <= 0 or args.duration <= 0 or args.connections < 1:
        raise LabError("[load] rate, duration and connections must be positive")
    return args, lab


async def _visible(load: _LabLoad, facts: dict[str, Any]) -> dict[str, Any]:
    """GET every acknowledged post by id: live ones must answer 200, acknowledged deletes 404."""
    account = next(iter(load.accounts.values()))
    missing: list[Any] = []
    resurrected: list[Any] = []
    unanswered: list[Any] = []

    async def check(conn: loadtool.Connections, id: Any) -> None:
        for _attempt in range(3):
            try:
                status, _, _ = await load.call(conn, "GET", f"/api/v1/statuses/{quote(str(id))}", account, parse=False)
            except HTTPError:
                status = None
            if status in (200, 404):
                break
            await asyncio.sleep(0.2)
        gone = id in facts["deleted"]
        if status is None or status not in (200, 404):
            unanswered.append(id)
        elif status == 404 and not gone:
            missing.append(id)
        elif status == 200 and gone:
            resurrected.append(id)

    ids = list(facts["acked"])
    if ids:
        await load.pool(ids, check, _RECOVERY_CONNECTIONS)
    return {
        "acknowledged": len(ids),
        "deleted": len(facts["deleted"]),
        "lost": len(missing),
        "lost_examples": sorted(missing, key=str)[:10],
        "resurrected": len(resurrected),
        "resurrected_examples": sorted(resurrected, key=str)[:10],
        "unanswered": len(unanswered),
    }


async def _drive(
    lab: Lab, url: str, scenario: Scenario, args: argparse.Namespace, opts: dict[str, Any]
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    load = _LabLoad(url, args)
    samples: list[tuple[float, float, bool, str]] = []
    faults: list[dict[str, Any]] = []
    ramp = None
    fault_task = None
    restore = _watch_interrupt(lab)
    try:
        await load.setup(None)
        load.start_streams(min(args.streams, len(load.accounts)))
        await asyncio.sleep(0.3)  # streams connected before the load starts
        ops = load.operations()
        rate = args.rate
        if opts["ramp_from"]:
            steps, step_rate = [], float(opts["ramp_from"])
            for _ in range(args.max_steps):
                s = await load.step(step_rate, float(opts["ramp_step_s"]), ops)
                print(loadtool.format_step(s), flush=True)
                if not s["ok"] and opts["ramp_confirm"]:
                    # On a shared machine one stray stall fails a short step: a rate fails only twice.
                    await asyncio.sleep(args.cooldown)
                    s = await load.step(step_rate, float(opts["ramp_step_s"]), ops)
                    s["confirmation"] = True
                    print(loadtool.format_step(s) + "  (confirmation)", flush=True)
                steps.append(s)
                if not s["ok"]:
                    break
                step_rate *= args.ramp_factor
            failure = next((s["rate"] for s in steps if not s["ok"]), None)
            sustainable = max((s["rate"] for s in steps if s["ok"]), default=None)
            # No failure within max_steps: the last rate is a lower bound of the failure point.
            rate = (failure or steps[-1]["rate"]) * float(opts["rate_fraction"])
            ramp = {
                "steps": steps,
                "failure_point": failure,
                "max_sustainable_rate": sustainable,
                "p99_limit": args.p99_limit,
                "error_limit": args.error_limit,
            }
            await asyncio.sleep(args.cooldown)  # the failed step left a queue behind
        load.on_sample = lambda kind, ok, intended, latency: samples.append((intended, latency, ok, kind))
        t_start = loop.time() + 0.05  # where LoadRun.step starts its schedule
        fault_task = loop.create_task(run_faults(lab, scenario.faults, t_start, load.history, faults))
        step = await load.step(rate, args.duration, ops)
        load.on_sample = None
        t_end = t_start + args.duration
        print(loadtool.format_step(step), flush=True)
        try:  # faults outlasting the load are finished (undone) before the recovery checks
            await asyncio.wait_for(fault_task, timeout=90)
        except TimeoutError:
            pass
        await asyncio.sleep(scenario.settle)
    finally:
        if restore is not None:
            signal.signal(signal.SIGINT, restore)
        lab.aborting = True
        if fault_task is not None and not fault_task.done():
            fault_task.cancel()
            await asyncio.gather(fault_task, return_exceptions=True)
        await load.stop_streams()
        load.history.close()
    if lab.interrupted:
        raise KeyboardInterrupt  # the deployment comes down in run_deployment's finally
    facts = report.history_facts(Path(args.out) / "history.jsonl")
    posts = await _visible(load, facts)
    return {
        "step": step,
        "rate": rate,
        "ramp": ramp,
        "samples": samples,
        "faults": faults,
        "t_start": t_start,
        "t_end": t_end,
        "facts": facts,
        "posts": posts,
        "streamed": load.streamed,
        "stream_errors": load.stream_errors[:10],
        "clock_offset": time.monotonic() - loop.time(),
    }


def run_deployment(
    path: Path, scenario: Scenario, out: Path, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run ``scenario`` on the deployment in ``path``; writes out/<name>/report.{json,md}, timeline.png."""
    try:
        d = load_deployment(path)
    except LabError as exc:  # one broken file is a failed row, not a failed comparison
        print(f"lab: {path.stem}: failed: {exc}", flush=True)
        return {"scenario": scenario.name, "deployment": path.stem, "status": "failed", "reason": str(exc)}
    run_dir = out / d.name
    if run_dir.exists():
        from .supervisor import down

        down(run_dir / "deploy")  # a previous run that was itself killed
        shutil.rmtree(run_dir)
    base: dict[str, Any] = {
        "scenario": scenario.name,
        "deployment": d.name,
        "description": d.description,
        "source": str(path),
        "recover_p99_ms": scenario.recover_p99_ms,
        "bucket_s": scenario.bucket_s,
    }
    lab = Lab(d, run_dir / "deploy")
    reason = lab.missing()
    if reason:
        result = {**base, "status": "skipped", "reason": reason}
        report.write(result, run_dir)
        print(f"lab: {d.name}: skipped: {reason}", flush=True)
        return result
    options = {**scenario.load, **(overrides or {})}
    try:
        url = lab.up()
        print(f"lab: {d.name} up at {url} ({len(lab.running)} processes)", flush=True)
        args, opts = load_args(url, lab.token, run_dir, d.ordered_ids, options)
        got = loadtool._run_loop(_drive(lab, url, scenario, args, opts))
    except (InvalidArgumentError, HTTPError, OSError) as exc:  # LabError is an InvalidArgumentError
        result = {**base, "status": "failed", "reason": str(exc)}
        report.write(result, run_dir)
        print(f"lab: {d.name}: failed: {exc}", flush=True)
        return result
    finally:
        lab.down()
    left = [g for g in lab.pgids if group_members(g)]
    verdict = verify([str(run_dir / "history.jsonl")], ordered=True if d.ordered_ids else False)
    step = got["step"]
    result = {
        **base,
        "status": "ok",
        "load": {
            k: step[k]
            for k in (
                "rate",
                "duration_s",
                "requests",
                "completed",
                "errors",
                "error_rate",
                "throughput",
                "p50_ms",
                "p99_ms",
                "p999_ms",
                "max_ms",
                "by_kind",
            )
        },
        "ramp": got["ramp"],
        "faults": report.fault_figures(
            got["samples"],
            got["faults"],
            got["t_start"],
            got["t_end"],
            scenario.recover_p99_ms,
            got["facts"]["lags"],
            got["clock_offset"],
        ),
        "posts": got["posts"],
        "staleness": report.lag_summary(got["facts"]["lags"]),
        "streamed_events": got["streamed"],
        "stream_errors": got["stream_errors"],
        "verify": verdict.to_dict(),
        "timeline": report.timeline(got["samples"], got["t_start"], got["t_end"] - got["t_start"], scenario.bucket_s),
        "processes_left": len(left),
        "network_left": lab.left,  # namespaces or interfaces down() could not remove
    }
    result["verify"]["ok"] = verdict.ok
    violated = [g for g, n in result["verify"]["violations"].items() if n]
    result["verify"]["tolerated"] = {g: result["verify"]["violations"][g] for g in violated if g in d.tolerates}
    result["verify"]["tolerates_reason"] = d.tolerates_reason
    result["ok"] = (
        all(g in d.tolerates for g in violated)
        and result["posts"]["lost"] == 0
        and result["posts"]["resurrected"] == 0
        and not left
        and not lab.left
        and not any(f.get("error") for f in result["faults"])
    )
    report.write(result, run_dir)
    print(f"lab: {d.name}: {'ok' if result['ok'] else 'NOT OK'}; report in {run_dir}/report.md", flush=True)
    return result


def run_scenario(
    scenario: Scenario, out: Path, only: list[str] | None = None, overrides: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every deployment of the scenario in turn (or those named in ``only``); comparison.md and .json in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    load_args(
        "http://127.0.0.1:1", "-", out, True, {**scenario.load, **(overrides or {})}
    )  # a [load] typo fails now, not after up
    results = []
    for path in scenario.deployments:
        if only and path.stem not in only:
            continue
        results.append(run_deployment(path, scenario, out, overrides))
    table = report.comparison(results)
    (out / "comparison.md").write_text(f"# {scenario.name}\n\n{scenario.description}\n\n{table}")
    import json

    (out / "comparison.json").write_text(
        json.dumps(
            [
                {
                    k: r.get(k)
                    for k in ("deployment", "status", "reason", "ok", "load", "ramp", "posts", "faults", "verify")
                }
                for r in results
            ],
            indent=2,
            default=str,
        )
    )
    print(table, flush=True)
    return results
