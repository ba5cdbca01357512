"""Kill -9 inside a keyed post and inside a registration; the retry succeeds exactly once.

The server runs as ``twittercore serve`` in a child process on LMDB with a
crash point armed (``TWITTERCORE_SERVER_CRASH_AT``, see
``twittercore.server.faults``): it SIGKILLs itself there, the client sees
the connection drop, the server is started again on the same data dir, and
the client retries exactly what it sent.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import httpx
import pytest

from tests.server_fixtures import serve_process
from twittercore.server.testing import free_port

ADMIN = "crash-admin"


def wait_dead(proc, seconds: float = 10) -> int:
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc.poll()


def register(url: str, name: str) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/accounts", data={"username": name}, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
    )


@pytest.mark.parametrize("point", ["post:before", "post:published"])
def test_keyed_post_survives_kill_9(tmp_path, point):
    data, port = tmp_path / "data", free_port()
    url = f"http://127.0.0.1:{port}"
    with serve_process(data, port, "--admin-token", ADMIN):
        token = register(url, "alice").json()["access_token"]
    auth = {"Authorization": f"Bearer {token}", "Idempotency-Key": "offline-queue-1"}
    with serve_process(data, port, "--admin-token", ADMIN, env={"TWITTERCORE_SERVER_CRASH_AT": point}) as proc:
        with pytest.raises(httpx.TransportError):
            httpx.post(f"{url}/api/v1/statuses", data={"status": "exactly once"}, headers=auth, timeout=10)
        assert wait_dead(proc) == -signal.SIGKILL
    with serve_process(data, port, "--admin-token", ADMIN):
        first = httpx.post(f"{url}/api/v1/statuses", data={"status": "exactly once"}, headers=auth, timeout=10)
        assert first.status_code == 200, first.text  # not 409: no key is left blocked
        again = httpx.post(f"{url}/api/v1/statuses", data={"status": "exactly once"}, headers=auth, timeout=10)
        assert again.json()["id"] == first.json()["id"]
        home = httpx.get(f"{url}/api/v1/timelines/home", headers={"Authorization": auth["Authorization"]}).json()
        assert [s["content"] for s in home] == ["<p>exactly once</p>"]


@pytest.mark.parametrize("point", ["register:pending", "register:followed"])
def test_registration_survives_kill_9(tmp_path, point):
    data, port = tmp_path / "data", free_port()
    url = f"http://127.0.0.1:{port}"
    with serve_process(data, port, "--admin-token", ADMIN, env={"TWITTERCORE_SERVER_CRASH_AT": point}) as proc:
        with pytest.raises(httpx.TransportError):
            register(url, "alice")
        assert wait_dead(proc) == -signal.SIGKILL
    with serve_process(data, port, "--admin-token", ADMIN):
        # The half-made account is invisible until its registration completes ...
        assert httpx.get(f"{url}/api/v1/accounts/lookup", params={"acct": "alice"}).status_code == 404
        retry = register(url, "alice")
        assert retry.status_code == 200, retry.text  # the username is not burnt
        assert register(url, "alice").status_code == 422  # ... and completes once
        auth = {"Authorization": f"Bearer {retry.json()['access_token']}"}
        me = httpx.get(f"{url}/api/v1/accounts/verify_credentials", headers=auth).json()
        assert me["username"] == "alice" and me["following_count"] == 0
        # The self-edge exists: her own post reaches her home timeline.
        httpx.post(f"{url}/api/v1/statuses", data={"status": "mine"}, headers=auth).raise_for_status()
        assert len(httpx.get(f"{url}/api/v1/timelines/home", headers=auth).json()) == 1
        found = httpx.get(f"{url}/api/v2/search", params={"q": "alice", "type": "accounts"}).json()["accounts"]
        assert [a["username"] for a in found] == ["alice"]


@pytest.mark.slow
def test_random_kills_during_keyed_posts(tmp_path):
    """Kill -9 from outside at random moments during keyed posts with retries: every post exists exactly once."""
    posts = int(os.environ.get("TWITTERCORE_CRASH_POSTS", "1000"))
    rng = random.Random(12)
    data, port = tmp_path / "data", free_port()
    url = f"http://127.0.0.1:{port}"
    with serve_process(data, port, "--admin-token", ADMIN):
        token = register(url, "alice").json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    done, kills, deadline = 0, 0, time.monotonic() + 600
    while done < posts and time.monotonic() < deadline:
        with serve_process(data, port) as proc:
            victim = done + rng.randint(0, 80)  # the post during which this life ends
            with httpx.Client(base_url=url, timeout=5) as c:
                while done < posts:
                    if done == victim:
                        # SIGKILL a moment after the request leaves: before, inside or after the publish.
                        threading.Timer(rng.uniform(0, 0.01), os.kill, (proc.pid, signal.SIGKILL)).start()
                    try:
                        r = c.post(
                            "/api/v1/statuses",
                            data={"status": f"post {done}"},
                            headers={**auth, "Idempotency-Key": f"k{done}"},
                        )
                    except httpx.TransportError:
                        break  # died in flight: retry this same post (same key) on the next life
                    assert r.status_code == 200, r.text
                    done += 1
                    if done > victim:
                        break  # the kill came after the response: the next life
            wait_dead(proc)
            kills += 1
    assert done == posts, f"only {done} of {posts} posts in the time allowed"
    with serve_process(data, port):
        texts: list[str] = []
        link = f"{url}/api/v1/accounts/1/statuses?limit=40"
        while link:
            r = httpx.get(link)
            page = r.json()
            if not page:
                break
            texts += [s["content"] for s in page]
            link = r.links.get("next", {}).get("url")
    assert sorted(texts) == sorted(f"<p>post {n}</p>" for n in range(posts)), "a post is missing or doubled"
    assert kills > 1
    print(f"\nrandom kills: {posts} keyed posts, {kills} kill -9s, {len(texts)} statuses, each exactly once")
