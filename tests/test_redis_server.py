"""The server on a real Redis Cluster: two ``serve`` processes that share nothing but the cluster, haproxy in front.

Each process has its own data dir; the statuses (``--store``) and the
accounts and tokens (``--state``) are both on the cluster.  So a token
issued by one process works on the other, a post made through one streams
to a client of the other, and a Mastodon client behind a round-robin
balancer cannot tell there are two.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("mastodon")

from tests.redis_cluster import Cluster, missing_reason
from tests.server_fixtures import serve_process
from tests.test_server_client import check_post_timelines_paging_follow_delete, check_streamed_update, client
from twittercore.server.testing import free_port

ADMIN = "redis-admin"
#: A post must reach a stream on the other process within this (the store's
#: poll alone, should its pub/sub wake-up be lost, answers in 0.2 s).
STREAM_BOUND = 3.0

_names = itertools.count()

HAPROXY_CFG = """\
global
    maxconn 256
    stats socket {stats} mode 600 level user
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    option http-no-delay
frontend web
    bind 127.0.0.1:{port}
    default_backend app
backend app
    balance roundrobin
    server a 127.0.0.1:{a}
    server b 127.0.0.1:{b}
"""


def name(base: str) -> str:
    """A username of its own per test: the module's servers share one account state."""
    return f"{base}{next(_names)}"


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"haproxy did not listen on {port} (exit code {proc.poll()})")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def deployment():
    """(url of A, url of B, url of haproxy, haproxy's stats socket) on one 3-master cluster."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    cluster = Cluster(3, 0, durable=False)  # fsync per write is for the fault tests
    work = Path(tempfile.mkdtemp(prefix="twittercore-redis-server-"))
    try:
        cluster.start()
        # A short heartbeat lets a closing stream client return at once (it waits for the next frame).
        shared = ("--store", cluster.url, "--state", cluster.url, "--admin-token", ADMIN, "--heartbeat", "0.5")
        ports = free_port(), free_port()
        with (
            serve_process(work / "a", ports[0], *shared),
            serve_process(work / "b", ports[1], *shared),
        ):
            lb, stats = free_port(), str(work / "haproxy.sock")
            cfg = work / "haproxy.cfg"
            cfg.write_text(HAPROXY_CFG.format(stats=stats, port=lb, a=ports[0], b=ports[1]))
            haproxy = subprocess.Popen(
                ["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                _wait_port(lb, haproxy)
                yield tuple(f"http://127.0.0.1:{p}" for p in (*ports, lb)) + (stats,)
            finally:
                _stop(haproxy)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


def _served(stats: str) -> dict[str, int]:
    """Responses each backend server gave through haproxy (its ``show stat`` CSV)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(stats)
        s.sendall(b"show stat\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    header, *rows = raw.decode().lstrip("# ").splitlines()
    columns = header.split(",")
    served = {}
    for row in rows:
        fields = dict(zip(columns, row.split(",")))
        if fields.get("pxname") == "app" and fields.get("svname") in ("a", "b"):
            served[fields["svname"]] = sum(int(fields[f"hrsp_{c}xx"] or 0) for c in range(1, 6))
    return served


def test_a_post_through_one_process_streams_to_a_client_of_the_other(deployment):
    a, b, _, _ = deployment
    listener_name, poster_name = name("listener"), name("poster")
    # Registered on different processes: the shared state makes each token good on both.
    alice = client(b, listener_name, ADMIN)
    bob = client(a, poster_name, ADMIN)
    took = check_streamed_update(alice, bob)  # alice streams from B, bob posts through A
    assert took < STREAM_BOUND, f"the update took {took:.2f} s to cross processes"


def test_a_client_behind_the_balancer_passes_the_client_checks(deployment):
    _, _, lb, stats = deployment
    before = _served(stats)
    check_post_timelines_paging_follow_delete(client(lb, name("alice"), ADMIN), client(lb, name("bob"), ADMIN))
    took = check_streamed_update(client(lb, name("carol"), ADMIN), client(lb, name("dave"), ADMIN))
    assert took < STREAM_BOUND
    after = _served(stats)
    # Round robin: both processes answered a good share, so the checks above crossed between them.
    assert all(after[s] - before.get(s, 0) >= 10 for s in ("a", "b")), (before, after)


def test_home_timelines_agree_through_both_processes(deployment):
    a, b, _, _ = deployment
    names = [name("reader"), name("writer"), name("writer")]
    reader = client(a, names[0], ADMIN)
    writers = [client(a, names[1], ADMIN), client(b, names[2], ADMIN)]
    for writer in writers:
        reader.account_follow(writer.me().id)
    posted = [writers[n % 2].status_post(f"post {n}").id for n in range(12)] + [reader.status_post("mine").id]
    token = reader.access_token
    homes = []
    for url in (a, b):
        seen, params = [], {"limit": 5}
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            while True:
                page = http.get("/api/v1/timelines/home", params=params)
                assert page.status_code == 200, page.text
                if not page.json():
                    break
                seen += [(s["id"], s["content"], s["account"]["username"]) for s in page.json()]
                params = {"limit": 5, "max_id": page.json()[-1]["id"]}
        homes.append(seen)
    assert homes[0] == homes[1]
    assert [id for id, _, _ in homes[0]] == list(reversed(posted))
