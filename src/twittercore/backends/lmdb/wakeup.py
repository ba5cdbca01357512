"""Cross-process wake-ups without polling: a futex word in a small file beside the store.

A process that waits for commits (``Store.wait``, ``tail``, the server's
streaming hub) used to learn of another process's commits by polling LMDB's
last transaction id every 0.2 ms.  Next to a busy event loop that poller
costs far more than its own CPU: each poll takes the GIL from the loop.

Here every writer, after a commit, stores a fresh random value into word 0
of the shared file ``wake`` and, if any process is waiting (word 1 counts
them), issues ``FUTEX_WAKE`` on that word.  A waiting process's watcher
thread reads the word, checks the store, then sleeps in ``FUTEX_WAIT`` on the
value it read, in the kernel, holding no GIL.  No wake-up is lost: a commit
after the check stores a value the watcher did not read (so the wait returns
at once) and wakes after storing; a writer that saw no waiters committed
before the waiter's count went up, so the waiter's check sees the commit.
The count is changed under ``flock`` (processes start and stop waiting
rarely); a waiter killed while counted leaves it too high, which only makes
writers issue a wake no one needs.

Linux only (``futex(2)``); elsewhere, or where the file cannot be made,
:func:`open_doorbell` returns None and the store polls as before.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import platform
import random
import sys
import threading
from typing import Any

__all__ = ["WAKE_FILE", "Doorbell", "open_doorbell"]

WAKE_FILE = "wake"
_SIZE = 4096
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1  # shared (not FUTEX_PRIVATE_FLAG): the word is in a file mapping
_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(platform.machine())
_WAKE_ALL = 0x7FFFFFFF


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_syscall: Any = None


def _libc_syscall() -> Any:
    global _syscall
    if _syscall is None:
        libc = ctypes.CDLL(None, use_errno=True)
        _syscall = libc.syscall
        _syscall.restype = ctypes.c_long
    return _syscall


class Doorbell:
    """The ``wake`` file of one store, mapped in this process.

    Runtime complexity: O(1) for every method; ``ring`` is one store and, while
    some process waits, one system call.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._map = mmap.mmap(fd, _SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._words = (ctypes.c_uint32 * 2).from_buffer(self._map)
        self._address = ctypes.addressof(self._words)
        self._syscall = _libc_syscall()
        self._random = random.Random()
        self._waiting = False
        # A store's watcher thread can outlive the store's close by one bounded sleep (its join has a
        # timeout): what it calls after the close must find the map gone, not crash on it.
        self._lock = threading.Lock()
        self._open = True

    def ring(self) -> None:
        """After a commit: change the word, and wake the waiting processes if there are any."""
        words = self._words
        words[0] = self._random.getrandbits(32)
        if words[1]:
            self._syscall(_SYS_FUTEX, ctypes.c_void_p(self._address), _FUTEX_WAKE, _WAKE_ALL, None, None, 0)

    def value(self) -> int:
        with self._lock:
            return int(self._words[0]) if self._open else 0

    def sleep(self, value: int, timeout: float) -> None:
        """Sleep until the word is rung away from ``value``, or ``timeout`` seconds (spurious returns happen)."""
        if not self._open:
            return
        spec = _Timespec(int(timeout), int((timeout % 1) * 1e9))
        # ctypes releases the GIL for the call: the sleep costs this process nothing.
        self._syscall(
            _SYS_FUTEX, ctypes.c_void_p(self._address), _FUTEX_WAIT, ctypes.c_uint32(value), ctypes.byref(spec), None, 0
        )

    def waiting(self, on: bool) -> None:
        """Count this process in (or out) of the processes that wait; once each way."""
        with self._lock:
            if self._open:
                self._count(on)

    def _count(self, on: bool) -> None:
        if on == self._waiting:
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            words = self._words
            words[1] = words[1] + 1 if on else max(0, words[1] - 1)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._waiting = on

    def close(self) -> None:
        with self._lock:
            if not self._open:
                return
            self._count(False)
            self._open = False
            del self._words  # the ctypes view holds the map's buffer: release it first
            self._map.close()
            os.close(self._fd)


def open_doorbell(directory: str) -> Doorbell | None:
    """The store's doorbell, creating its file; None where futexes or the file are not available."""
    if _SYS_FUTEX is None or not sys.platform.startswith("linux"):
        return None
    try:
        fd = os.open(os.path.join(directory, WAKE_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size < _SIZE:
            # Allocated, not sparse: a store into a hole of a full disk would be a SIGBUS.
            os.posix_fallocate(fd, 0, _SIZE)
        return Doorbell(fd)
    except (OSError, ValueError):
        os.close(fd)
        return None
