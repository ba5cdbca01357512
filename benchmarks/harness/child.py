"""Entry point of the fresh process that runs one implementation.

``python -m harness.child SPEC.json`` (with ``benchmarks/`` on ``PYTHONPATH``).
The spec names the registry entry, the fixture file, a private work
directory, where to write the result JSON, and (after the reference has run)
the reference pages for the cross-check.  The result's ``status`` is ``ok``,
``skipped`` (with the reason), ``crosscheck-failed`` or ``error``.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
import traceback
from typing import Any

from . import phases, workload_file
from .target import Skip


def _factory(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def execute(spec: dict[str, Any]) -> dict[str, Any]:
    entry = spec["entry"]
    out: dict[str, Any] = {"name": entry["name"], "status": "ok", "loadavg_start": os.getloadavg()}
    for path in spec.get("extra_paths", []):
        sys.path.insert(0, path)
    fx = workload_file.load(spec["fixture"])
    reference = None
    if spec.get("reference"):
        with open(spec["reference"]) as f:
            reference = json.load(f)
    options = dict(entry["options"])
    if entry.get("needs_redis") or entry.get("needs_cluster"):
        options["redis_url"] = spec.get("redis_url")
    try:
        target = _factory(entry["factory"])(workdir=spec["workdir"], workload=fx.spec, **options)
    except Skip as exc:
        return {**out, "status": "skipped", "reason": str(exc)}
    progress = phases.Progress(spec.get("progress", False), entry["name"])
    started = time.perf_counter()
    try:
        out.update(
            phases.run(
                target,
                fx,
                reference=reference,
                ref_name=spec.get("reference_name", ""),
                name=entry["name"],
                progress=progress,
                sweep=spec.get("sweep", False),
            )
        )
    except phases.CrossCheckError as exc:
        return {**out, "status": "crosscheck-failed", "reason": str(exc)}
    finally:
        progress.stop()
        target.close()
    out["seconds"] = time.perf_counter() - started
    out["loadavg_end"] = os.getloadavg()
    out["python"] = platform.python_version()
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        spec = json.load(f)
    try:
        result = execute(spec)
    except Exception:  # report it to the parent rather than die silently
        result = {"name": spec["entry"]["name"], "status": "error", "reason": traceback.format_exc()}
    with open(spec["result"], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
