"""A real Redis Cluster for tests: redis-server processes on loopback, stopped by PID.

``Cluster(masters=3, replicas=0).start()`` picks free ports in 30000-30999
(each node's cluster bus is port + 10000), writes one config per node in a
temp dir, joins them with ``redis-cli --cluster create``, and waits for
``cluster_state:ok`` on every node.  AOF with ``appendfsync always`` is on, so
the fault tests see the durability the docs describe.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

HOST = "127.0.0.1"
PORTS = range(30000, 31000)


def missing_reason() -> str | None:
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
    out = subprocess.run(
        ["redis-cli", "-h", HOST, "-p", str(port), *args], capture_output=True, text=True, timeout=timeout
    )
    return out.stdout


class Cluster:
    def __init__(self, masters: int = 3, replicas: int = 0, durable: bool = True) -> None:
        self.masters, self.replicas, self.durable = masters, replicas, durable
        self.dir = tempfile.mkdtemp(prefix="twittercore-cluster-")
        self.procs: dict[int, subprocess.Popen] = {}

    @property
    def ports(self) -> list[int]:
        return list(self.procs)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{p}" for p in self.ports[: self.masters])

    def start(self) -> Cluster:
        count = self.masters * (1 + self.replicas)
        candidates = list(PORTS)
        random.shuffle(candidates)
        for port in candidates:
            if len(self.procs) == count:
                break
            if _free(port):
                self._spawn(port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(_cli(p, "PING").strip() == "PONG" for p in self.procs):
            time.sleep(0.05)
        nodes = [f"{HOST}:{p}" for p in self.procs]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        self.wait_ok()
        return self

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
                "1500",
                "--appendonly",
                "yes" if self.durable else "no",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                "--cluster-replica-validity-factor",
                "0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ok(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = [p for p, proc in self.procs.items() if proc.poll() is None]
            if all("cluster_state:ok" in _cli(p, "CLUSTER", "INFO") for p in alive):
                if all(_cli(p, "CLUSTER", "INFO").count("cluster_slots_ok:16384") for p in alive):
                    return
            time.sleep(0.1)
        raise RuntimeError("the test cluster did not reach cluster_state:ok")

    def master_ports(self) -> list[int]:
        import redis

        masters = []
        for p, proc in self.procs.items():
            if proc.poll() is not None:
                continue
            client = redis.Redis(host=HOST, port=p, socket_timeout=1)
            try:
                if client.info("replication").get("role") == "master":
                    masters.append(p)
            except redis.RedisError:
                pass  # stopped or unreachable: not serving as a master now
            finally:
                client.close()
        return masters

    def cli(self, port: int, *args: str) -> str:
        return _cli(port, *args)

    def flush(self) -> None:
        for port in self.master_ports():
            _cli(port, "FLUSHALL")

    def signal(self, port: int, sig: int) -> None:
        os.kill(self.procs[port].pid, sig)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)  # a stopped node cannot handle SIGTERM
                except ProcessLookupError:
                    pass
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster():
    """One 3-master cluster for the whole session; tests use their own namespaces."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = Cluster(3, 0, durable=False)  # fsync per write is for the fault tests
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
