"""One thread per store wakes every ``async`` subscriber: no polling, no thread per subscriber.

``Store.subscribe`` used to wait for new events with ``asyncio.to_thread(wait,
cursor, 0.05)``: twenty thread hops a second for every idle subscriber (3% of
a core for 100 of them), and since the default executor has a handful of
threads, the hundredth subscriber's wait queued behind the others' and woke
up to a second late.

Here a subscriber with nothing to read parks an ``asyncio`` future in the
store's :class:`Waker` and awaits it.  The waker's one thread blocks in the
backend's own ``wait`` (a futex, a condition, a pub/sub message: whatever
wakes ``tail``) from the lowest parked cursor, and when the store moves past
it hands each parked future's loop a wake-up (``call_soon_threadsafe``).  A
woken subscriber reads its ``changes`` and parks again, so the cost is one
wake per commit per subscriber and nothing while the store is idle.  No
wake-up is lost: a future is parked under the lock before the thread picks
its next cursor, and a cursor at or below the store's position makes
``wait`` return at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

__all__ = ["Waker"]

#: How long one ``wait`` blocks before the thread checks whether it is still
#: wanted (no futures parked) or the store closed: bounds how long an unused
#: thread lingers, never how soon a commit is seen.
SLICE = 0.5


class Waker:
    """Parks ``asyncio`` futures until the store's position passes their cursor.

    ``wait(after, timeout)`` is the backend's blocking wait (True when the
    store moved past ``after``); ``closed()`` says the store is closed.

    Runtime complexity: ``park`` O(1); each commit costs the thread O(parked).
    """

    def __init__(self, wait: Callable[[int, float | None], bool], closed: Callable[[], bool]) -> None:
        self._wait = wait
        self._closed = closed
        self._lock = threading.Lock()
        self._parked: dict[asyncio.Future[None], int] = {}
        self._thread: threading.Thread | None = None

    def park(self, after: int) -> asyncio.Future[None]:
        """A future resolved once the store's position passes ``after`` (or it closes)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._parked[future] = after
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="twittercore-waker", daemon=True)
                self._thread.start()
        return future

    def unpark(self, future: asyncio.Future[None]) -> None:
        """Forget ``future`` (its subscriber was cancelled or woke)."""
        with self._lock:
            self._parked.pop(future, None)

    def wake_all(self) -> None:
        """Resolve every parked future (the store is closing)."""
        with self._lock:
            parked, self._parked = self._parked, {}
        _resolve(parked)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._parked or self._closed():
                    self._thread = None
                    parked, self._parked = self._parked, {}
                    break
                low = min(self._parked.values())
            try:
                moved = self._wait(low, SLICE)
            except Exception:
                moved = True  # the subscribers' own reads report the failure
            if moved:
                with self._lock:
                    woken = {f: a for f, a in self._parked.items() if a <= low}
                    for future in woken:
                        del self._parked[future]
                _resolve(woken)
        _resolve(parked)  # closed: subscribers see it and end


def _resolve(futures: dict[asyncio.Future[None], int]) -> None:
    for future in futures:
        try:
            future.get_loop().call_soon_threadsafe(_set, future)
        except RuntimeError:  # that loop is closed: nobody awaits the future
            pass


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
