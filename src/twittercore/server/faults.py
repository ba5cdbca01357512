"""Crash points: where the crash tests kill a worker, named, and inert unless asked for.

``TWITTERCORE_SERVER_CRASH_AT=post:published`` makes the process SIGKILL
itself the first time it reaches that point (a file named by
``TWITTERCORE_SERVER_CRASH_ONCE``, if set, is created first so that a
restarted server does not crash again).  The points:

* ``post:before`` / ``post:published``: before and after a keyed status
  reaches the store, before the response;
* ``register:pending`` / ``register:followed``: between the steps of
  :func:`.state.register`.

A kill -9 is the harshest crash a process can have short of the machine
going down: nothing runs after it, no ``finally``, no flush.
"""

from __future__ import annotations

import os
import signal

__all__ = ["crash_point"]

_AT = os.environ.get("TWITTERCORE_SERVER_CRASH_AT", "")


def crash_point(name: str) -> None:
    """SIGKILL this process if the environment names this point (see the module docs)."""
    if not _AT or name != _AT:
        return
    once = os.environ.get("TWITTERCORE_SERVER_CRASH_ONCE")
    if once:
        try:
            fd = os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
