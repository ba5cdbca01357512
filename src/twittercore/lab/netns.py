"""Network namespaces for a deployment: processes on hosts of their own, partitions as links going down.

A deployment's ``[[network]]`` tables are Linux bridges in the lab's own
namespace, each with a /24 of its own (``10.B.k.0/24``, the lab's address on
it ``.1``); its ``[[netns]]`` tables are namespaces with loopback up and, for
each network they join, a veth pair: ``eth<k>`` inside with address
``.(10+j)`` (``j`` the namespace's position in the file), the other end on
the bridge.  A process with ``netns = NAME`` is started as ``ip netns exec
NAME argv...``, which ``exec``\\ s, so the PID the lab tracks and signals is
the process itself.

A partition of one namespace (or one of its links) sets the lab-side end of
its veths down: every packet to and from it on that network is dropped (a
cut cable or a dead switch port: connections stall until their own
timeouts, new ones time out), and setting them up heals it.  A partition of
a group (``host4+host5``) splits each network in two instead: the group's
links move to a bridge of their own, so its members still reach each
other but nobody else (the lab's own address stays on the other side), and
healing moves them back.  Nothing else on the machine changes: no sysctl, no
firewall rule, no route outside the lab's own subnets (``B`` is picked so
that no address or route of the machine is in ``10.B.0.0/16``).

Every name carries a random run id (``tc<id>...``), so two labs on one
machine never collide, and what was made is written into the lab's state
file as it is made, so ``twittercore lab down`` from another shell, or
after the lab was killed, removes it.  Runtime complexity: one ``ip``
command per object at set-up and teardown, one per link per partition.
"""

from __future__ import annotations

import random
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import LabError, NetnsSpec

__all__ = ["Net", "destroy", "probe", "lab_namespaces"]

_PREFIX = "tc"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"lab: ip {' '.join(args)}: {exc} (network namespaces need iproute2 and root)") from None
    if check and done.returncode != 0:
        raise LabError(f"lab: ip {' '.join(args)}: {done.stderr.strip()} (network namespaces need root)")
    return done


def _taken_second_octets() -> set[int]:
    """Second octets B of every 10.B.x.x address or route on this machine: those /16s are not ours to use."""
    text = _ip("-o", "-4", "addr", "show").stdout + _ip("-4", "route", "show", "table", "all", check=False).stdout
    return {int(b) for b in re.findall(r"\b10\.(\d{1,3})\.\d{1,3}\.\d{1,3}", text)}


def _bridge(name: str) -> None:
    """A bridge with a fixed MAC: by default a bridge takes its lowest port's, which a split would change."""
    mac = "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))  # locally administered, unicast
    _ip("link", "add", name, "address", mac, "type", "bridge")


def probe() -> str | None:
    """Why network namespaces cannot be used here, or None (makes and removes one namespace and one bridge)."""
    if shutil.which("ip") is None:
        return "network namespaces need iproute2 (the ip command)"
    tag = secrets.token_hex(2)
    ns, bridge = f"{_PREFIX}{tag}probe", f"{_PREFIX}{tag}pb"
    try:
        for args in (("netns", "add", ns), ("link", "add", bridge, "type", "bridge")):
            done = _ip(*args, check=False)
            if done.returncode != 0:
                return f"network namespaces are not available here: ip {' '.join(args)}: {done.stderr.strip()} (needs root)"
        return None
    finally:
        _ip("link", "del", bridge, check=False)
        _ip("netns", "del", ns, check=False)


def lab_namespaces() -> list[str]:
    """Namespaces on this machine whose names a lab makes (tests check none are left behind)."""
    names = [line.split()[0] for line in _ip("netns", "list", check=False).stdout.splitlines() if line.strip()]
    return [n for n in names if re.fullmatch(rf"{_PREFIX}[0-9a-f]{{4}}-.+|{_PREFIX}[0-9a-f]{{4}}probe", n)]


@dataclass
class _Link:
    namespace: str  # the deployment's name for the namespace
    network: str
    host_side: str  # interface name in the lab's namespace (what a partition sets down)
    address: str


