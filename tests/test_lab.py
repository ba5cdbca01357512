"""The failure-point lab: deployments come up and always go down, faults land, the report says what happened."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from twittercore import cli
from twittercore.lab.config import LabError, load_deployment, load_scenario
from twittercore.lab.proxy import Proxy
from twittercore.lab.run import run_scenario
from twittercore.lab.supervisor import STATE_FILE, Lab, down, group_members

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = ROOT / "lab" / "deployments"
pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="the lab tracks processes through /proc")


def _nothing_left(pgids) -> None:
    deadline = time.monotonic() + 3
    while any(group_members(g) for g in pgids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [g for g in pgids if group_members(g)], "a process the lab started is still running"


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_up_then_down_from_another_process_leaves_nothing(tmp_path):
    """lab up starts 5 processes and returns; lab down in another process stops all of them."""
    run_dir = tmp_path / "run"
    up = subprocess.run(
        [
            sys.executable,
            "-m",
            "twittercore",
            "lab",
            "up",
            str(DEPLOYMENTS / "lmdb-haproxy.toml"),
            "--dir",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert up.returncode == 0, up.stderr
    state = json.loads((run_dir / STATE_FILE).read_text())
    assert sorted(state["processes"]) == ["app1", "app2", "lb", "link1", "link2"]
    assert all(group_members(g) for g in state["pgids"])  # they outlived `lab up`
    import urllib.request

    with urllib.request.urlopen(state["url"] + "/api/v1/instance", timeout=5) as response:
        assert response.status == 200  # through haproxy and a link proxy to a server
    down = subprocess.run(
        [sys.executable, "-m", "twittercore", "lab", "down", "--dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert down.returncode == 0 and "stopped lmdb-haproxy (5 processes" in down.stdout, down.stdout + down.stderr
    _nothing_left(state["pgids"])
    assert not (run_dir / STATE_FILE).exists()
    again = cli.main(["lab", "down", "--dir", str(run_dir)])  # idempotent
    assert again == 0


def test_a_failed_up_stops_what_it_started(tmp_path):
    """A step that fails halfway through bringing a deployment up: the processes already started are stopped."""
    path = _write(
        tmp_path / "broken.toml",
        """
        name = "broken"
        url = "http://127.0.0.1:{port:x}"
        [[process]]
        name = "sleeper{i}"
        count = 2
        argv = ["sleep", "600"]
        [[step]]
        argv = ["sh", "-c", "echo no cluster for you; exit 3"]
        timeout = 0.5
    """,
    )
    lab = Lab(load_deployment(path), tmp_path / "run")
    with pytest.raises(LabError, match="no cluster for you"):
        lab.up()
    assert len(lab.pgids) == 2
    _nothing_left(lab.pgids)
    assert not (tmp_path / "run" / STATE_FILE).exists()


@pytest.mark.parametrize("path", sorted((ROOT / "lab" / "scenarios").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_and_its_deployments_load(path):
    """A typo in a shipped file is caught here, not at the start of a long run."""
    scenario = load_scenario(path)
    assert scenario.deployments
    for deployment in scenario.deployments:
        assert load_deployment(deployment).name == deployment.stem


def test_bad_files_are_clear_errors(tmp_path):
    bad_key = _write(tmp_path / "a.toml", 'url = "x"\nprocesses = []\n[[process]]\nname = "a"\nargv = ["true"]\n')
    with pytest.raises(LabError, match="unknown key.*processes"):
        load_deployment(bad_key)
    typo = _write(tmp_path / "b.toml", 'url = "http://127.0.0.1:{prot:a}"\n[[process]]\nname = "a"\nargv = ["true"]\n')
    with pytest.raises(LabError, match=r"unknown placeholder \{prot:a\}"):
        Lab(load_deployment(typo), tmp_path / "run").up()
    fault = _write(tmp_path / "s.toml", 'deployments = []\n[[fault]]\nat = 1\naction = "explode"\ntarget = "app"\n')
    with pytest.raises(LabError, match="action = 'explode'"):
        load_scenario(fault)
    stringly = _write(
        tmp_path / "s2.toml", 'deployments = []\n[[fault]]\nat = "soon"\naction = "kill"\ntarget = "app"\n'
    )
    with pytest.raises(LabError, match="at: wrong type"):
        load_scenario(stringly)
    assert cli.main(["lab", "run", str(tmp_path / "missing.toml")]) == 2
    typo = _write(tmp_path / "t.toml", "deployments = []\n[load]\nrat = 5\n")
    with pytest.raises(LabError, match="rat: not an option of twittercore load"):
        run_scenario(load_scenario(typo), tmp_path / "out")


def test_proxy_delays_cuts_and_heals():
    """The link proxy: a delay shows in the round trip; a reset partition refuses; healing restores."""

    async def scenario() -> None:
        async def echo(reader, writer):
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
            writer.close()

        upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
        proxy = Proxy(("127.0.0.1", upstream.sockets[0].getsockname()[1]))
        front = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        port = front.sockets[0].getsockname()[1]

        async def round_trip() -> float:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            t = time.monotonic()
            try:
                writer.write(b"ping")
                data = await asyncio.wait_for(reader.readexactly(4), 2)
            finally:
                writer.close()  # also when the partition resets it: no transport left open
            assert data == b"ping"
            return time.monotonic() - t

        try:
            assert await round_trip() < 0.1
            proxy.update({"delay_ms": 150})
            assert await round_trip() >= 0.29  # 150 ms each way
            proxy.update({"delay_ms": 0, "partition": "reset"})
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await round_trip()
            proxy.update({"partition": None})
            assert await round_trip() < 0.1
            with pytest.raises(ValueError, match="partition"):
                proxy.update({"partition": "sideways"})
        finally:
            front.close()
            upstream.close()
            # The proxy's and the echo's handlers see the closes and close their
            # own ends; let them, before the loop goes away under them.
            await asyncio.sleep(0.2)

    asyncio.run(scenario())


@pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-cli") is None, reason="redis is not installed"
)
def test_redis_cluster_steps_and_master_pick(tmp_path):
    """The redis-cluster deployment's Redis half: 6 nodes on bus-port pairs, cluster create, pick = master."""
    shipped = (DEPLOYMENTS / "redis-cluster.toml").read_text()
    redis_only = shipped.split('[[process]]\nname = "app{i}"')[0]  # the app servers may not exist yet
    redis_only = redis_only.replace('url = "http://127.0.0.1:{port:lb}"', 'url = "redis://127.0.0.1:{port:redis1}"')
    path = _write(tmp_path / "redis.toml", redis_only)
    lab = Lab(load_deployment(path), tmp_path / "run")
    try:
        lab.up()
        assert all(p + 10000 not in lab.ports.values() for p in lab.ports.values())
        master = lab.targets("redis", "master")
        assert len(master) == 1
        out = subprocess.run(["redis-cli", "-p", str(lab.ports[master[0]]), "role"], capture_output=True, text=True)
        assert out.stdout.startswith("master")
        info = subprocess.run(
            ["redis-cli", "-p", str(lab.ports["redis1"]), "cluster", "info"], capture_output=True, text=True
        )
        assert "cluster_known_nodes:6" in info.stdout
        # Kill that master, restart it well after the cluster node timeout (2 s): its replica has been promoted, so
        # the old master rejoins as a replica. (Restarted sooner, it would still be the master.)
        from twittercore.lab.config import FaultSpec
        from twittercore.lab.faults import run_faults

        async def kill_master() -> list:
            log: list = []
            loop = asyncio.get_running_loop()
            await run_faults(
                lab,
                [FaultSpec(at=0, action="kill", target="redis", pick="master", restart_after=6.0)],
                loop.time(),
                _Faults(),
                log,
            )
            return log

        (record,) = asyncio.run(kill_master())
        assert record["error"] is None and record["processes"] == master
        role = ""
        deadline = time.monotonic() + 30
        while not role.startswith("slave") and time.monotonic() < deadline:
            time.sleep(0.25)
            role = subprocess.run(
                ["redis-cli", "-p", str(lab.ports[master[0]]), "role"], capture_output=True, text=True
            ).stdout
        assert role.startswith("slave"), role
        assert len(lab.targets("redis", "all")) == 6 and lab.targets("redis", "master") != master
    finally:
        lab.down()
    _nothing_left(lab.pgids)


