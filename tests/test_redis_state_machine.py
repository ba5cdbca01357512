"""G5 on Redis Cluster: the Redis backend, with every fan-out strategy, answers
like the reference store (ids translated, see ``tests/redis_view.py``).

The same rules as ``test_state_machine.py``, against a real 3-master cluster
(``tests/redis_cluster.py``); every example uses its own namespace with 8
buckets, so sources and sinks spread over all masters and cross-bucket reads
and follows happen in every run.
"""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import initialize, rule

import twittercore
from tests import test_state_machine as base
from tests.redis_cluster import Cluster, missing_reason
from tests.redis_view import RedisView, follow_cut_short, wipe

STRATEGIES = ("read", "write", "hybrid")
STRATEGY_OPTIONS = {
    "read": {"fanout": "read"},
    # No background worker: the fan_out_now rule moves the windows, so reads meet every state of
    # them (current, lagging, trimmed) instead of whatever the worker's timing gives.
    "write": {"fanout": "write", "window": 30, "fanout_worker": False},
    "hybrid": {"fanout": "hybrid", "window": 25, "celebrity_threshold": 2, "fanout_worker": False},
}
_cluster: Cluster | None = None
_namespaces = itertools.count()


def _shared_cluster() -> Cluster:
    global _cluster
    if _cluster is None:
        _cluster = Cluster(3, 0, durable=False).start()
    return _cluster


@pytest.fixture(scope="module", autouse=True)
def cluster():
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    global _cluster
    try:
        yield _shared_cluster()
    finally:
        if _cluster is not None:
            _cluster.stop()
            _cluster = None


class RedisComparison(base.StoreComparison):
    # One strategy per example, drawn: each costs a cluster round trip per step, and
    # the run budget buys more steps this way than three stores at once. It must be
    # drawn, not taken from a counter: a replayed example has to open the same store,
    # or Hypothesis reports the strategy definition as flaky.
    @initialize(fanout=st.sampled_from(STRATEGIES))
    def open_stores(self, fanout):
        self.fanout = fanout
        super().open_stores()

    def kinds(self):
        self.namespace = f"sm{next(_namespaces)}"
        self.views: dict[str, RedisView] = {}
        common = {"buckets": 8, "key_retention": base.RETENTION, "namespace": self.namespace}
        return {f"redis-{self.fanout}": {**common, **STRATEGY_OPTIONS[self.fanout]}}

    def open(self, name):
        raw = twittercore.open(_shared_cluster().url, clock=self.clocks[name], **self.options[name])
        view = self.views.get(name)
        if view is None:
            view = self.views[name] = RedisView(raw, self.shared)
        view.raw = raw
        return view

    @rule(sink=base.NODES, source=base.NODES, unfollow=st.booleans())
    def tail_story(self, sink, source, unfollow):
        """Follow, publish, delete, maybe unfollow, then read the changes from the start:
        the events and deletion notices a tail owes, across buckets (random rules reach
        this combination rarely)."""
        self.all(lambda s: s.follow(sink, source))
        events = self.all(lambda s: s.publish_many([(source, b"t1"), (source, b"t2")]))
        self.ids.extend(e[0] for e in events)
        self.same_last_id()
        self.all(lambda s: s.delete(events[0][0]))
        self.same_last_id()
        if unfollow:
            self.all(lambda s: s.unfollow(sink, source))
            self.same_last_id()
        self.all(lambda s: base._drain(s, sink, 0))

    @rule(
        sink=base.NODES,
        sources=st.lists(base.NODES, min_size=1, max_size=4, unique=True),
        posts=st.integers(1, 40),
        settle=st.booleans(),
        limit=base.LIMITS,
    )
    def window_story(self, sink, sources, posts, settle, limit):
        """Follow a few sources, publish to them, maybe let the worker catch up, then page the home
        timeline: the window, lagging buckets, trimmed windows and celebrities all meet here, which
        random rules reach rarely."""
        self.all(lambda s: s.follow_many([(sink, source) for source in sources]))
        items = [(sources[n % len(sources)], b"w%d" % n) for n in range(posts)]
        events = self.all(lambda s: s.publish_many(items))
        self.ids.extend(e[0] for e in events)
        if settle:
            self.fan_out_now()
        self.all(lambda s: base._all_pages(s, sink, limit))

    @rule(sink=base.NODES, source=base.NODES, limit=base.LIMITS)
    def follow_cut_short(self, sink, source, limit):
        """A follow whose writer dies after the sink side, before the source side (and the window's
        backfill): home reads hold the source's posts at once; a repair (a worker's, or the next
        open's) then completes the edge, and ``sinks`` has it."""
        self.reference.follow(sink, source)
        for view in self.views.values():
            follow_cut_short(view.raw, sink, source)
        self.all(lambda s: base._all_pages(s, sink, limit))
        for view in self.views.values():
            view.raw._repair()
        self.all(lambda s: list(s.sinks(source)))

    @rule()
    def fan_out_now(self):
        """Write and hybrid: run the fan-out worker's rounds until it is current, so the reads that
        follow take the window path (the background worker leaves it to chance)."""
        for view in self.views.values():
            windows = view.raw._windows
            if windows is not None:
                windows.settle(20)

    def teardown(self):
        super().teardown()
        for options in getattr(self, "options", {}).values():
            wipe(_shared_cluster(), options["namespace"])


RedisComparison.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestRedisComparison = RedisComparison.TestCase
