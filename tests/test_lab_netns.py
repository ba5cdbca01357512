"""The lab's network namespaces: processes on hosts of their own, partitions as veth links going down.

Real namespaces, bridges and veth pairs (root only); every test checks that none is left behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from twittercore import cli
from twittercore.lab import netns
from twittercore.lab.config import FaultSpec, LabError, load_deployment
from twittercore.lab.faults import run_faults
from twittercore.lab.supervisor import STATE_FILE, Lab, down, group_members

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="network namespaces need root and ip"),
    pytest.mark.skipif(netns.probe() is not None if os.geteuid() == 0 else True, reason="no network namespaces here"),
]

SERVER = "import http.server as h; h.ThreadingHTTPServer(('0.0.0.0', {port:web{i}}), h.SimpleHTTPRequestHandler).serve_forever()"


def _deployment(tmp_path: Path, count: int = 2) -> Path:
    path = tmp_path / "d.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            url = "http://{{addr:host1}}:{{port:web1}}"
            [[network]]
            name = "back"
            [[netns]]
            name = "host{{i}}"
            count = {count}
            networks = ["back"]
            [[process]]
            name = "web{{i}}"
            count = {count}
            netns = "host{{i}}"
            argv = ["{{python}}", "-c", "{SERVER}"]
            tcp = "{{port:web{{i}}}}"
            """
        )
    )
    return path


def _reach(address: str, port: int, namespace: str | None = None, timeout: float = 0.5) -> bool:
    """A TCP connect from the lab's namespace, or from inside ``namespace``."""
    if namespace is None:
        try:
            with socket.create_connection((address, port), timeout=timeout):
                return True
        except OSError:
            return False
    code = f"import socket; socket.create_connection(({address!r}, {port}), timeout={timeout})"
    return (
        subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", code], capture_output=True).returncode
        == 0
    )


def _ours_gone(lab_or_state) -> None:
    made = lab_or_state if isinstance(lab_or_state, dict) else lab_or_state.net.state()
    names = set(netns.lab_namespaces())
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert not names & set(made["namespaces"]), "a namespace the lab made is still there"
    for iface in made["veths"] + made["bridges"]:
        assert f": {iface}" not in links and f": {iface}@" not in links, f"interface {iface} is still there"


class _History:
    def __init__(self) -> None:
        self.records: list = []

    def fault(self, *args, **kwargs) -> None:
        self.records.append(args)


def test_processes_run_in_their_namespaces_and_a_partition_cuts_then_heals(tmp_path):
    lab = Lab(load_deployment(_deployment(tmp_path)), tmp_path / "run")
    try:
        lab.up()
        made = {k: list(v) for k, v in lab.net.state().items()}
        assert len(made["namespaces"]) == 2 and len(made["veths"]) == 2 and len(made["bridges"]) == 1
        a1, a2 = lab.net.addr("host1"), lab.net.addr("host2.back")
        p1, p2 = lab.ports["web1"], lab.ports["web2"]
        assert a1 != a2 and a1.rsplit(".", 1)[0] == a2.rsplit(".", 1)[0]
        assert not _reach("127.0.0.1", p1), "the server is on the namespace's address, not the lab's loopback"
        ns1, ns2 = (lab.net.system_name(n) for n in ("host1", "host2"))
        assert _reach(a1, p1) and _reach(a2, p2) and _reach(a1, p1, ns2) and _reach(a2, p2, ns1)
        # The lab tracks the server itself (ip netns exec execs): its own netns is host1's.
        pid = lab.running["web1"].pid
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
        seen: dict[str, bool] = {}

        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            log: list = []
            task = loop.create_task(
                run_faults(
                    lab, [FaultSpec(at=0, action="partition", target="host1", duration=1.5)], loop.time(), history, log
                )
            )
            await asyncio.sleep(0.3)
            seen["from the lab"] = await asyncio.to_thread(_reach, a1, p1)
            seen["from host2"] = await asyncio.to_thread(_reach, a1, p1, ns2)
            seen["host2 still up"] = await asyncio.to_thread(_reach, a2, p2)
            await task
            assert log[0]["error"] is None and log[0]["links"] == made["veths"][:1]

        history = _History()
        asyncio.run(scenario())
        assert seen == {"from the lab": False, "from host2": False, "host2 still up": True}
        assert _reach(a1, p1, timeout=2) and _reach(a1, p1, ns2, timeout=2), "healed"
        assert [r[2] for r in history.records] == ["start", "end"]
    finally:
        lab.down()
    assert lab.left == []
    _ours_gone(made)
    assert not any(group_members(g) for g in lab.pgids)


