"""Group commit: concurrent durable publishes share one write transaction and one fsync.

A durable commit costs an fsync (hundreds of microseconds on a disk), far
more than the records it writes.  Threads that publish at the same time
therefore queue their work here; one of them, the *leader*, runs every queued
piece of work in one transaction, commits it (one fsync), and hands each
caller its own answer.  No caller returns before the fsync that covers its
event, and ids follow the order in which the work was queued, so order and
ids are exactly what one commit per call would give.  A caller alone pays
one uncontended lock more than a plain commit.

Each caller's work stays atomic on its own: if anything in a shared
transaction fails, the transaction is aborted (nothing of it was written)
and every piece of work runs again in a transaction of its own, so one
caller's error (a key whose event was deleted, a full disk) is that caller's
alone.  Work must derive everything from the transaction it is given, as
:meth:`LMDBStore._write` already demands, which makes running it twice safe.

Leadership passes on after each commit to the first caller still waiting, so
no leader serves others indefinitely while its own caller waits.  Without a
pause, batches alternate between two halves of the publishers (those that
queued during a commit, then those that commit answered); the next leader
therefore waits a moment, at most a quarter of the last commit and 0.5 ms,
for the answered callers to come back, as PostgreSQL's ``commit_delay`` and
MySQL's ``binlog_group_commit_sync_delay`` do, but only when the last commit
was shared (a lone publisher never waits).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ...errors import StoreError

__all__ = ["GroupCommit"]

#: A leader waits for the callers the previous commit answered for at most
#: this share of that commit's duration, and never longer than MAX_DELAY s.
DELAY_SHARE = 0.25
MAX_DELAY = 0.0005


class _Slot:
    __slots__ = ("work", "done", "result", "error", "lead")

    def __init__(self, work: Callable[[Any], Any]) -> None:
        self.work = work
        # A plain lock held until the answer is in: cheaper than an Event per call.
        self.done = threading.Lock()
        self.done.acquire()
        self.result: Any = None
        self.error: BaseException | None = None
        self.lead = False


class GroupCommit:
    """Run write work from many threads in shared transactions.

    ``write(work)`` runs ``work(txn)`` in one write transaction and commits it
    (LMDBStore._write: map growth, error translation); ``after()`` runs once
    after each commit (waking tail subscribers).

    Runtime complexity: O(1) per call besides the work; one commit per batch.
    """

    def __init__(self, write: Callable[[Callable[[Any], Any]], Any], after: Callable[[], None]) -> None:
        self._write = write
        self._after = after
        self._lock = threading.Lock()
        self._pending: list[_Slot] = []
        self._leading = False
        self._answered = 0  # calls the last commit carried
        self._commit_seconds = 0.0  # how long it took
        #: Commits and the calls they carried, for benchmarks and tests.
        self.commits = 0
        self.calls = 0

    def run(self, work: Callable[[Any], Any]) -> Any:
        """``work(txn)``'s answer once the commit that holds it is durable; its error otherwise."""
        slot = _Slot(work)
        with self._lock:
            self._pending.append(slot)
            lead = not self._leading
            if lead:
                self._leading = True
        if not lead:
            try:
                slot.done.acquire()  # the leader answers, or hands us the lead
            except BaseException:
                # Interrupted while queued: the work may still be committed, and
                # the lead may come to this slot, so see it through, then stop.
                slot.done.acquire()
                if slot.lead:
                    self._lead()
                raise
            if not slot.lead:
                return _answer(slot)
        self._lead()
        return _answer(slot)

    def _lead(self) -> None:
        answered = self._answered
        if answered > 1:
            # The callers the last commit answered usually publish again at once
            # (a thread's next post, the server's next request): give them a
            # moment to queue, a small part of a commit, so batches fill up
            # instead of alternating between two halves of the publishers.
            clock = time.perf_counter
            deadline = clock() + min(self._commit_seconds * DELAY_SHARE, MAX_DELAY)
            want = len(self._pending) + answered
            while len(self._pending) < want and clock() < deadline:
                time.sleep(0)  # lets the answered threads run (and queue)
        with self._lock:
            batch, self._pending = self._pending, []
        started = time.perf_counter()
        try:
            self._commit(batch)
        finally:
            self._commit_seconds = time.perf_counter() - started
            self._answered = len(batch)
            with self._lock:
                successor = self._pending[0] if self._pending else None
                if successor is None:
                    self._leading = False
            for slot in batch:
                if not slot.lead:
                    slot.done.release()
            if successor is not None:
                successor.lead = True
                successor.done.release()

    def _commit(self, batch: list[_Slot]) -> None:
        self.commits += 1
        self.calls += len(batch)
        if len(batch) == 1:
            slot = batch[0]
            slot.lead = False
            try:
                slot.result = self._write(slot.work)
            except BaseException as exc:
                slot.error = exc
            self._after()
            return
        # The leading thread's own call is always the first: leadership is
        # taken with an empty queue or handed to the head of the queue.
        mine = batch[0]
        for s in batch:
            s.lead = False
        works = [s.work for s in batch]
        try:
            results = self._write(lambda txn: [work(txn) for work in works])
        except Exception:
            # Isolate the failure: nothing of the shared transaction was written.
            for slot in batch:
                try:
                    slot.result = self._write(slot.work)
                except BaseException as exc:
                    slot.error = exc
        except BaseException as exc:
            # Interrupted (KeyboardInterrupt in the leading thread): whether the
            # commit happened is not known, so no other caller may call it done.
            for slot in batch:
                slot.error = (
                    exc
                    if slot is mine
                    else StoreError(
                        "publish: the thread committing this call's batch was interrupted; "
                        "it may or may not be published (retry with the same key)"
                    )
                )
        else:
            for slot, result in zip(batch, results):
                slot.result = result
        self._after()


def _answer(slot: _Slot) -> Any:
    if slot.error is not None:
        raise slot.error
    return slot.result
