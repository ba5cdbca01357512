"""Workers that each accept on their own socket (``SO_REUSEPORT``), so the kernel spreads connections.

uvicorn's ``--workers`` shares one listening socket between its workers:
every worker's event loop wakes for a new connection and the first one to
run takes it, so a worker that is already busy takes most of them (the load
tool measured 32 times more requests on one of two workers at 330 req/s,
evened out only near saturation).  With ``SO_REUSEPORT`` on Linux each
worker listens on a socket of its own on the same port, and the kernel hands
each new connection to one of them by a hash of its addresses.

uvicorn's supervisor (restarts, signals) is kept: it is given one socket,
which in the parent only holds the port (bound, never listening, so it is
never handed a connection) and which each spawned worker unpickles as a
fresh listening socket of its own.
"""

from __future__ import annotations

import socket
import sys
from typing import Any, TypeVar

__all__ = ["available", "serve"]


def available() -> bool:
    """Whether the kernel balances ``SO_REUSEPORT`` listeners (Linux 3.9+; BSDs do not)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


S = TypeVar("S", bound=socket.socket)


def _sharing(sock: S) -> S:
    """``sock``, set to share its port with the other workers' sockets."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def _listener(family: int, host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket on ``(host, port)`` beside the other workers' (in the worker)."""
    sock = _sharing(socket.socket(family, socket.SOCK_STREAM))
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


class _PortHolder(socket.socket):
    """Bound, not listening: holds the port in the supervisor; pickles as a worker's own listener."""

    backlog = 2048

    def __reduce__(self) -> Any:
        host, port = self.getsockname()[:2]
        return (_listener, (self.family, host, port, self.backlog))


def serve(config: Any) -> None:
    """Run ``config.workers`` uvicorn workers under uvicorn's supervisor, one listener each."""
    from uvicorn.supervisors import Multiprocess

    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    holder = _sharing(_PortHolder(family, socket.SOCK_STREAM))
    holder.backlog = config.backlog
    try:
        holder.bind((config.host, config.port))
    except OSError as exc:
        holder.close()
        print(f"twittercore serve: cannot listen on {config.host}:{config.port}: {exc.strerror}", file=sys.stderr)
        raise SystemExit(1) from None
    try:
        Multiprocess(config, sockets=[holder]).run()
    finally:
        holder.close()
