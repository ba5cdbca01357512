"""The example server as a pytest fixture, on the memory store and on LMDB."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]

from twittercore.server.testing import running_server  # noqa: E402


def server_fixture(admin_token: str, heartbeat: float):
    """A fixture yielding the base URL of a live server, once per backend."""

    @pytest.fixture(params=["memory", "lmdb"])
    def server(request, tmp_path):
        if request.param == "memory":
            target, state = ":memory:", ":memory:"
        else:
            target, state = str(tmp_path / "store"), str(tmp_path / "server.sqlite3")
        with running_server(target, state, admin_token=admin_token, heartbeat=heartbeat) as url:
            yield url

    return server


@contextlib.contextmanager
def serve_process(data: Path, port: int, *extra: str, env: dict[str, str] | None = None):
    """``twittercore serve`` as a child process on ``port``; yields the Popen once it answers; always stops."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twittercore",
            "serve",
            "--data",
            str(data),
            "--port",
            str(port),
            "--no-durable",
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/streaming/health", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"serve did not start: {proc.stdout.read() if proc.poll() is not None else ''}"
                    ) from None
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
