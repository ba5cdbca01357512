"""Start a few ``twittercore node`` processes on loopback free ports (tests and benchmarks/bench_nodes.py).

    with NodeCluster(3, tmp_dir) as cluster:
        alice = cluster.create_user(1, "alice")
        cluster.kill(2); cluster.start(2)

Processes are stopped by their PID on exit, even when the body failed.

With ``netns=True`` (root only) every node runs in a network namespace of its
own with two links, ``front`` (the clients: this process) and ``back`` (the
other nodes), made by :mod:`twittercore.lab.netns`; ``partition([4, 5])``
splits the back network so nodes 4 and 5 reach each other and not the rest,
``partition([3])`` cuts node 3's back link, ``heal()`` undoes either.  The
namespaces are removed on exit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx

__all__ = ["NodeCluster", "free_ports"]

TOKEN = "node-test-token"


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class NodeCluster:
    def __init__(
        self,
        count: int,
        data: str,
        *,
        consistency: str = "strict",
        staleness_ms: int = 1000,
        env: dict[str, str] | None = None,
        netns: bool = False,
    ) -> None:
        self.count, self.data = count, str(data)
        self.ports = free_ports(count)
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.peer_urls = self.urls
        self.net: Any = None
        self._cut: tuple[str, list[str]] | None = None
        if netns:
            from ..lab.config import NetnsSpec
            from ..lab.netns import Net

            self.net = Net(["front", "back"], [NetnsSpec(f"host{i}", ["front", "back"]) for i in range(1, count + 1)])
        self.consistency, self.staleness_ms = consistency, staleness_ms
        self.env = env or {}
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.joined: dict[int, int] = {}  # node started with --join -> the node it joined through
        self.http = httpx.Client(timeout=10, headers={"authorization": f"Bearer {TOKEN}"})

    def __enter__(self) -> NodeCluster:
        try:
            if self.net is not None:
                self.net.create(lambda: None)
                self.urls = [f"http://{self.net.addr(f'host{i}.front')}:{p}" for i, p in enumerate(self.ports, 1)]
                self.peer_urls = [f"http://{self.net.addr(f'host{i}.back')}:{p}" for i, p in enumerate(self.ports, 1)]
            for i in range(1, self.count + 1):
                self.start(i, wait=False)
            for i in range(1, self.count + 1):
                self.wait_healthy(i)
            self.wait_meshed()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()  # first: an open keep-alive connection makes uvicorn wait out its grace period
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()  # all at once: their graceful shutdowns overlap
        for i in list(self.procs):
            self.stop(i)
        if self.net is not None:
            from ..lab.netns import destroy

            destroy(self.net.made)

    # -- processes

    def argv(self, i: int) -> list[str]:
        prefix = self.net.exec_prefix(f"host{i}") if self.net is not None else []
        return [
            *prefix,
            sys.executable,
            "-m",
            "twittercore",
            "node",
            "--data",
            os.path.join(self.data, f"node{i}"),
            "--port",
            str(self.ports[i - 1]),
            "--name",
            f"node{i}",
            "--admin-token",
            TOKEN,
            "--host",
            "0.0.0.0" if self.net is not None else "127.0.0.1",
            *(
                ["--join", self.peer_urls[self.joined[i] - 1], "--advertise", self.peer_urls[i - 1]]
                if i in self.joined
                else ["--peers", ",".join(self.peer_urls[: self.count])]
            ),
            "--consistency",
            self.consistency,
            "--staleness-ms",
            str(self.staleness_ms),
        ]

    def start(self, i: int, wait: bool = True, env: dict[str, str] | None = None) -> None:
        self.procs[i] = subprocess.Popen(
            self.argv(i), env={**os.environ, **self.env, **(env or {})}, stdin=subprocess.DEVNULL
        )
        if wait:
            self.wait_healthy(i)

    def wait_healthy(self, i: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.procs[i].poll() is not None:
                raise RuntimeError(f"node{i} exited with {self.procs[i].returncode}")
            try:
                if self.http.get(self.urls[i - 1] + "/api/v1/instance", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"node{i} did not become healthy")
            time.sleep(0.05)

    def wait_meshed(self, timeout: float = 10) -> None:
        """Until every node has heard every other within 200 ms (a bounded node counts a silent one out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            heard = [self.stats(i)["heard_ms_ago"] for i in self.procs]
            if all(ago < 200 for h in heard for ago in h.values()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"nodes did not hear each other: {heard}")

    def join(self, via: int = 1, wait: bool = True) -> int:
        """Start one more node (loopback only) that knows nothing but ``via``'s URL (``--join``); its index."""
        if self.net is not None:
            raise RuntimeError("join() runs on loopback; the namespaces are made once, at start")
        i = len(self.urls) + 1
        (port,) = free_ports(1)
        self.ports.append(port)
        self.urls.append(f"http://127.0.0.1:{port}")
        self.joined[i] = via
        self.start(i, wait=wait)
        return i

    def move(self, i: int) -> None:
        """Restart a joined node on a new port: it announces its new URL (a higher incarnation) by gossip."""
        self.stop(i)
        (port,) = free_ports(1)
        self.ports[i - 1] = port
        self.urls[i - 1] = f"http://127.0.0.1:{port}"
        self.start(i)

    def kill(self, i: int) -> None:
        proc = self.procs.pop(i)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self, i: int) -> None:
        proc = self.procs.pop(i)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    # -- client calls

    def _call(self, method: str, i: int, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, self.urls[i - 1] + path, **kwargs)
        response.raise_for_status()
        return response.json()

    def create_user(self, i: int, name: str) -> int:
        return int(self._call("POST", i, "/api/v1/users", json={"name": name})["id"])

    def follow(self, i: int, sink: int, source: int) -> None:
        self._call("POST", i, "/api/v1/follow", json={"sink": sink, "source": source})

    def unfollow(self, i: int, sink: int, source: int) -> None:
        self._call("POST", i, "/api/v1/unfollow", json={"sink": sink, "source": source})

    def publish(self, i: int, source: int, text: str) -> dict[str, Any]:
        event: dict[str, Any] = self._call("POST", i, "/api/v1/publish", json={"source": source, "text": text})
        return event

    def home(self, i: int, user: int, limit: int = 200, **params: Any) -> list[dict[str, Any]]:
        page: list[dict[str, Any]] = self._call(
            "GET", i, "/node/v1/home", params={"user": user, "limit": limit, **params}
        )
        return page

    def home_all(self, i: int, user: int) -> list[dict[str, Any]]:
        """Every page, newest first, paging down by max_id."""
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {}
        while True:
            page = self.home(i, user, **params)
            out += page
            if len(page) < 200:
                return out
            params = {"max_id": page[-1]["id"]}

    def stats(self, i: int) -> dict[str, Any]:
        stats: dict[str, Any] = self._call("GET", i, "/node/v1/stats")
        return stats

    def isolate(self, i: int, on: bool = True) -> None:
        self._call("POST", i, "/node/v1/admin/isolate", json={"isolated": on})

    # -- real partitions (netns=True)

    def partition(self, group: list[int]) -> None:
        """Cut the back network: one node's link down, or several nodes split off onto a side of their own."""
        if self.net is None:
            raise RuntimeError("partition() needs NodeCluster(..., netns=True); isolate() is the in-process switch")
        if self._cut is not None:
            raise RuntimeError("already partitioned: heal() first")
        target = "+".join(f"host{i}.back" for i in group)
        if len(group) == 1:
            self.net.set_links(self.net.host_sides(target), False)
            self._cut = (target, [])
        else:
            self._cut = (target, self.net.split(target))

    def heal(self) -> None:
        if self._cut is None:
            return
        target, sides = self._cut
        self._cut = None
        if sides:
            self.net.join(target, sides)
        else:
            self.net.set_links(self.net.host_sides(target), True)
