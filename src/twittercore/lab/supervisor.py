"""Bring a deployment up, keep track of every process it started, and always take it down again.

Every process is started in its own session (its own process group), so a
server's worker children are stopped with it.  What was started is written to
``lab-state.json`` in the run directory after every change (start, restart),
so ``twittercore lab down --dir DIR`` from another shell, or after the lab was
killed, finds and stops the same processes; a PID is only signalled while its
start time still matches the one recorded, so a recycled PID is left alone.
Teardown is SIGTERM (plus SIGCONT, since a paused process cannot act on it),
a grace period, then SIGKILL for whatever is left; tmpfs mounts are unmounted
last, and the deployment's network namespaces and bridges (if it has any,
see :mod:`twittercore.lab.netns`) are removed once their processes are gone.
"""

from __future__ import annotations

import fnmatch
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import netns
from .config import Check, Deployment, LabError, ProcessSpec, render

__all__ = ["Lab", "down", "STATE_FILE", "group_members", "bus_port_range"]

STATE_FILE = "lab-state.json"
_GRACE = 5.0


def bus_port_range() -> range:
    """Ports for names in ``bus_ports`` (Redis Cluster: port and port+10000 both ours): ``TWITTERCORE_LAB_BUS_PORTS``."""
    text = os.environ.get("TWITTERCORE_LAB_BUS_PORTS", "31000-31999")
    try:
        lo, hi = (int(x) for x in text.split("-"))
    except ValueError:
        raise LabError(f"TWITTERCORE_LAB_BUS_PORTS={text!r}: expected LOW-HIGH, e.g. 31000-31999") from None
    return range(lo, hi + 1)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgrp, start time) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[2] == pgid and st[0] != "Z":
                found.append(int(entry))
    return found


