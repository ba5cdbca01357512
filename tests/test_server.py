"""The example Mastodon-compatible server over real HTTP on loopback (httpx).

Each test runs against the in-memory reference store and the LMDB store; the
server runs in a thread of this process on a free port and is always stopped.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import twittercore

ROOT = Path(__file__).resolve().parents[1]

from tests.server_fixtures import serve_process, server_fixture  # noqa: E402
from twittercore.server.testing import free_port, running_server  # noqa: E402

ADMIN = "test-admin-token"

server = server_fixture(ADMIN, heartbeat=0.3)


def register(client: httpx.Client, name: str) -> tuple[str, dict[str, str]]:
    """Create an account through the admin endpoint; returns (id, auth headers)."""
    r = client.post("/api/v1/accounts", data={"username": name}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    me = client.get("/api/v1/accounts/verify_credentials", headers=headers)
    assert me.status_code == 200 and me.json()["username"] == name
    return me.json()["id"], headers


def post(client: httpx.Client, headers: dict[str, str], text: str, **extra) -> dict:
    r = client.post("/api/v1/statuses", data={"status": text}, headers={**headers, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def test_post_read_delete_and_entities(server):
    with httpx.Client(base_url=server, timeout=10) as c:
        alice, a = register(c, "alice")
        status = post(c, a, "<script>alert(1)</script> & more\n\nsecond")
        assert isinstance(status["id"], str) and status["account"]["id"] == alice
        assert status["content"] == "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; more</p><p>second</p>"
        assert status["created_at"].endswith("Z") and status["visibility"] == "public"
        got = c.get(f"/api/v1/statuses/{status['id']}").json()
        assert got["id"] == status["id"] and got["account"]["statuses_count"] == 1
        # Own posts are in the own home timeline (the hidden self-edge) ...
        assert [s["id"] for s in c.get("/api/v1/timelines/home", headers=a).json()] == [status["id"]]
        # ... and the self-edge shows nowhere.
        account = c.get(f"/api/v1/accounts/{alice}").json()
        assert account["followers_count"] == 0 and account["following_count"] == 0
        assert c.get(f"/api/v1/accounts/{alice}/followers").json() == []
        deleted = c.delete(f"/api/v1/statuses/{status['id']}", headers=a)
        assert deleted.status_code == 200 and deleted.json()["text"].startswith("<script>")
        assert c.get(f"/api/v1/statuses/{status['id']}").status_code == 404
        assert c.delete(f"/api/v1/statuses/{status['id']}", headers=a).json() == {"error": "Record not found"}
        assert c.get("/api/v1/timelines/home", headers=a).json() == []


def test_validation_errors(server):
    with httpx.Client(base_url=server, timeout=10) as c:
        _, a = register(c, "alice")
        assert c.post("/api/v1/statuses", data={"status": "  "}, headers=a).status_code == 422
        too_long = c.post("/api/v1/statuses", data={"status": "x" * 501}, headers=a)
        assert too_long.status_code == 422 and "500" in too_long.json()["error"]
        assert c.post("/api/v1/statuses", data={"status": "x" * 500}, headers=a).status_code == 200
        assert c.post("/api/v1/statuses", json={"status": "json body"}, headers=a).status_code == 200
        assert c.post("/api/v1/statuses", data={"status": "dm", "visibility": "direct"}, headers=a).status_code == 422
        assert c.get("/api/v1/timelines/home?max_id=abc", headers=a).status_code == 400
        assert c.get("/api/v1/accounts/999999").status_code == 404
        assert c.get("/api/v1/accounts/not-a-number").json() == {"error": "Record not found"}
        assert c.get("/api/v1/no/such/route").status_code == 404
        dup = c.post("/api/v1/accounts", data={"username": "alice"}, headers={"Authorization": f"Bearer {ADMIN}"})
        assert dup.status_code == 422 and "taken" in dup.json()["error"]


def test_auth_401_403(server):
    with httpx.Client(base_url=server, timeout=10) as c:
        alice, a = register(c, "alice")
        bob, b = register(c, "bob")
        mine = post(c, a, "alice's")
        bad = {"Authorization": "Bearer not-a-token"}
        for headers in ({}, bad):
            assert c.post("/api/v1/statuses", data={"status": "x"}, headers=headers).status_code == 401
            assert c.delete(f"/api/v1/statuses/{mine['id']}", headers=headers).status_code == 401
            assert c.post(f"/api/v1/accounts/{alice}/follow", headers=headers).status_code == 401
            assert c.post(f"/api/v1/accounts/{alice}/unfollow", headers=headers).status_code == 401
            assert c.get("/api/v1/timelines/home", headers=headers).status_code == 401
            assert c.get("/api/v1/accounts/verify_credentials", headers=headers).status_code == 401
            assert c.get("/api/v1/streaming/user", headers=headers).status_code == 401
        # Bob cannot delete Alice's status, and the status survives.
        forbidden = c.delete(f"/api/v1/statuses/{mine['id']}", headers=b)
        assert forbidden.status_code == 403 and "error" in forbidden.json()
        assert c.get(f"/api/v1/statuses/{mine['id']}").status_code == 200
        # Nobody edits the self-edge.
        assert c.post(f"/api/v1/accounts/{bob}/unfollow", headers=b).status_code == 403
        # Registration needs the admin token; a user token is not one.
        assert c.post("/api/v1/accounts", data={"username": "mallory"}).status_code == 401
        assert c.post("/api/v1/accounts", data={"username": "mallory"}, headers=a).status_code == 403
        # A post acts as the token's account whatever the body claims.
        sneaky = c.post("/api/v1/statuses", data={"status": "hi", "account_id": alice}, headers=b).json()
        assert sneaky["account"]["id"] == bob


def test_registration_closed_without_admin_token():
    with running_server() as url, httpx.Client(base_url=url) as c:
        r = c.post("/api/v1/accounts", data={"username": "x"}, headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403 and "closed" in r.json()["error"]


def test_idempotency_key(server):
    with httpx.Client(base_url=server, timeout=10) as c:
        _, a = register(c, "alice")
        first = post(c, a, "once", **{"Idempotency-Key": "k-1"})
        again = post(c, a, "once", **{"Idempotency-Key": "k-1"})
        other = post(c, a, "once", **{"Idempotency-Key": "k-2"})
        assert first["id"] == again["id"] != other["id"]

    async def concurrent() -> set[str]:
        async with httpx.AsyncClient(base_url=server, timeout=10) as ac:
            rs = await asyncio.gather(
                *(
                    ac.post("/api/v1/statuses", data={"status": "race"}, headers={**a, "Idempotency-Key": "k-3"})
                    for _ in range(8)
                )
            )
        assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
        return {r.json()["id"] for r in rs}

    assert len(asyncio.run(concurrent())) == 1
    with httpx.Client(base_url=server) as c:
        texts = [s["content"] for s in c.get("/api/v1/timelines/home", headers=a).json()]
    assert texts.count("<p>once</p>") == 2 and texts.count("<p>race</p>") == 1


def test_paging_with_link_headers(server):
    with httpx.Client(base_url=server, timeout=10) as c:
        _, a = register(c, "alice")
        bob, b = register(c, "bob")
        c.post(f"/api/v1/accounts/{bob}/follow", headers=a).raise_for_status()
        ids = [post(c, b if n % 2 else a, f"post {n}")["id"] for n in range(7)]
        newest_first = ids[::-1]
        seen, url = [], "/api/v1/timelines/home?limit=3"
        while url:
            r = c.get(url, headers=a)
            page = [s["id"] for s in r.json()]
            if not page:
                break
            seen += page
            url = r.links.get("next", {}).get("url")
        assert seen == newest_first
        # rel=prev (min_id) pages towards newer statuses, still newest first.
        r = c.get(f"/api/v1/timelines/home?limit=2&max_id={ids[2]}", headers=a)
        assert [s["id"] for s in r.json()] == [ids[1], ids[0]]  # max_id is exclusive
        prev = c.get(r.links["prev"]["url"], headers=a)
        assert [s["id"] for s in prev.json()] == [ids[3], ids[2]]
        since = c.get(f"/api/v1/timelines/home?since_id={ids[4]}", headers=a)
        assert [s["id"] for s in since.json()] == [ids[6], ids[5]]
        assert c.get("/api/v1/timelines/home?limit=0", headers=a).status_code == 200  # clamped, as Mastodon
        account = c.get(f"/api/v1/accounts/{bob}/statuses?limit=2").json()
        assert [s["id"] for s in account] == [ids[5], ids[3]]


def test_follow_unfollow_lists(server):
    with httpx.Client(base_url=server, timeout=10) as c:
        alice, a = register(c, "alice")
        fans = [register(c, f"fan{n}") for n in range(5)]
        for _, h in fans:
            rel = c.post(f"/api/v1/accounts/{alice}/follow", headers=h).json()
            assert rel["id"] == alice and rel["following"] is True and rel["followed_by"] is False
        assert c.post(f"/api/v1/accounts/{fans[0][0]}/follow", headers=a).json()["followed_by"] is True
        seen, url = [], f"/api/v1/accounts/{alice}/followers?limit=2"
        while url:
            r = c.get(url)
            seen += [x["id"] for x in r.json()]
            url = r.links.get("next", {}).get("url")
        assert sorted(seen, key=int) == sorted((i for i, _ in fans), key=int) and len(seen) == 5
        assert [x["id"] for x in c.get(f"/api/v1/accounts/{alice}/following").json()] == [fans[0][0]]
        assert c.get(f"/api/v1/accounts/{alice}").json()["followers_count"] == 5
        rel = c.post(f"/api/v1/accounts/{alice}/unfollow", headers=fans[1][1]).json()
        assert rel["following"] is False
        assert c.get(f"/api/v1/accounts/{alice}").json()["followers_count"] == 4
        assert c.post("/api/v1/accounts/424242/follow", headers=a).status_code == 404


def read_events(lines, want: int, seconds: float = 10.0) -> list[tuple[str, str]]:
    """(event, data) pairs from an SSE response's ``iter_lines()``, comments as ("comment", text)."""
    got: list[tuple[str, str]] = []
    event: dict[str, str] = {}
    deadline = time.monotonic() + seconds
    for line in lines:
        if line.startswith(":"):
            got.append(("comment", line[1:]))
        elif line == "":
            if "event" in event:
                got.append((event["event"], event.get("data", "")))
            event = {}
        else:
            key, _, value = line.partition(": ")
            event[key] = value
        if len([g for g in got if g[0] != "comment"]) >= want or time.monotonic() > deadline:
            break
    return got


