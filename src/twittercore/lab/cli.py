"""``twittercore lab up|down|run``: the failure-point lab's command line (see :mod:`twittercore.lab`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from .config import LabError, find, load_deployment, load_scenario

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="lab_command", required=True)
    up = sub.add_parser("up", help="start a deployment and leave it running (stop it with lab down)")
    up.add_argument("deployment", help="a name under lab/deployments, or a path to a .toml file")
    up.add_argument("--dir", default="lab-run", help="run directory: data, logs, lab-state.json (default: lab-run)")
    down = sub.add_parser("down", help="stop what lab up started in --dir")
    down.add_argument("--dir", default="lab-run")
    go = sub.add_parser("run", help="run a scenario on each of its deployments; report side by side")
    go.add_argument("scenario", help="a name under lab/scenarios, or a path to a .toml file")
    go.add_argument("--out", default="lab-report", help="report directory (default: lab-report)")
    go.add_argument("--deployment", action="append", default=[], help="only this deployment (repeatable)")
    go.add_argument("--rate", type=float, help="override the scenario's [load] rate")
    go.add_argument("--duration", type=float, help="override the scenario's [load] duration")


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM takes the same teardown path as Ctrl-C


def run(args: argparse.Namespace) -> int:
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.lab_command == "down":
            from .supervisor import down

            state = down(args.dir)
            if state is None:
                print(f"lab down: nothing is up in {args.dir}")
            else:
                print(
                    f"lab down: stopped {state['deployment']} ({len(state['processes'])} processes"
                    + (f"; SIGKILL needed for {', '.join(state['killed'])}" if state["killed"] else "")
                    + (f"; COULD NOT REMOVE {', '.join(state['left'])}" if state["left"] else "")
                    + ")"
                )
                return 1 if state["left"] else 0
            return 0
        if args.lab_command == "up":
            from .supervisor import Lab

            lab = Lab(load_deployment(find(args.deployment, "deployments")), args.dir)
            reason = lab.missing()
            if reason:
                print(f"twittercore lab up: {lab.d.name} cannot run here: {reason}", file=sys.stderr)
                return 2
            url = lab.up()
            print(
                json.dumps(
                    {
                        "url": url,
                        "admin_token": lab.token,
                        "dir": str(lab.dir),
                        "processes": {n: r.pid for n, r in lab.running.items()},
                    },
                    indent=2,
                )
            )
            print(f"lab up: {lab.d.name} at {url}; stop with: twittercore lab down --dir {args.dir}", flush=True)
            return 0
        from .run import run_scenario

        scenario = load_scenario(find(args.scenario, "scenarios"))
        overrides = {k: v for k, v in (("rate", args.rate), ("duration", args.duration)) if v is not None}
        results = run_scenario(scenario, Path(args.out), args.deployment or None, overrides)
        if not results:
            print(f"twittercore lab run: no deployment of {scenario.name} matched {args.deployment}", file=sys.stderr)
            return 2
        return 0 if all(r.get("ok") or r["status"] == "skipped" for r in results) else 1
    except LabError as exc:
        print(f"twittercore {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("twittercore lab: interrupted; everything it started was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