def children(pid: int) -> list[int]:
    """Live child processes of ``pid``, oldest first; multiprocessing's helper processes left out."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[1] == pid and st[0] != "Z":
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        cmdline = f.read()
                except OSError:
                    continue
                if b"resource_tracker" not in cmdline:
                    found.append((st[3], int(entry)))
    return [p for _, p in sorted(found)]


@dataclass
class Running:
    spec: ProcessSpec
    pid: int
    start: int  # /proc start time: tells our process from a later one with a recycled PID
    popen: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def alive(self) -> bool:
        st = _stat(self.pid)
        return st is not None and st[3] == self.start and st[0] != "Z"


class Lab:
    """One deployment in one run directory: ``up()``, faults' ``kill``/``restart``/``signal``, ``down()``.

    Use as a context manager, or call ``down()`` in a ``finally``: it is
    idempotent and never raises for processes that are already gone.
    """

    def __init__(self, deployment: Deployment, run_dir: str | os.PathLike[str], token: str | None = None) -> None:
        self.d = deployment
        self.dir = Path(run_dir).resolve()
        self.token = token or secrets.token_hex(16)
        self.ports: dict[str, int] = {}
        self.files: dict[str, str] = {}
        self.running: dict[str, Running] = {}
        self.pgids: set[int] = set()  # every group ever started: a killed server's orphans are in the old one
        self.mounts: list[str] = []
        self.url = ""
        self.net = netns.Net(deployment.networks, deployment.netns) if deployment.netns else None
        self.left: list[str] = []  # namespaces or interfaces the last down() could not remove
        # Set when a run is being torn down: health waits in worker threads stop at once
        # (the event loop's shutdown would otherwise wait for them).
        self.aborting = False
        self.interrupted = False  # a Ctrl-C arrived (see run._watch_interrupt)

    # ---------------------------------------------------------- templates

    def port(self, name: str) -> int:
        if name not in self.ports:
            taken = set(self.ports.values())
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.d.bus_ports):
                ports = list(bus_port_range())
                random.shuffle(ports)  # two labs in one range rarely collide
                port = next(
                    (p for p in ports if p not in taken and p + 10000 not in taken and _free(p) and _free(p + 10000)),
                    None,
                )
                if port is None:
                    raise LabError(f"lab: no free port pair (p, p+10000) in TWITTERCORE_LAB_BUS_PORTS for {name!r}")
            else:
                while True:
                    with socket.socket() as s:
                        s.bind(("127.0.0.1", 0))
                        port = s.getsockname()[1]
                    if port not in taken:
                        break
            self.ports[name] = port
        return self.ports[name]

    def render(self, text: str, where: str) -> str:
        def file(name: str) -> str:
            if name not in self.files:
                raise LabError(f"{where}: {{file:{name}}}: no [[file]] named {name!r}")
            return self.files[name]

        def addr(ref: str) -> str:
            if self.net is None:
                raise LabError(f"{where}: {{addr:{ref}}}: this deployment has no [[netns]]")
            return self.net.addr(ref)

        values = {
            "python": sys.executable,
            "dir": str(self.dir),
            "token": self.token,
            "port": self.port,
            "file": file,
            "addr": addr,
        }
        return render(text, values, where)

    # ------------------------------------------------------------------ up

    def check(self, check: Check, where: str, timeout: float = 30.0) -> tuple[bool, str]:
        """Run a check; (passed, output)."""
        argv = [self.render(a, where) for a in check.argv]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, cwd=self.dir, env=self._env({})
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, str(exc)
        output = done.stdout + done.stderr
        return done.returncode == 0 and (check.contains is None or check.contains in output), output

    def missing(self) -> str | None:
        """Why this deployment cannot run here (a ``requires`` check failed), or None."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.net is not None:
            reason = netns.probe()
            if reason:
                return reason
        for n, check in enumerate(self.d.requires):
            ok, output = self.check(check, f"{self.d.source}: requires[{n}]")
            if not ok:
                return check.reason or f"{' '.join(check.argv)} failed: {output.strip()[-200:]}"
        return None

    def up(self) -> str:
        """Start everything, stage by stage; returns the front URL. On any failure everything started is stopped."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        if (self.dir / STATE_FILE).exists():
            raise LabError(
                f"lab: {self.dir / STATE_FILE} exists: a deployment is up there (twittercore lab down --dir {self.dir})"
            )
        try:
            self.save()
            for t in self.d.tmpfs:
                self._mount(t.path, t.size)
            if self.net is not None:
                self.net.create(self.save)
            for f in self.d.files:
                target = self.dir / f.path
                target.parent.mkdir(parents=True, exist_ok=True)
                self.files[f.name] = str(target)
            for f in self.d.files:  # rendered after all are named, so files may refer to each other
                Path(self.files[f.name]).write_text(self.render(f.template.read_text(), str(f.template)))
            self.url = self.render(self.d.url, f"{self.d.source}: url")
            for stage in self.d.stages():
                started = [p for p in self.d.processes if p.stage == stage]
                for p in started:
                    self.start(p)
                deadline = time.monotonic() + self.d.ready_timeout
                for p in started:
                    self.wait_ready(p.name, deadline - time.monotonic())
                for n, step in enumerate(s for s in self.d.steps if s.stage == stage):
                    self._step(step, f"{self.d.source}: step (stage {stage}, #{n})")
            self.save()
        except BaseException:
            self.down()
            raise
        return self.url

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        if env.get("PYTHONPATH"):  # processes run in the run directory: a relative src/ would not be found there
            env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p)
        env.update(extra)
        return env

    def start(self, spec: ProcessSpec, extra_env: dict[str, str] | None = None) -> Running:
        where = f"{self.d.source}: process {spec.name}"
        argv = [self.render(a, where) for a in spec.argv]
        if spec.netns is not None and self.net is not None:
            argv = self.net.exec_prefix(spec.netns) + argv  # ip netns exec execs: the PID is the process's own
        env = {k: self.render(str(v), where) for k, v in spec.env.items()}
        env.update(extra_env or {})
        log = open(self.dir / "logs" / f"{spec.name}.log", "ab")
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(env),
                cwd=self.dir,
                start_new_session=True,
            )
        except OSError as exc:
            raise LabError(f"{where}: cannot start {argv[0]!r}: {exc.strerror}") from None
        finally:
            log.close()
        st = _stat(popen.pid)
        running = Running(spec, popen.pid, st[3] if st else 0, popen, dict(extra_env or {}))
        self.running[spec.name] = running
        self.pgids.add(popen.pid)
        self.save()
        return running

    def wait_ready(self, name: str, timeout: float) -> None:
        """Block until the process answers its health check (or accepts on its TCP port)."""
        r = self.running[name]
        spec = r.spec
        where = f"{self.d.source}: process {name}"
        url = self.render(spec.health, where) if spec.health else None
        port = int(self.render(spec.tcp, where)) if spec.tcp else None
        host = self.net.addr(spec.netns) if spec.netns and self.net is not None else "127.0.0.1"
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            if r.popen is not None and r.popen.poll() is not None:
                raise LabError(f"{where}: exited with status {r.popen.returncode} while starting:\n{self.tail(name)}")
            if self.ready(url, port, host):
                return
            if self.aborting:
                raise LabError(f"{where}: the run is being stopped")
            if time.monotonic() > deadline:
                raise LabError(f"{where}: not ready after {timeout:.0f} s ({url or port}):\n{self.tail(name)}")
            time.sleep(0.05)

    @staticmethod
    def ready(url: str | None, port: int | None, host: str = "127.0.0.1") -> bool:
        try:
            if url:
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    return bool(200 <= response.status < 300)
            if port:
                with socket.create_connection((host, port), timeout=1.0):
                    return True
        except (OSError, urllib.error.URLError, ValueError):
            return False
        return True  # no check declared: started is ready

    def tail(self, name: str, lines: int = 15) -> str:
        try:
            text = (self.dir / "logs" / f"{name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def _step(self, step: Any, where: str) -> None:
        deadline = time.monotonic() + step.timeout
        check = Check(step.argv, step.until)
        while True:
            ok, output = self.check(check, where, timeout=step.timeout)
            with open(self.dir / "logs" / "steps.log", "a") as f:
                f.write(f"$ {' '.join(self.render(a, where) for a in step.argv)}\n{output}\n")
            if ok:
                return
            if time.monotonic() > deadline:
                raise LabError(
                    f"{where}: {'output never contained ' + repr(step.until) if step.until else 'failed'}:\n{output.strip()[-600:]}"
                )
            time.sleep(0.5)

    def _mount(self, path: str, size: str) -> None:
        target = self.dir / path
        target.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise LabError(
                f"lab: mounting a {size} tmpfs on {target} failed: {done.stderr.strip()} "
                "(needs root; drop the [[tmpfs]] table to run without the full-disk fault)"
            )
        self.mounts.append(str(target))
        self.save()

    # -------------------------------------------------------------- faults

    def targets(self, target: str, pick: str = "first") -> list[str]:
        """Process names for a fault's target: a name, or every process with that role."""
        names = [n for n, r in self.running.items() if target in (n, r.spec.role)]
        if not names:
            raise LabError(f"lab: fault target {target!r}: no process or role of that name in {self.d.name}")
        if pick == "all":
            return names
        if pick == "last":
            return names[-1:]
        if pick == "master":
            masters = []
            for n in names:
                master = self.running[n].spec.master
                if master is not None and self.check(master, n)[0]:
                    masters.append(n)
            if not masters:
                raise LabError(f"lab: fault target {target!r}: no process passes its master check")
            return masters[:1]
        return names[:1]

    def victim(self, name: str) -> int:
        """The PID a kill or pause hits: the process, or (``kill = "child"``) its first worker."""
        r = self.running[name]
        if r.spec.kill == "child":
            kids = children(r.pid)
            if not kids:
                raise LabError(f'lab: {name} has no child process to kill (kill = "child")')
            return kids[0]
        return r.pid

    def kill(self, name: str) -> int:
        """SIGKILL: a crash. kill = "self" takes the process's whole group down, as a crash of its host would."""
        r = self.running[name]
        if r.spec.kill == "child":
            pid = self.victim(name)
            os.kill(pid, signal.SIGKILL)
            return pid
        if r.alive():
            os.killpg(r.pid, signal.SIGKILL)
        if r.popen is not None:
            r.popen.wait(timeout=5)
        return r.pid

    def restart(self, name: str, extra_env: dict[str, str] | None = None) -> Running:
        """Start a (killed or stopped) process again with its argv and env (plus ``extra_env``)."""
        r = self.running[name]
        if r.alive():
            self._stop_group(r.pid)
            if r.popen is not None:
                r.popen.wait(timeout=5)
        env = dict(r.extra_env)
        env.update(extra_env or {})
        return self.start(r.spec, env)

    # ---------------------------------------------------------------- down

    def _state(self) -> dict[str, Any]:
        return {
            "deployment": self.d.name,
            "source": str(self.d.source),
            "url": self.url,
            "token": self.token,
            "lab_pid": os.getpid(),
            "ports": self.ports,
            "pgids": sorted(self.pgids),
            "mounts": self.mounts,
            "net": self.net.state() if self.net is not None else {},
            "processes": {n: {"pid": r.pid, "start": r.start, "role": r.spec.role} for n, r in self.running.items()},
        }

    def save(self) -> None:
        """Write ``lab-state.json`` now (every start, and faults that make something teardown must find)."""
        path = self.dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state(), indent=2))
        os.replace(tmp, path)

    @staticmethod
    def _stop_group(pgid: int) -> None:
        stop_groups([pgid])

    def down(self) -> list[str]:
        """Stop every process and group started, unmount; returns what it had to SIGKILL. Idempotent."""
        killed = stop_groups(sorted(self.pgids))
        for r in self.running.values():
            if r.popen is not None:
                try:
                    r.popen.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass
        if self.net is not None:
            self.left = netns.destroy(self.net.made)
            self.net.made = {k: [] for k in self.net.made}
        unmount(self.mounts)
        self.mounts = []
        try:
            os.unlink(self.dir / STATE_FILE)
        except FileNotFoundError:
            pass
        return killed

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