def test_a_group_partition_splits_the_network_in_two_sides_that_each_still_talk(tmp_path):
    lab = Lab(load_deployment(_deployment(tmp_path, count=3)), tmp_path / "run")
    try:
        lab.up()
        addr = {n: lab.net.addr(f"host{n}") for n in (1, 2, 3)}
        port = {n: lab.ports[f"web{n}"] for n in (1, 2, 3)}
        ns = {n: lab.net.system_name(f"host{n}") for n in (1, 2, 3)}

        def matrix() -> dict[str, bool]:
            pairs = {"1->2": (2, 1), "2->1": (1, 2), "3->1": (1, 3), "2->3": (3, 2)}
            got = {name: _reach(addr[to], port[to], ns[frm]) for name, (to, frm) in pairs.items()}
            got["lab->1"] = _reach(addr[1], port[1])
            got["lab->3"] = _reach(addr[3], port[3])
            return got

        seen: dict[str, dict[str, bool]] = {}

        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            log: list = []
            fault = FaultSpec(at=0, action="partition", target="host1+host2", duration=2.5)
            task = loop.create_task(run_faults(lab, [fault], loop.time(), _History(), log))
            await asyncio.sleep(0.3)
            seen["split"] = await asyncio.to_thread(matrix)
            seen["state"] = {
                "side bridge saved": any(
                    "s0" in b for b in json.loads((lab.dir / STATE_FILE).read_text())["net"]["bridges"]
                )
            }
            await task
            assert log[0]["error"] is None

        asyncio.run(scenario())
        assert seen["split"] == {
            "1->2": True,
            "2->1": True,
            "3->1": False,
            "2->3": False,
            "lab->1": False,
            "lab->3": True,
        }
        assert seen["state"] == {"side bridge saved": True}
        # Healed: everyone reaches everyone again, once ARP retries (a neighbour first looked up during
        # the split is still being resolved, about one second per probe).
        deadline = time.monotonic() + 5
        while not all((got := matrix()).values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(got.values()), got
        assert not any("s0" in b for b in lab.net.made["bridges"]), "the side bridge is gone after the heal"
        made = {k: list(v) for k, v in lab.net.state().items()}
    finally:
        lab.down()
    assert lab.left == []
    _ours_gone(made)


def test_lab_down_from_another_process_removes_the_namespaces(tmp_path):
    run_dir = tmp_path / "run"
    up = subprocess.run(
        [sys.executable, "-m", "twittercore", "lab", "up", str(_deployment(tmp_path)), "--dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert up.returncode == 0, up.stderr
    state = json.loads((run_dir / STATE_FILE).read_text())
    assert len(state["net"]["namespaces"]) == 2
    assert set(state["net"]["namespaces"]) <= set(netns.lab_namespaces())
    result = down(run_dir)
    assert result is not None and result["left"] == []
    _ours_gone(state["net"])
    deadline = time.monotonic() + 3
    while any(group_members(g) for g in state["pgids"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(group_members(g) for g in state["pgids"])


def test_a_failed_up_removes_what_it_made(tmp_path):
    path = _deployment(tmp_path)
    path.write_text(
        path.read_text().replace('argv = ["{python}", "-c"', 'argv = ["{python}", "-c", "raise SystemExit(3)", "-c"')
    )
    lab = Lab(load_deployment(path), tmp_path / "run")
    with pytest.raises(LabError, match="exited with status 3"):
        lab.up()
    _ours_gone(lab.net.state() if any(lab.net.made.values()) else {"namespaces": [], "veths": [], "bridges": []})
    assert not [n for n in netns.lab_namespaces() if n.startswith(f"tc{lab.net.run_id}-")]


def test_bad_network_tables_are_clear_errors(tmp_path):
    base = 'url = "x"\n[[process]]\nname = "a"\nargv = ["true"]\n'
    cases = {
        '[[netns]]\nname = "h"\nnetworks = ["nowhere"]\n': "networks nowhere: no \\[\\[network\\]\\]",
        '[[network]]\nname = "n"\n[[netns]]\nname = "h{i}"\ncount = 2\nnetworks = ["n"]\n[[process]]\nname = "b"\nargv = ["true"]\nnetns = "h3"\n': "netns = 'h3': no \\[\\[netns\\]\\]",
        '[[network]]\nname = "Has Spaces"\n': "expected a new short lowercase name",
        '[[network]]\nname = "n"\n[[netns]]\nname = "host"\nnetworks = ["n"]\n': "not host",
    }
    for n, (extra, message) in enumerate(cases.items()):
        path = tmp_path / f"{n}.toml"
        path.write_text(base + extra)
        with pytest.raises(LabError, match=message):
            load_deployment(path)
    no_ns = tmp_path / "plain.toml"
    no_ns.write_text(base.replace('"x"', '"http://{addr:host1}:1"'))
    with pytest.raises(LabError, match="has no \\[\\[netns\\]\\]"):
        Lab(load_deployment(no_ns), tmp_path / "run").up()


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_partition_scenario_on_the_namespaced_client_server_deployment(tmp_path):
    """app2's link down under load: haproxy routes around it, nothing acknowledged is lost, no violation, nothing left."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        textwrap.dedent(
            f"""
            name = "partition-test"
            deployments = [{str(Path(__file__).resolve().parents[1] / "lab" / "deployments" / "lmdb-haproxy-netns.toml")!r}]
            settle = 1.0
            recover_p99_ms = 100
            [load]
            rate = 40
            duration = 6
            users = 12
            followees = 4
            posts = 30
            connections = 8
            streams = 2
            timeout = 5
            [[fault]]
            at = 1.5
            action = "partition"
            target = "host2"
            duration = 2
            """
        )
    )
    out = tmp_path / "report"
    code = cli.main(["lab", "run", str(scenario), "--out", str(out)])
    result = json.loads((out / "lmdb-haproxy-netns" / "report.json").read_text())
    assert code == 0, result
    assert result["ok"] and result["verify"]["ok"] and result["posts"]["lost"] == 0
    assert result["network_left"] == [] and result["processes_left"] == 0
    (fault,) = result["faults"]
    assert fault["action"] == "partition" and fault["processes"] == ["host2"] and fault["error"] is None
    assert 1.9 <= fault["end_s"] - fault["start_s"] <= 3.0
    assert fault["during"]["requests"] > 0 and fault["recovery_s"] is not None
    assert "partition host2" in (out / "lmdb-haproxy-netns" / "report.md").read_text()
    assert not [n for n in netns.lab_namespaces() if "-host" in n]