def test_streaming_update_delete_heartbeat(server):
    with httpx.Client(base_url=server, timeout=10) as c:
        alice, a = register(c, "alice")
        bob, b = register(c, "bob")
        c.post(f"/api/v1/accounts/{bob}/follow", headers=a).raise_for_status()
        with c.stream("GET", "/api/v1/streaming/user", headers=a) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            time.sleep(0.7)  # a heartbeat period with nothing to say
            status = post(c, b, "streamed")
            got = read_events(lines, want=1)
            # Delete after the update arrived: a status deleted before the
            # stream reads it vanishes, and only its delete notice is sent.
            c.delete(f"/api/v1/statuses/{status['id']}", headers=b).raise_for_status()
            got += read_events(lines, want=1)
        assert ("comment", "thump") in got
        events = [g for g in got if g[0] != "comment"]
        assert events[0][0] == "update" and f'"id":"{status["id"]}"' in events[0][1]
        assert events[1] == ("delete", status["id"])
        # The access_token query parameter works too (EventSource cannot set headers).
        token = a["Authorization"].split()[1]
        with c.stream("GET", f"/api/v1/streaming/user?access_token={token}") as stream:
            assert stream.status_code == 200


def test_streaming_resumes_from_last_event_id(server):
    with httpx.Client(base_url=server, timeout=10) as c:
        _, a = register(c, "alice")
        first = post(c, a, "one")
        second = post(c, a, "two")
        with c.stream("GET", "/api/v1/streaming/user", headers={**a, "Last-Event-ID": first["id"]}) as stream:
            lines = stream.iter_lines()
            got = [g for g in read_events(lines, want=1) if g[0] != "comment"]
        assert got[0][0] == "update" and f'"id":"{second["id"]}"' in got[0][1]


