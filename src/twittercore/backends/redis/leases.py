"""Leases that split fan-out on write between the workers of many processes.

Every process opened with ``fanout="write"`` or ``"hybrid"`` runs a worker
(:mod:`.fanout`).  Without leases each would poll and fan out every bucket,
so N application processes did the work N times.  Here the buckets are cut
into lease *groups* (bucket ``b`` is in group ``b % groups``); a worker
fans out only the buckets of the groups it holds.  Each worker registers in
the namespace's worker registry (a sorted set, expiry by the server's
clock) and holds at most its fair share, ``ceil(groups / live workers)``:
it drops what is beyond that share, so a worker that joins gets groups
within one renewal, and takes free groups up to it, so the groups of a
worker that died (its leases lapse after ``ttl``) are taken over within
``ttl`` and one renewal.

Leases are an economy, never a condition of the answer: every step of a
worker is idempotent and reads trust a window only as far as its bucket's
frontier, so a group nobody holds (all workers gone, the cluster away) makes
reads of it read the logs, and a group two workers briefly both work on (a
lease that lapsed while its holder was paused) costs twice, never disagrees.

Runtime complexity: one renewal every ``ttl / 3`` seconds per worker: one
call to the registry and one ``tc_lease`` per group held or wanted, in one
round trip (a second only to drop groups taken beyond the share).
"""

from __future__ import annotations

import math
import time
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import RedisStore

__all__ = ["Leases"]

#: Lease groups per namespace (fewer where the namespace has fewer buckets).
GROUPS = 64
#: A lease's life: a dead worker's groups wait this long for a new holder.
TTL_S = 3.0


class Leases:
    """The lease groups one worker holds (it calls the store's call helpers, nothing else)."""

    def __init__(self, store: RedisStore, groups: int | None = None, ttl: float | None = None) -> None:
        self.s = store
        self.owner = uuid.uuid4().hex
        self.groups = max(1, min(GROUPS if groups is None else groups, store._nb))
        self.ttl = TTL_S if ttl is None else ttl
        self.held: frozenset[int] = frozenset()
        self.workers = 0  # live workers at the last renewal, this one included
        self.renewals = 0
        self._renewed = -math.inf

    def buckets(self) -> list[int]:
        """The buckets of the groups held, ascending."""
        return [b for b in range(self.s._nb) if b % self.groups in self.held]

    def owns(self, b: int) -> bool:
        return b % self.groups in self.held

    def due(self) -> bool:
        return time.monotonic() - self._renewed >= self.ttl / 3

    def renew(self) -> None:
        """Register, keep the fair share of the groups held, take free ones up to it."""
        s = self.s
        ttl_ms = int(self.ttl * 1000)
        (alive,) = s._call([self._registry(ttl_ms, True)], safe=False)
        self.workers = max(1, int(alive))
        share = math.ceil(self.groups / self.workers)
        ordered = sorted(self.held)
        keep, drop = ordered[:share], ordered[share:]
        # Start the search for free groups at a place of this owner's own, so that workers
        # joining together do not all race for group 0 first.
        start = int(self.owner[:8], 16) % self.groups
        others = [(start + i) % self.groups for i in range(self.groups)]
        wanted = keep + ([g for g in others if g not in self.held] if len(keep) < share else [])
        answers = s._call(
            [self._lease(g, ttl_ms, True) for g in wanted] + [self._lease(g, ttl_ms, False) for g in drop],
            safe=False,
        )
        got = [g for g, ok in zip(wanted, answers) if int(ok)]
        held, extra = got[:share], got[share:]
        if extra:
            s._call([self._lease(g, ttl_ms, False) for g in extra], safe=False)
        self.held = frozenset(held)
        self.renewals += 1
        self._renewed = time.monotonic()

    def release(self) -> None:
        """Drop every lease held and leave the registry (a closing store), so others take over at once."""
        s = self.s
        calls = [self._lease(g, 0, False) for g in sorted(self.held)] + [self._registry(0, False)]
        self.held = frozenset()
        s._call(calls, safe=False)

    def _lease(self, group: int, ttl_ms: int, take: bool) -> tuple[str, tuple[object, ...]]:
        # A group's lease lives in its first bucket's slot: it moves with that bucket.
        return self.s._fcall("tc_lease", group, self.owner, ttl_ms, int(take), keys=("lease",))

    def _registry(self, ttl_ms: int, join: bool) -> tuple[str, tuple[object, ...]]:
        return self.s._fcall("tc_workers", 0, self.owner, ttl_ms, int(join), keys=("workers",))
