"""Deployments and scenarios as data: TOML files read with :mod:`tomllib`, checked, templated.

A deployment says which processes to start, how to know each is ready and
what to run once they are (``redis-cli --cluster create``); a scenario says
which deployments to drive, with which load, and which faults to inject
when.  Both are plain data so a new deployment or fault schedule is a new
file, not new code; ``docs/lab.md`` is the reference for every key.

Templates: strings in argv, env, health checks and rendered files may use
``{python}`` (this interpreter), ``{dir}`` (the run directory), ``{token}``
(the admin token of this run), ``{i}`` (the instance number of a process
with ``count``), ``{port:NAME}`` (a port allocated for NAME on first use)
and ``{file:NAME}`` (the path of a rendered file).  Anything else in braces
that looks like a name is an error, so a typo fails at ``lab up``, not
halfway through a run.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError

__all__ = [
    "LabError",
    "Deployment",
    "ProcessSpec",
    "StepSpec",
    "FileSpec",
    "TmpfsSpec",
    "NetnsSpec",
    "Check",
    "Scenario",
    "FaultSpec",
    "load_deployment",
    "load_scenario",
    "find",
    "render",
    "FAULT_ACTIONS",
]

FAULT_ACTIONS = ("kill", "pause", "link", "partition", "disk-full", "clock-skew")
#: ``{name}`` or ``{kind:arg}``; ``{{`` is never matched, so JSON-ish text passes through.
_PLACEHOLDER = re.compile(r"(?<!\{)\{([a-z_]+)(?::([A-Za-z0-9_.\-]+))?\}(?!\})")


class LabError(ConfigurationError):
    """A deployment or scenario file is wrong, or the lab could not bring a deployment up."""


def render(text: str, values: dict[str, Any], where: str) -> str:
    """Fill ``{name}`` / ``{kind:arg}`` placeholders; ``values[kind]`` is a callable for the second form."""

    def fill(match: re.Match[str]) -> str:
        name, arg = match.group(1), match.group(2)
        if name not in values:
            raise LabError(f"{where}: unknown placeholder {match.group(0)} (known: {', '.join(sorted(values))})")
        value = values[name]
        if arg is not None:
            if not callable(value):
                raise LabError(f"{where}: {{{name}}} takes no argument (write {{{name}}})")
            return str(value(arg))
        if callable(value):
            raise LabError(f"{where}: {{{name}:...}} needs an argument, e.g. {{{name}:app1}}")
        return str(value)

    return _PLACEHOLDER.sub(fill, text)


@dataclass
class Check:
    """Run ``argv``; it passes when it exits 0 and (if given) its output contains ``contains``."""

    argv: list[str]
    contains: str | None = None
    reason: str = ""


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    role: str = ""
    env: dict[str, str] = field(default_factory=dict)
    health: str | None = None  # an http:// URL answering 2xx when ready
    tcp: str | None = None  # or a port accepting connections
    stage: int = 1
    kill: str = "self"  # "self": faults hit this process; "child": one of its children (it restarts them)
    restart: bool = True  # after a kill, the lab starts it again with the same argv and env
    master: Check | None = None  # "pick = master" targets the processes where this check passes
    netns: str | None = None  # run inside this [[netns]] (ip netns exec)


@dataclass
class StepSpec:
    argv: list[str]
    stage: int = 1
    timeout: float = 60.0
    until: str | None = None  # retry until the output contains this (a cluster converging)


@dataclass
class FileSpec:
    name: str
    template: Path
    path: str  # relative to the run directory


@dataclass
class TmpfsSpec:
    name: str
    path: str  # relative to the run directory; mounted before any process starts
    size: str = "64m"


@dataclass
class NetnsSpec:
    name: str
    networks: list[str]  # the [[network]]s it joins; its address on the first is {addr:NAME}


@dataclass
class Deployment:
    name: str
    source: Path
    url: str
    description: str = ""
    ordered_ids: bool = True
    ready_timeout: float = 30.0
    bus_ports: list[str] = field(default_factory=list)  # port names that need port+10000 free too
    # Verifier checks this deployment gives up by design (bounded staleness: G3), and why: their
    # violations are reported and counted but do not fail the row.
    tolerates: list[str] = field(default_factory=list)
    tolerates_reason: str = ""
    requires: list[Check] = field(default_factory=list)
    processes: list[ProcessSpec] = field(default_factory=list)
    steps: list[StepSpec] = field(default_factory=list)
    files: list[FileSpec] = field(default_factory=list)
    tmpfs: list[TmpfsSpec] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    netns: list[NetnsSpec] = field(default_factory=list)

    def stages(self) -> list[int]:
        return sorted({p.stage for p in self.processes} | {s.stage for s in self.steps})


@dataclass
class FaultSpec:
    """At ``at`` seconds into the load, do ``action`` to ``target``; undo it ``duration`` seconds later."""

    at: float
    action: str
    target: str
    pick: str = "first"  # first, last, all, master (see ProcessSpec.master)
    duration: float = 1.0
    restart_after: float = 0.5
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    reset: float = 0.0
    mode: str = "stall"
    skew_ms: float = 0.0

    def label(self) -> str:
        return f"{self.action} {self.target}" + (f" ({self.pick})" if self.pick != "first" else "")


@dataclass
class Scenario:
    name: str
    source: Path
    deployments: list[Path]
    load: dict[str, Any]
    faults: list[FaultSpec]
    description: str = ""
    settle: float = 2.0  # seconds between the end of the load and the after-recovery checks
    recover_p99_ms: float = 50.0
    bucket_s: float = 0.25


# ------------------------------------------------------------------ loading


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise LabError(
            f"lab: {path}: {exc.strerror} (give a path, or a name under lab/deployments or lab/scenarios)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise LabError(f"lab: {path}: not valid TOML: {exc}") from None


def _take(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise LabError(f"{where}: missing key {key!r}")
        return default
    value = table.pop(key)
    if isinstance(kind, tuple) and float in kind and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise LabError(f"{where}: {key} = {value!r}: expected {names}")
    return value


def _done(table: dict[str, Any], where: str) -> None:
    if table:
        raise LabError(f"{where}: unknown key(s) {', '.join(sorted(table))} (see docs/lab.md)")


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise LabError(f"{where}: expected a non-empty list of strings")
    return value


def _check(raw: Any, where: str) -> Check:
    if not isinstance(raw, dict):
        raise LabError(f"{where}: expected a table with argv (and contains, reason)")
    raw = dict(raw)
    check = Check(
        _strings(raw.pop("argv", None), f"{where}.argv"),
        _take(raw, "contains", str, where, None),
        _take(raw, "reason", str, where, ""),
    )
    _done(raw, where)
    return check


def load_deployment(path: Path) -> Deployment:
    """Read and check one deployment file; ``count = N`` processes become N processes, ``{i}`` = 1..N."""
    raw = _read(path)
    where = str(path)
    d = Deployment(
        name=_take(raw, "name", str, where, path.stem),
        source=path,
        url=_take(raw, "url", str, where),
        description=_take(raw, "description", str, where, ""),
        ordered_ids=_take(raw, "ordered_ids", bool, where, True),
        ready_timeout=_take(raw, "ready_timeout", float, where, 30.0),
        bus_ports=_take(raw, "bus_ports", list, where, []),
        tolerates=_take(raw, "tolerates", list, where, []),
        tolerates_reason=_take(raw, "tolerates_reason", str, where, ""),
    )
    checks = ("G1", "G2", "G3", "G4", "deleted", "realtime", "global")
    if any(t not in checks for t in d.tolerates) or (d.tolerates and not d.tolerates_reason):
        raise LabError(f"{where}: tolerates = {d.tolerates!r}: a list of {', '.join(checks)}, with tolerates_reason")
    d.requires = [_check(c, f"{where}: requires[{n}]") for n, c in enumerate(_take(raw, "requires", list, where, []))]
    names: set[str] = set()
    for n, p in enumerate(_take(raw, "process", list, where, [])):
        w = f"{where}: process[{n}]"
        p = dict(p)
        count = _take(p, "count", int, w, 1)
        name = _take(p, "name", str, w)
        argv = _strings(p.pop("argv", None), f"{w}.argv")
        master = p.pop("master", None)
        common = dict(
            role=_take(p, "role", str, w, ""),
            env=_take(p, "env", dict, w, {}),
            health=_take(p, "health", str, w, None),
            tcp=_take(p, "tcp", (str, int), w, None),
            stage=_take(p, "stage", int, w, 1),
            kill=_take(p, "kill", str, w, "self"),
            restart=_take(p, "restart", bool, w, True),
            netns=_take(p, "netns", str, w, None),
        )
        _done(p, w)
        if common["kill"] not in ("self", "child"):
            raise LabError(f'{w}: kill = {common["kill"]!r}: expected "self" or "child"')
        if count > 1 and "{i}" not in name:
            raise LabError(f'{w}: count = {count} needs {{i}} in the name (e.g. "app{{i}}")')
        for i in range(1, count + 1):

            def sub(s: str, i: int = i) -> str:  # the instance number first, the rest at up time
                return s.replace("{i}", str(i))

            spec = ProcessSpec(
                name=sub(name),
                argv=[sub(a) for a in argv],
                **{**common, "env": {k: sub(str(v)) for k, v in common["env"].items()}},
            )
            spec.health = sub(spec.health) if spec.health else None
            spec.tcp = sub(str(spec.tcp)) if spec.tcp is not None else None
            spec.netns = sub(spec.netns) if spec.netns else None
            if master is not None:
                m = _check(master, f"{w}.master")
                spec.master = Check([sub(a) for a in m.argv], m.contains, m.reason)
            if spec.name in names:
                raise LabError(f"{w}: a second process named {spec.name!r}")
            names.add(spec.name)
            d.processes.append(spec)
    for n, s in enumerate(_take(raw, "step", list, where, [])):
        w = f"{where}: step[{n}]"
        s = dict(s)
        d.steps.append(
            StepSpec(
                _strings(s.pop("argv", None), f"{w}.argv"),
                _take(s, "stage", int, w, 1),
                _take(s, "timeout", float, w, 60.0),
                _take(s, "until", str, w, None),
            )
        )
        _done(s, w)
    for n, f in enumerate(_take(raw, "file", list, where, [])):
        w = f"{where}: file[{n}]"
        f = dict(f)
        template = path.parent / _take(f, "template", str, w)
        if not template.is_file():
            raise LabError(f"{w}: template {template} does not exist (paths are relative to the deployment file)")
        d.files.append(FileSpec(_take(f, "name", str, w), template, _take(f, "path", str, w)))
        _done(f, w)
    for n, t in enumerate(_take(raw, "tmpfs", list, where, [])):
        w = f"{where}: tmpfs[{n}]"
        t = dict(t)
        d.tmpfs.append(TmpfsSpec(_take(t, "name", str, w), _take(t, "path", str, w), _take(t, "size", str, w, "64m")))
        _done(t, w)
    for n, net in enumerate(_take(raw, "network", list, where, [])):
        w = f"{where}: network[{n}]"
        net = dict(net)
        name = _take(net, "name", str, w)
        _done(net, w)
        if not re.fullmatch(r"[a-z][a-z0-9]{0,11}", name) or name in d.networks or name == "host":
            raise LabError(f"{w}: name = {name!r}: expected a new short lowercase name (not host)")
        d.networks.append(name)
    for n, ns in enumerate(_take(raw, "netns", list, where, [])):
        w = f"{where}: netns[{n}]"
        ns = dict(ns)
        count = _take(ns, "count", int, w, 1)
        name = _take(ns, "name", str, w)
        joins = _strings(ns.pop("networks", None), f"{w}.networks")
        _done(ns, w)
        if count > 1 and "{i}" not in name:
            raise LabError(f'{w}: count = {count} needs {{i}} in the name (e.g. "host{{i}}")')
        unknown = [j for j in joins if j not in d.networks]
        if unknown:
            raise LabError(f"{w}: networks {', '.join(unknown)}: no [[network]] of that name")
        for i in range(1, count + 1):
            spec_name = name.replace("{i}", str(i))
            if not re.fullmatch(r"[a-z][a-z0-9]{0,11}", spec_name) or spec_name == "host":
                raise LabError(f"{w}: name {spec_name!r}: expected a short lowercase name (not host)")
            if any(x.name == spec_name for x in d.netns):
                raise LabError(f"{w}: a second netns named {spec_name!r}")
            d.netns.append(NetnsSpec(spec_name, list(joins)))
    for p in d.processes:
        if p.netns is not None and not any(x.name == p.netns for x in d.netns):
            raise LabError(f"{where}: process {p.name}: netns = {p.netns!r}: no [[netns]] of that name")
    _done(raw, where)
    if not d.processes:
        raise LabError(f"{where}: no [[process]]: a deployment starts at least one process")
    return d


def load_scenario(path: Path) -> Scenario:
    """Read and check one scenario file; deployment names resolve next to it (``../deployments``)."""
    raw = _read(path)
    where = str(path)
    names = _take(raw, "deployments", list, where)
    deployments = [find(n, "deployments", path.parent.parent) for n in names]
    faults = []
    known = {f for f in FaultSpec.__dataclass_fields__}
    for n, f in enumerate(_take(raw, "fault", list, where, [])):
        w = f"{where}: fault[{n}]"
        f = dict(f)
        unknown = set(f) - known
        if unknown:
            raise LabError(f"{w}: unknown key(s) {', '.join(sorted(unknown))} (see docs/lab.md)")
        numbers = {
            k: float(v) for k, v in f.items() if isinstance(v, int) and not isinstance(v, bool)
        }  # at = 3 means 3.0
        try:
            spec = FaultSpec(**{**f, **numbers})
        except TypeError as exc:
            raise LabError(f"{w}: {exc} (every fault needs at, action and target)") from None
        kinds = {"float": float, "str": str}
        wrong = [
            k
            for k, fd in FaultSpec.__dataclass_fields__.items()
            if not isinstance(getattr(spec, k), kinds[str(fd.type)])
        ]
        if wrong:
            raise LabError(f"{w}: {', '.join(wrong)}: wrong type (numbers for times and rates, strings for names)")
        if spec.action not in FAULT_ACTIONS:
            raise LabError(f"{w}: action = {spec.action!r}: expected one of {', '.join(FAULT_ACTIONS)}")
        if spec.pick not in ("first", "last", "all", "master"):
            raise LabError(f"{w}: pick = {spec.pick!r}: expected first, last, all or master")
        if spec.mode not in ("stall", "reset"):
            raise LabError(
                f"{w}: mode = {spec.mode!r}: expected stall (packets dropped: silence) or reset (connections cut)"
            )
        if spec.at < 0 or spec.duration < 0 or not 0 <= spec.loss <= 1 or not 0 <= spec.reset <= 1:
            raise LabError(f"{w}: at and duration must be >= 0, loss and reset in 0..1")
        faults.append(spec)
    load = _take(raw, "load", dict, where, {})
    scenario = Scenario(
        name=_take(raw, "name", str, where, path.stem),
        source=path,
        deployments=deployments,
        load=load,
        faults=faults,
        description=_take(raw, "description", str, where, ""),
        settle=_take(raw, "settle", float, where, 2.0),
        recover_p99_ms=_take(raw, "recover_p99_ms", float, where, 50.0),
        bucket_s=_take(raw, "bucket_s", float, where, 0.25),
    )
    _done(raw, where)
    return scenario


def find(name: str, kind: str, root: Path | None = None) -> Path:
    """A deployment or scenario by path, or by name under ``lab/<kind>/`` (here, or in the source checkout)."""
    direct = Path(name)
    if direct.suffix == ".toml" and direct.is_file():
        return direct
    roots = [root] if root is not None else []
    roots += [Path(os.environ["TWITTERCORE_LAB"])] if os.environ.get("TWITTERCORE_LAB") else []
    roots += [Path.cwd() / "lab", Path(__file__).resolve().parents[3] / "lab"]
    for r in roots:
        candidate = r / kind / f"{name}.toml"
        if candidate.is_file():
            return candidate
    raise LabError(f"lab: no {kind[:-1]} {name!r} (looked for lab/{kind}/{name}.toml; or give a path to a .toml file)")