def test_create_account_command(tmp_path):
    """`python -m twittercore.server create-account` makes a usable account."""
    data = tmp_path / "data"
    made = subprocess.run(
        [sys.executable, "-m", "twittercore.server", "create-account", "carol", "--data", str(data)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.split("token ")[1].strip()
    again = subprocess.run(
        [sys.executable, "-m", "twittercore.server", "create-account", "carol", "--data", str(data)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "taken" in again.stderr
    target = str(data / "store")
    with running_server(target, str(data / "server.sqlite3")) as url, httpx.Client(base_url=url) as c:
        me = c.get("/api/v1/accounts/verify_credentials", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["username"] == "carol"
        # The self-edge was made too: carol's own post is in her home timeline.
        post(c, {"Authorization": f"Bearer {token}"}, "mine")
        assert len(c.get("/api/v1/timelines/home", headers={"Authorization": f"Bearer {token}"}).json()) == 1


def test_two_processes_share_one_store(tmp_path):
    """A post made through one server process streams to a client of another."""
    data = tmp_path / "data"
    port1, port2 = free_port(), free_port()
    with serve_process(data, port1, "--create-account", "alice", "--create-account", "bob") as p1:
        lines = []
        while len(lines) < 2:
            line = p1.stdout.readline()
            if line.startswith("account "):
                lines.append(line)
        tokens = {ln.split()[1]: ln.split("token=")[1].strip() for ln in lines}
        a = {"Authorization": f"Bearer {tokens['alice']}"}
        b = {"Authorization": f"Bearer {tokens['bob']}"}
        with serve_process(data, port2):
            one = httpx.Client(base_url=f"http://127.0.0.1:{port1}", timeout=10)
            two = httpx.Client(base_url=f"http://127.0.0.1:{port2}", timeout=10)
            bob = two.get("/api/v1/accounts/verify_credentials", headers=b).json()["id"]
            two.post(f"/api/v1/accounts/{bob}/follow", headers=a).raise_for_status()
            with two.stream("GET", "/api/v1/streaming/user", headers=a) as stream:
                lines = stream.iter_lines()
                status = post(one, b, "across processes")
                got = [g for g in read_events(lines, want=1) if g[0] != "comment"]
            assert got and got[0][0] == "update" and f'"id":"{status["id"]}"' in got[0][1]
            assert two.get(f"/api/v1/statuses/{status['id']}").json()["content"] == "<p>across processes</p>"

            # A post retried with one Idempotency-Key through both processes at once is one status.
            async def retries() -> set[str]:
                async with httpx.AsyncClient(timeout=10) as ac:
                    rs = await asyncio.gather(*(
                        ac.post(f"http://127.0.0.1:{port}/api/v1/statuses", data={"status": "retried"},
                                headers={**b, "Idempotency-Key": "same"})
                        for port in (port1, port2) * 4
                    ))  # fmt: skip
                assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
                return {r.json()["id"] for r in rs}

            assert len(asyncio.run(retries())) == 1
            texts = [x["content"] for x in one.get(f"/api/v1/accounts/{bob}/statuses").json()]
            assert texts.count("<p>retried</p>") == 1
            one.close()
            two.close()


def test_idle_streams_cost_nothing(monkeypatch):
    """With streams open and nothing posted, the hub makes no store reads: it waits in Store.wait, it does not poll."""
    from twittercore.backends.memory import MemoryStore

    calls = {"changes": 0, "last": 0}
    real_changes, real_last = MemoryStore._changes, MemoryStore._last_seq

    def changes(self, *args):
        calls["changes"] += 1
        return real_changes(self, *args)

    def last(self):
        calls["last"] += 1
        return real_last(self)

    monkeypatch.setattr(MemoryStore, "_changes", changes)
    monkeypatch.setattr(MemoryStore, "_last_seq", last)
    with running_server(admin_token=ADMIN, heartbeat=5) as url, httpx.Client(base_url=url, timeout=10) as c:
        _, a = register(c, "alice")
        streams = [c.stream("GET", "/api/v1/streaming/user", headers=a) for _ in range(3)]
        try:
            lines = [s.__enter__().iter_lines() for s in streams]
            for it in lines:
                assert next(it) == ":)"
            time.sleep(0.3)  # let the joins settle
            before = dict(calls)
            time.sleep(1.5)
            assert calls["changes"] == before["changes"], "the hub read changes with nothing posted"
            assert calls["last"] - before["last"] <= 1, "the hub polled the store's position"
            post(c, a, "wake up")
            got = [read_events(it, want=1) for it in lines]
            assert all(any(e[0] == "update" for e in g) for g in got)
            assert calls["changes"] - before["changes"] >= 3  # one wake-up, one read per subscriber
        finally:
            for s in streams:
                s.__exit__(None, None, None)


def test_serve_store_option(tmp_path):
    """`serve --store TARGET` puts statuses in any twittercore.open target; accounts stay in --data."""
    data, elsewhere, port = tmp_path / "data", tmp_path / "elsewhere", free_port()
    with serve_process(data, port, "--store", str(elsewhere), "--create-account", "alice") as proc:
        line = ""
        while not line.startswith("account "):
            line = proc.stdout.readline()
        auth = {"Authorization": f"Bearer {line.split('token=')[1].strip()}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            post(c, auth, "stored elsewhere")
            assert len(c.get("/api/v1/timelines/home", headers=auth).json()) == 1
    assert (elsewhere / "data.mdb").exists() and not (data / "store").exists()
    assert (data / "server.sqlite3").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "twittercore", "serve", "--data", str(data), "--port", str(port), "--store", "nosuch+scheme://127.0.0.1:1"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "--store nosuch+scheme://" in bad.stderr


def _listening_inodes(pid: int, port: int) -> set[str]:
    """Inodes of the TCP sockets listening on ``port`` that process ``pid`` holds."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    listening.add(fields[9])
    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            held.add(target[8:-1])
    return listening & held


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing is Linux's")
def test_workers_listen_each_on_their_own_socket_and_share_connections(tmp_path):
    from collections import Counter

    from twittercore.lab.supervisor import children

    port = free_port()
    with serve_process(tmp_path / "d", port, "--workers", "2", "--admin-token", "T") as proc:
        deadline = time.monotonic() + 20
        while len(workers := children(proc.pid)) < 2 or not all(_listening_inodes(w, port) for w in workers):
            assert time.monotonic() < deadline, "two workers never listened"
            time.sleep(0.1)
        # One listener each (a shared socket would be one inode in both).
        inodes = [_listening_inodes(w, port) for w in workers]
        assert len(inodes[0] | inodes[1]) == 2
        served: Counter[str] = Counter()
        for _ in range(64):  # 64 connections, one request each: the kernel hashes each to a listener
            with httpx.Client() as client:
                served[client.get(f"http://127.0.0.1:{port}/api/v1/instance").headers["x-twittercore-worker"]] += 1
        assert set(served) == {str(w) for w in workers}
        assert max(served.values()) <= 48  # an even split is 32; P(> 48) is about 5e-5


def test_serve_fanout_option_sets_the_store_strategy(tmp_path):
    import twittercore

    port = free_port()
    with serve_process(tmp_path / "d", port, "--fanout", "write", "--admin-token", "T"):
        r = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/accounts", data={"username": "w"}, headers={"Authorization": "Bearer T"}
        )
        assert r.status_code == 200
    with twittercore.open(str(tmp_path / "d" / "store")) as store:
        assert store.fanout == "write"
    bad = subprocess.run(
        [sys.executable, "-m", "twittercore", "serve", "--data", str(tmp_path / "e"), "--fanout", "sideways"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--fanout" in bad.stderr


def test_a_remote_store_s_slow_read_stalls_only_its_own_request():
    # A Redis store's reads wait on the network: the server runs them in its
    # thread pool, so one stuck read (a partitioned master) leaves the worker
    # serving others.  (A local store's reads run inline: microseconds.)
    release, entered = threading.Event(), threading.Event()
    store = twittercore.open(":memory:")
    store.remote = True
    home = store.home

    def slow_home(sink, **page):
        entered.set()
        release.wait(30)
        return home(sink, **page)

    with (
        running_server(lambda: store, admin_token=ADMIN, heartbeat=5) as url,
        httpx.Client(base_url=url, timeout=20) as c,
    ):
        _, headers = register(c, "alice")
        status = post(c, headers, "hello")
        store.home = slow_home
        answers = []

        def read_home():
            with httpx.Client(base_url=url, timeout=20) as other:
                answers.append(other.get("/api/v1/timelines/home", headers=headers).json())

        stuck = threading.Thread(target=read_home)
        stuck.start()
        try:
            assert entered.wait(10)
            # Served while the home read is stuck (inline, they would wait for it).
            assert c.get(f"/api/v1/statuses/{status['id']}", timeout=5).json()["id"] == status["id"]
            assert c.get(f"/api/v1/accounts/{status['account']['id']}/statuses", timeout=5).status_code == 200
        finally:
            release.set()
            stuck.join(10)
        assert [s["id"] for s in answers[0]] == [status["id"]]


def test_a_remote_store_s_streams_are_pulled_off_the_event_loop():
    store = twittercore.open(":memory:")
    store.remote = True  # as a Redis store says
    pulled_in = set()
    changes = store.changes

    def recorded(*args, **kwargs):
        pulled_in.add(threading.current_thread().name)
        return changes(*args, **kwargs)

    store.changes = recorded
    with (
        running_server(lambda: store, admin_token=ADMIN, heartbeat=5) as url,
        httpx.Client(base_url=url, timeout=10) as c,
    ):
        alice, a = register(c, "alice")
        bob, b = register(c, "bob")
        c.post(f"/api/v1/accounts/{bob}/follow", headers=a).raise_for_status()
        early = post(c, b, "before the stream")
        with c.stream("GET", "/api/v1/streaming/user", headers=a) as stream:
            lines = stream.iter_lines()
            status = post(c, b, "streamed")
            got = read_events(lines, want=1)
        with c.stream("GET", "/api/v1/streaming/user", headers={**a, "Last-Event-ID": early["id"]}) as stream:
            resumed = read_events(stream.iter_lines(), want=1)  # the catch-up pull of a resuming client
    for events in (got, resumed):
        (update,) = [g for g in events if g[0] != "comment"]
        assert update[0] == "update" and f'"id":"{status["id"]}"' in update[1]
    assert pulled_in and all(name.startswith("twittercore-pump") for name in pulled_in), pulled_in
