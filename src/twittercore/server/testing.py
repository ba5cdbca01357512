"""Run the server in a background thread on a free loopback port (tests and the load tool's self-test).

with running_server(":memory:", admin_token="secret") as url:
    httpx.get(url + "/api/v1/instance")
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from .app import create_app

__all__ = ["running_server", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(
    store_target: str = ":memory:",
    state_path: str = ":memory:",
    *,
    tls: tuple[str, str] | None = None,
    **options: Any,
) -> Iterator[str]:
    """Serve ``create_app(store_target, state_path, **options)``; yields the base URL; always stops.

    ``tls=(certfile, keyfile)`` serves HTTPS (the URL then names ``localhost``,
    the name test certificates are issued for).
    """
    app = create_app(store_target, state_path, **options)
    # Bind first, so the port is ours before uvicorn starts (no race for it).
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    certfile, keyfile = tls if tls else (None, None)
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=1,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
    server = uvicorn.Server(config)

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except OSError:
            # uvloop refuses to close a loop whose TLS transports are still
            # mid-shutdown (EBUSY) when a client keeps its connection open
            # past the server's stop; the server has stopped serving by then.
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("running_server: uvicorn did not start")
            time.sleep(0.01)
        yield f"https://localhost:{port}" if tls else f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