def test_smoke_scenario_kills_a_worker_and_reports_recovery(tmp_path):
    """The shipped smoke scenario: a few seconds of load on lmdb-1, one worker SIGKILLed and replaced."""
    out = tmp_path / "report"
    code = cli.main(["lab", "run", "smoke", "--out", str(out)])
    result = json.loads((out / "lmdb-1" / "report.json").read_text())
    assert code == 0, result
    assert result["status"] == "ok" and result["ok"]
    assert result["verify"]["ok"] and not any(result["verify"]["violations"].values())
    posts = result["posts"]
    assert posts["acknowledged"] >= 40 and posts["lost"] == 0 and posts["resurrected"] == 0
    (fault,) = result["faults"]
    assert fault["action"] == "kill" and fault["processes"] == ["app"] and fault["error"] is None
    assert fault["pids"] and 1.4 <= fault["start_s"] <= 1.8 and fault["end_s"] > fault["start_s"]
    assert fault["during"]["requests"] > 0
    assert fault["recovery_s"] is not None and fault["outage_s"] >= fault["recovery_s"]
    assert result["load"]["requests"] == 200 and result["processes_left"] == 0
    assert len(result["timeline"]) == 20 and sum(b["requests"] for b in result["timeline"]) >= 190
    assert (out / "lmdb-1" / "timeline.png").stat().st_size > 10_000
    assert "kill app" in (out / "lmdb-1" / "report.md").read_text()
    assert "| lmdb-1 | ok |" in (out / "comparison.md").read_text()
    history = (out / "lmdb-1" / "history.jsonl").read_text()
    assert history.count('"op":"fault"') == 2  # its start and its end, on the history's clock