def stop_groups(pgids: list[int]) -> list[str]:
    """SIGTERM (+SIGCONT) each group, wait, SIGKILL the rest; returns the groups that needed SIGKILL."""
    for pgid in pgids:
        for sig in (signal.SIGTERM, signal.SIGCONT):
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + _GRACE
    left = [g for g in pgids if group_members(g)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [g for g in left if group_members(g)]
    for pgid in left:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 2
    while any(group_members(g) for g in left) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [f"group {g}" for g in left]


def unmount(mounts: list[str]) -> None:
    for path in reversed(mounts):
        if subprocess.run(["umount", path], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", path], capture_output=True)  # busy: detach now, freed when unused


def down(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``lab down`` from any shell: stop what ``lab-state.json`` in ``run_dir`` lists. None if nothing is up there."""
    path = Path(run_dir) / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise LabError(f"lab down: {path}: unreadable state file ({exc}); stop the processes by hand") from None
    # Only groups whose leader we recorded and whose start time still matches, or that still have members
    # (the leader of a group may be gone while its children live on).
    recorded = {p["pid"]: p["start"] for p in state.get("processes", {}).values()}
    pgids = []
    for pgid in state.get("pgids", []):
        st = _stat(pgid)
        if st is not None and pgid in recorded and st[3] != recorded[pgid]:
            continue  # a recycled PID: not ours
        if group_members(pgid):
            pgids.append(pgid)
    state["killed"] = stop_groups(pgids)
    state["left"] = netns.destroy(state.get("net", {})) if state.get("net") else []
    unmount(state.get("mounts", []))
    path.unlink()
    return state
