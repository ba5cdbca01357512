"""A throwaway Redis Cluster for the twittercore Redis backend's rows.

Three masters (no replicas, nothing on disk) on loopback, on free ports
chosen at random from a range the test fixture does not use (its cluster may
be running at the same time), joined with ``redis-cli --cluster create``.
Started by the parent around one child run and stopped after it by PID, so
every run starts empty and a killed child never leaves nodes behind.  The
PIDs are handed to the child too: ``bench_redis.py`` reads each master's CPU
time from ``/proc`` around a fixed number of operations.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

HOST = "127.0.0.1"
#: The cluster bus is port + 10000; tests/redis_cluster.py takes 30000-30999.
PORTS = range(32000, 33000)


def missing_reason() -> str | None:
    """Why a Redis Cluster cannot be started here, or None."""
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (`make redis`, or apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install 'twittercore[redis]')"
    return None


def _free(port: int) -> bool:
    for p in (port, port + 10000):
        with socket.socket() as s:
            try:
                s.bind((HOST, p))
            except OSError:
                return False
    return True


def _cli(port: int, *args: str, timeout: float = 5) -> str:
    try:
        out = subprocess.run(
            ["redis-cli", "-h", HOST, "-p", str(port), *args], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return ""
    return out.stdout


class Cluster:
    """``Cluster(3).start()``; ``.url``, ``.pids``; ``.stop()`` ends every node it started."""

    def __init__(self, masters: int = 3) -> None:
        self.masters = masters
        self.dir = tempfile.mkdtemp(prefix="twittercore-bench-cluster-")
        self.procs: dict[int, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{p}" for p in self.procs)

    @property
    def pids(self) -> dict[int, int]:
        """``{port: pid}`` of every node."""
        return {port: proc.pid for port, proc in self.procs.items()}

    def start(self, timeout: float = 30.0) -> Cluster:
        candidates = list(PORTS)
        random.shuffle(candidates)
        for port in candidates:
            if len(self.procs) == self.masters:
                break
            if _free(port):
                self._spawn(port)
        if len(self.procs) < self.masters:
            raise RuntimeError(f"no {self.masters} free port pairs in {PORTS.start}-{PORTS.stop - 1}")
        deadline = time.monotonic() + timeout
        while not all(_cli(p, "PING").strip() == "PONG" for p in self.procs):
            if time.monotonic() > deadline or any(proc.poll() is not None for proc in self.procs.values()):
                raise RuntimeError("a redis-server of the benchmark cluster did not start")
            time.sleep(0.05)
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"{HOST}:{p}" for p in self.procs),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {(created.stdout + created.stderr)[-300:]}")
        while time.monotonic() < deadline:
            infos = [_cli(p, "CLUSTER", "INFO") for p in self.procs]
            if all("cluster_state:ok" in i and "cluster_slots_ok:16384" in i for i in infos):
                return self
            time.sleep(0.1)
        raise RuntimeError("the benchmark cluster did not reach cluster_state:ok")

    def _spawn(self, port: int) -> None:
        node_dir = os.path.join(self.dir, str(port))
        os.makedirs(node_dir)
        self.procs[port] = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                HOST,
                "--port",
                str(port),
                "--dir",
                node_dir,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
                "--appendonly",
                "no",
                "--save",
                "",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def running(masters: int = 3) -> Iterator[Cluster]:
    """A started cluster, stopped (every node, by PID) when the block ends."""
    cluster = Cluster(masters)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc; 0.0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0