def test_a_deployment_that_cannot_run_here_is_a_skipped_row(tmp_path):
    """A failed ``requires`` check: the row says skipped and why; nothing is started; the run still succeeds."""
    (tmp_path / "deployments").mkdir()
    _write(
        tmp_path / "deployments" / "future.toml",
        """
        url = "http://127.0.0.1:{port:app}"
        [[requires]]
        argv = ["sh", "-c", "exit 1"]
        reason = "the future backend is not built yet"
        [[process]]
        name = "app"
        argv = ["sleep", "600"]
    """,
    )
    (tmp_path / "scenarios").mkdir()
    _write(
        tmp_path / "scenarios" / "s.toml",
        """
        deployments = ["future"]
        [[fault]]
        at = 1
        action = "kill"
        target = "app"
    """,
    )
    out = tmp_path / "out"
    assert cli.main(["lab", "run", str(tmp_path / "scenarios" / "s.toml"), "--out", str(out)]) == 0
    assert "| future | skipped: the future backend is not built yet |" in (out / "comparison.md").read_text()
    assert json.loads((out / "future" / "report.json").read_text())["status"] == "skipped"


@pytest.mark.parametrize("bug, guarantee", [("drop", "G3"), ("reorder", "G1")])
def test_a_broken_deployment_is_caught_and_named(bug, guarantee, tmp_path):
    """A server that loses acknowledged posts from its pages, or reorders a page: the run is not ok, and says why."""
    (tmp_path / "deployments").mkdir()
    _write(
        tmp_path / "deployments" / "broken.toml",
        f"""
        url = "http://127.0.0.1:{{port:app}}"
        [[process]]
        name = "app"
        role = "app"
        argv = ["{{python}}", "{ROOT / "tests" / "lab_broken_server.py"}", "{bug}", "--data", "{{dir}}/data",
                "--port", "{{port:app}}", "--admin-token", "{{token}}", "--no-durable"]
        health = "http://127.0.0.1:{{port:app}}/api/v1/instance"
    """,
    )
    (tmp_path / "scenarios").mkdir()
    _write(
        tmp_path / "scenarios" / "s.toml",
        """
        deployments = ["broken"]
        settle = 0.2
        [load]
        rate = 60
        duration = 2
        users = 12
        followees = 4
        posts = 60
        connections = 4
        streams = 0
    """,
    )
    out = tmp_path / "out"
    assert cli.main(["lab", "run", str(tmp_path / "scenarios" / "s.toml"), "--out", str(out)]) == 1
    result = json.loads((out / "broken" / "report.json").read_text())
    assert result["status"] == "ok" and not result["ok"] and not result["verify"]["ok"]
    assert result["verify"]["violations"][guarantee] > 0
    page = (out / "broken" / "report.md").read_text()
    assert f"first {guarantee} counterexample: {guarantee} (" in page
    assert f"{guarantee}: " in (out / "comparison.md").read_text()


