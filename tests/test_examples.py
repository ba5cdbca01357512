"""The embeddings in examples/ run as a user would run them."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

import twittercore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


@contextlib.contextmanager
def _web_app(data: str):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "web_app.py"), "--data", data, "--port", str(port)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            while True:
                try:
                    client.get("/users/0/home")
                    break
                except httpx.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline, "the example did not start"
                    time.sleep(0.1)
            yield client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_web_app_posts_follows_and_reads(tmp_path):
    with _web_app(str(tmp_path / "feed")) as client:
        first = client.post("/users/2/posts", content=b"hello", headers={"Idempotency-Key": "a"})
        assert first.status_code == 201
        again = client.post("/users/2/posts", content=b"hello", headers={"Idempotency-Key": "a"})
        assert again.json() == first.json()
        client.post("/users/2/posts", content=b"world")
        assert client.post("/users/1/follows/2").json() == {"following": True, "changed": True}
        home = client.get("/users/1/home").json()
        assert [p["text"] for p in home] == ["world", "hello"]
        older = client.get("/users/1/home", params={"before": home[0]["id"]}).json()
        assert [p["text"] for p in older] == ["hello"]
        too_big = client.post("/users/2/posts", content=b"x" * (twittercore.MAX_PAYLOAD + 1))
        assert too_big.status_code == 422 and "larger than the maximum" in too_big.json()["error"]
        assert client.get(f"/users/{1 << 64}/home").status_code == 422
        assert len(client.get("/users/1/home").json()) == 2  # the rejections changed nothing


def test_notify_worker_resumes_where_it_stopped(tmp_path):
    data, cursor = str(tmp_path / "feed"), str(tmp_path / "cursor.json")
    with twittercore.open(data) as store:
        store.follow(1, 2)
        first = store.publish(2, b"one")
        store.publish(2, b"two")
        store.publish(3, b"not followed")
    env = _env()
    run = [
        sys.executable,
        str(EXAMPLES / "notify_worker.py"),
        "--data",
        data,
        "--sink",
        "1",
        "--cursor",
        cursor,
        "--seconds",
        "1.5",
    ]
    # No cursor yet: the worker starts from now, so it sees only what comes later.
    out = subprocess.run(run, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("handled 0 changes")
    with open(cursor, "w") as f:
        f.write(f'{{"after": {first.id - 1}}}')
    out = subprocess.run(run, capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.splitlines() == ["notify 1: 2 posted 'one'", "notify 1: 2 posted 'two'", "handled 2 changes"]
    with twittercore.open(data) as store:
        store.delete(first.id)
    out = subprocess.run(run, capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.splitlines() == [f"retract {first.id}", "handled 1 changes"]