class Net:
    """The namespaces, bridges and veth pairs of one deployment in one run; ``create()``, then ``destroy``."""

    def __init__(self, networks: list[str], namespaces: list[NetnsSpec]) -> None:
        self.networks = networks
        self.namespaces = namespaces
        self.run_id = secrets.token_hex(2)
        self.octet = 0
        self.links: list[_Link] = []
        self.made: dict[str, list[str]] = {"bridges": [], "namespaces": [], "veths": []}

    def system_name(self, namespace: str) -> str:
        """The namespace's name on this machine (what ``ip netns exec`` takes)."""
        return f"{_PREFIX}{self.run_id}-{namespace}"

    def create(self, saved: Callable[[], None]) -> None:
        """Make every bridge, namespace and veth pair; ``saved()`` is called after each so teardown can find it."""
        taken = _taken_second_octets()
        free = [b for b in range(200, 255) if b not in taken]
        if not free:
            raise LabError("lab: no free 10.B.0.0/16 for the lab's networks (every B in 200..254 is in use here)")
        self.octet = random.choice(free)
        for k in range(len(self.networks)):
            bridge = f"{_PREFIX}{self.run_id}b{k}"
            _bridge(bridge)
            self.made["bridges"].append(bridge)
            saved()
            _ip("addr", "add", f"10.{self.octet}.{k}.1/24", "dev", bridge)
            _ip("link", "set", bridge, "up")
        for j, ns in enumerate(self.namespaces, start=1):
            name = self.system_name(ns.name)
            _ip("netns", "add", name)
            self.made["namespaces"].append(name)
            saved()
            _ip("-n", name, "link", "set", "lo", "up")
            for network in ns.networks:
                k = self.networks.index(network)
                host_side = f"{_PREFIX}{self.run_id}n{j}v{k}"
                _ip("link", "add", host_side, "type", "veth", "peer", "name", f"eth{k}", "netns", name)
                self.made["veths"].append(host_side)
                saved()
                address = f"10.{self.octet}.{k}.{10 + j}"
                _ip("link", "set", host_side, "master", f"{_PREFIX}{self.run_id}b{k}", "up")
                _ip("-n", name, "addr", "add", f"{address}/24", "dev", f"eth{k}")
                _ip("-n", name, "link", "set", f"eth{k}", "up")
                self.links.append(_Link(ns.name, network, host_side, address))

    def addr(self, ref: str) -> str:
        """``{addr:NS}`` (its address on its first network), ``{addr:NS.NET}``, or ``{addr:host.NET}`` (the lab's)."""
        ns, _, network = ref.partition(".")
        if ns == "host" and network in self.networks:
            return f"10.{self.octet}.{self.networks.index(network)}.1"
        for link in self.links:
            if link.namespace == ns and network in ("", link.network):
                return link.address
        known = [f"{n.name}.{net}" for n in self.namespaces for net in n.networks]
        raise LabError(f"lab: {{addr:{ref}}}: no such namespace or link (known: {', '.join(known) or 'none'})")

    def host_sides(self, target: str) -> list[str] | None:
        """The veth ends a partition of ``target`` (``NS`` = all its links, ``NS.NET`` = one) sets down; None if not ours."""
        found = [link.host_side for link in self._links(target)]
        return found or None

    def _links(self, target: str) -> list[_Link]:
        found = []
        for part in target.split("+"):
            ns, _, network = part.partition(".")
            mine = [link for link in self.links if link.namespace == ns and network in ("", link.network)]
            if not mine:
                return []  # every member must be ours, or the target is not a namespace group at all
            found += mine
        return found

    def split(self, target: str) -> list[str]:
        """Move the links of ``target`` (``A+B+...``) to a side bridge per network; returns the side bridges."""
        sides = []
        for link in self._links(target):
            k = self.networks.index(link.network)
            side = f"{_PREFIX}{self.run_id}s{k}"
            if side not in sides:
                _bridge(side)
                self.made["bridges"].append(side)
                _ip("link", "set", side, "up")
                sides.append(side)
            _ip("link", "set", link.host_side, "master", side)
        return sides

    def join(self, target: str, sides: list[str]) -> None:
        """Undo ``split``: the links back on their network's bridge, the side bridges removed."""
        for link in self._links(target):
            _ip("link", "set", link.host_side, "master", f"{_PREFIX}{self.run_id}b{self.networks.index(link.network)}")
        for side in sides:
            _ip("link", "del", side, check=False)
            if side in self.made["bridges"]:
                self.made["bridges"].remove(side)

    def set_links(self, host_sides: list[str], up: bool) -> None:
        for iface in host_sides:
            _ip("link", "set", iface, "up" if up else "down")

    def exec_prefix(self, namespace: str) -> list[str]:
        return ["ip", "netns", "exec", self.system_name(namespace)]

    def state(self) -> dict[str, Any]:
        return {k: list(v) for k, v in self.made.items()}


def destroy(made: dict[str, list[str]]) -> list[str]:
    """Remove what ``Net.create`` made (veths, namespaces, bridges); returns what could not be removed."""
    left = []
    for iface in made.get("veths", []):
        _ip("link", "del", iface, check=False)  # removes both ends
    for name in made.get("namespaces", []):
        if _ip("netns", "del", name, check=False).returncode != 0 and name in lab_namespaces():
            left.append(f"namespace {name}")
    for bridge in made.get("bridges", []):
        _ip("link", "del", bridge, check=False)
    existing = _ip("-o", "link", "show", check=False).stdout
    left += [
        f"interface {i}"
        for i in made.get("veths", []) + made.get("bridges", [])
        if re.search(rf"^\d+: {re.escape(i)}[@:]", existing, re.M)
    ]
    return left