def test_ctrl_c_mid_run_stops_everything(tmp_path):
    """SIGINT while the load runs: the lab tears the deployment down before it exits."""
    out = tmp_path / "out"
    # A suite started in the background by a shell without job control has
    # SIGINT ignored, and a child inherits an ignored signal: start the lab with
    # Python's own handler, as from a terminal, or the Ctrl-C below never arrives.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "twittercore", "lab", "run", "smoke", "--out", str(out)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    state_file = out / "lmdb-1" / "deploy" / STATE_FILE
    try:
        deadline = time.monotonic() + 60
        while "load: setup" not in (line := proc.stdout.readline()):
            assert line and time.monotonic() < deadline, "the run never started its load"
        state = json.loads(state_file.read_text())
        assert state["pgids"] and all(group_members(g) for g in state["pgids"])
        proc.send_signal(2)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            down(state_file.parent)  # the test failed: still leave nothing behind
        proc.stdout.close()
    assert proc.returncode == 130, rest
    assert "everything it started was stopped" in rest
    _nothing_left(state["pgids"])
    assert not state_file.exists()


class _Faults:
    """Collects what run_faults writes into a history."""

    def __init__(self) -> None:
        self.records = []

    def fault(self, *args, **kwargs) -> None:
        self.records.append((args, kwargs))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_disk_full_fills_the_tmpfs_then_frees_it_and_down_unmounts(tmp_path):
    from twittercore.lab.config import FaultSpec
    from twittercore.lab.faults import run_faults

    path = _write(
        tmp_path / "d.toml",
        """
        url = "http://127.0.0.1:{port:x}"
        [[tmpfs]]
        name = "data"
        path = "data"
        size = "2m"
        [[process]]
        name = "sleeper"
        argv = ["sleep", "600"]
    """,
    )
    lab = Lab(load_deployment(path), tmp_path / "run")
    mount = tmp_path / "run" / "data"
    try:
        lab.up()
        assert os.path.ismount(mount)
        seen = []

        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            log: list = []
            task = loop.create_task(
                run_faults(
                    lab, [FaultSpec(at=0, action="disk-full", target="data", duration=0.3)], loop.time(), history, log
                )
            )
            await asyncio.sleep(0.15)
            seen.append(os.statvfs(mount).f_bavail)
            await task
            seen.append(os.statvfs(mount).f_bavail)
            assert log[0]["error"] is None and log[0]["bytes"] >= 1_500_000

        history = _Faults()
        asyncio.run(scenario())
        assert seen[0] == 0 and seen[1] > 400  # full during the fault, free after (4 KiB blocks)
        assert [r[0][2] for r in history.records] == ["start", "end"]
    finally:
        lab.down()
    assert not os.path.ismount(mount)
    _nothing_left(lab.pgids)
