"""A throwaway ``redis-server`` for the Redis baseline: loopback, free port, no persistence.

Started by the parent around one child run and stopped after it, so every
run starts empty and a killed child never leaves a server behind.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

HOST = "127.0.0.1"


def missing_reason() -> str | None:
    """Why the Redis baseline cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (`make redis`, or apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install 'twittercore[redis]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def running(startup_timeout: float = 10.0) -> Iterator[str]:
    """Yield ``redis://127.0.0.1:<port>/0`` of a fresh server; stop it afterwards."""
    with tempfile.TemporaryDirectory(prefix="twittercore-redis-") as tmp:
        last_error = "no attempt"
        for _attempt in range(3):  # another process may take the free port first
            port = _free_port()
            proc = subprocess.Popen(
                [
                    "redis-server",
                    "--bind",
                    HOST,
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    tmp,
                    "--daemonize",
                    "no",
                    "--loglevel",
                    "warning",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            deadline = time.monotonic() + startup_timeout
            while time.monotonic() < deadline and proc.poll() is None and not _ping(port):
                time.sleep(0.02)
            if proc.poll() is None and _ping(port):
                break
            _stop(proc)
            last_error = (proc.stderr.read() or b"").decode(errors="replace").strip()[-300:] if proc.stderr else ""
        else:
            raise RuntimeError(f"redis-server did not start: {last_error}")
        try:
            yield f"redis://{HOST}:{port}/0"
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
