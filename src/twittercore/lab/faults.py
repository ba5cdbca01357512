"""Inject a scenario's faults on schedule, undo each after its duration, log both ends.

Every fault becomes a record with its start and end on the run's clock
(``loop.time()``, which is ``time.monotonic`` and so the history's clock
too) and is written into the history as ``{"op": "fault", ...}``.  Undoing
is in ``finally``: a run interrupted mid-fault still resumes the paused
process, heals the link and frees the disk before teardown.

What each action does:

- ``kill``: SIGKILL.  For ``kill = "child"`` processes (a server managing its
  own workers) one worker is killed and the server restarts it; the fault
  ends when the worker count is back and the health check passes.  Otherwise
  the process's whole group is killed and, after ``restart_after`` seconds,
  started again with the same argv and env; it ends when ready again.
- ``pause``: SIGSTOP, ``duration`` seconds, SIGCONT (a GC stall, a VM freeze).
- ``link``: set delay/jitter/loss/reset on a link proxy for ``duration``.
- ``partition``: for ``duration``, set a namespace's veth links down (target
  ``NS``: all its links; ``NS.NET``: the one on that network), split a group
  (``A+B``) off onto a side of its own, or cut a link proxy (``mode`` stall or
  reset).
- ``disk-full``: fill the tmpfs named by the target, free it after ``duration``.
- ``clock-skew``: restart the target with ``TWITTERCORE_CLOCK_SKEW_MS`` set
  (the node adds it to every wall-clock reading), and without it after
  ``duration`` (0: keep the skew to the end of the run).
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from .config import FaultSpec, LabError
from .proxy import control
from .supervisor import Lab, children

__all__ = ["run_faults", "SKEW_ENV"]

#: The environment variable a decentralised node must honour for the clock-skew fault.
SKEW_ENV = "TWITTERCORE_CLOCK_SKEW_MS"
_FILLER = ".lab-disk-full"


async def run_faults(
    lab: Lab, faults: list[FaultSpec], t_start: float, history: Any, log: list[dict[str, Any]]
) -> None:
    """Run every fault at ``t_start + at``; each appends its record to ``log`` as it starts."""
    await asyncio.gather(*(_one(lab, f, t_start, history, log) for f in faults))


async def _one(lab: Lab, f: FaultSpec, t_start: float, history: Any, log: list[dict[str, Any]]) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, t_start + f.at - loop.time()))
    record: dict[str, Any] = {
        "action": f.action,
        "target": f.target,
        "label": f.label(),
        "at": f.at,
        "start": loop.time(),
        "end": None,
        "processes": [],
        "pids": [],
        "error": None,
        "skipped": None,
    }
    log.append(record)
    if not _exists(lab, f):
        # One schedule serves every deployment: a fault on what this one does not have is not an error.
        kind = {"disk-full": "tmpfs", "partition": "namespace, link, process or role"}.get(f.action, "process or role")
        record["skipped"] = f"{lab.d.name} has no {kind} {f.target!r}"
        record["end"] = record["start"]
        return
    history.fault(f.action, f.target, "start")
    try:
        await ACTIONS[f.action](lab, f, record)
    except (LabError, OSError, ValueError) as exc:
        record["error"] = str(exc)
    finally:
        record["end"] = loop.time()
        history.fault(f.action, f.target, "end", error=record["error"])
        print(
            f"lab: fault {f.label()} at {f.at:g} s: {record['end'] - record['start']:.2f} s"
            + (f" ERROR {record['error']}" if record["error"] else ""),
            flush=True,
        )


def _exists(lab: Lab, f: FaultSpec) -> bool:
    if f.action == "disk-full":
        return any(t.name == f.target for t in lab.d.tmpfs)
    if f.action == "partition" and lab.net is not None and lab.net.host_sides(f.target):
        return True
    return any(f.target in (n, r.spec.role) for n, r in lab.running.items())


async def _ready(lab: Lab, name: str, timeout: float = 60.0) -> None:
    await asyncio.to_thread(lab.wait_ready, name, timeout)


async def _kill(lab: Lab, f: FaultSpec, record: dict[str, Any]) -> None:
    names = lab.targets(f.target, f.pick)
    record["processes"] = names
    loop = asyncio.get_running_loop()
    for name in names:
        spec = lab.running[name].spec
        if spec.kill == "child":
            before = len(children(lab.running[name].pid))
            record["pids"].append(lab.kill(name))
            deadline = loop.time() + 60
            await asyncio.sleep(0.05)
            while len(children(lab.running[name].pid)) < before:
                if loop.time() > deadline:
                    raise LabError(f"lab: {name} did not replace its killed worker within 60 s")
                await asyncio.sleep(0.05)
        else:
            record["pids"].append(lab.kill(name))
            if not spec.restart:
                continue
            await asyncio.sleep(f.restart_after)
            lab.restart(name)
        await _ready(lab, name)


async def _pause(lab: Lab, f: FaultSpec, record: dict[str, Any]) -> None:
    names = lab.targets(f.target, f.pick)
    record["processes"] = names
    pids = [lab.victim(n) for n in names]
    record["pids"] = pids
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        await asyncio.sleep(f.duration)
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def _control_port(lab: Lab, name: str) -> int:
    port = lab.ports.get(f"{name}.control")
    if port is None:
        raise LabError(f"lab: {name} is not a link proxy (a link takes its control port from {{port:{name}.control}})")
    return port


async def _impair(
    lab: Lab, f: FaultSpec, record: dict[str, Any], changes: dict[str, Any], healed: dict[str, Any]
) -> None:
    names = lab.targets(f.target, f.pick)
    record["processes"] = names
    ports = [_control_port(lab, n) for n in names]
    try:
        for port in ports:
            await asyncio.to_thread(control, port, changes)
        await asyncio.sleep(f.duration)
    finally:
        for port in ports:
            try:
                await asyncio.to_thread(control, port, healed)
            except OSError:
                pass  # the proxy is gone: nothing left to heal


async def _link(lab: Lab, f: FaultSpec, record: dict[str, Any]) -> None:
    changes = {"delay_ms": f.delay_ms, "jitter_ms": f.jitter_ms, "loss": f.loss, "reset": f.reset}
    await _impair(lab, f, record, changes, dict.fromkeys(changes, 0.0))


async def _partition(lab: Lab, f: FaultSpec, record: dict[str, Any]) -> None:
    links = lab.net.host_sides(f.target) if lab.net is not None else None
    if links is None:
        await _impair(lab, f, record, {"partition": f.mode}, {"partition": None})
        return
    if f.mode != "stall":
        raise LabError(
            f"lab: partition {f.target}: mode {f.mode!r} is for link proxies; a namespace's link goes down (stall)"
        )
    assert lab.net is not None
    net = lab.net
    record["processes"] = [f.target]
    record["links"] = links
    if "+" in f.target:  # a group: its own side of a split network, its members still talk to each other
        sides: list[str] = []
        try:
            sides = await asyncio.to_thread(net.split, f.target)
            lab.save()
            await asyncio.sleep(f.duration)
        finally:
            await asyncio.to_thread(net.join, f.target, sides)
            lab.save()
        return
    try:
        await asyncio.to_thread(net.set_links, links, False)
        await asyncio.sleep(f.duration)
    finally:
        await asyncio.to_thread(net.set_links, links, True)


def _fill(path: str) -> int:
    """Write zeros into ``path`` until the file system is full; returns the bytes written."""
    written = 0
    block = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as out:
        try:
            while True:
                written += out.write(block)
        except OSError:  # ENOSPC: full, which is the point; smaller writes take the last pages too
            for size in (1 << 16, 1 << 12):
                try:
                    while True:
                        written += out.write(block[:size])
                except OSError:
                    pass
    return written


async def _disk_full(lab: Lab, f: FaultSpec, record: dict[str, Any]) -> None:
    mount = next((t for t in lab.d.tmpfs if t.name == f.target), None)
    if mount is None:
        raise LabError(f"lab: disk-full target {f.target!r}: no [[tmpfs]] of that name in {lab.d.name}")
    filler = os.path.join(lab.dir, mount.path, _FILLER)
    record["processes"] = [mount.name]
    try:
        record["bytes"] = await asyncio.to_thread(_fill, filler)
        await asyncio.sleep(f.duration)
    finally:
        try:
            os.unlink(filler)
        except FileNotFoundError:
            pass


async def _clock_skew(lab: Lab, f: FaultSpec, record: dict[str, Any]) -> None:
    names = lab.targets(f.target, f.pick)
    record["processes"] = names
    for name in names:
        record["pids"].append(lab.restart(name, {SKEW_ENV: str(int(f.skew_ms))}).pid)
        await _ready(lab, name)
    if f.duration > 0:
        await asyncio.sleep(f.duration)
        for name in names:
            lab.restart(name, {SKEW_ENV: "0"})
            await _ready(lab, name)


ACTIONS = {
    "kill": _kill,
    "pause": _pause,
    "link": _link,
    "partition": _partition,
    "disk-full": _disk_full,
    "clock-skew": _clock_skew,
}
