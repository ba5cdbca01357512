"""G5 as a Hypothesis state machine: every store answers every query like the reference.

The same random operations go to the in-memory reference store and to the LMDB
store with the compiled kernel and with the pure-Python twin; after every step
the answers must be identical.  LMDB stores are also closed and reopened
mid-run, and their layout invariants (`_check`) are asserted at the end.
"""

from __future__ import annotations

import shutil
import tempfile

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import twittercore
from tests.conftest import HAVE_COMPILED, FakeClock

NODES = st.integers(0, 6)
PAYLOADS = st.binary(max_size=12)
LIMITS = st.integers(1, 40)
KEYS = st.sampled_from([b"a", b"b", "c"])
#: Short enough (120 clock ticks of 0.25 s) that keys expire within a run.
RETENTION = 30.0


def _kinds():
    """LMDB variants: both kernels, and every fan-out strategy with tiny windows and
    thresholds so that fallbacks and celebrity crossings happen in short runs."""
    kernel = "cython" if HAVE_COMPILED else "python"
    kinds = {"lmdb-python": {"kernel": "python", "key_retention": RETENTION}}
    if HAVE_COMPILED:
        kinds["lmdb-cython"] = {"kernel": "cython", "key_retention": RETENTION}
    kinds["lmdb-write"] = {"kernel": kernel, "fanout": "write", "window": 5, "key_retention": RETENTION}
    kinds["lmdb-hybrid"] = {
        "kernel": kernel,
        "fanout": "hybrid",
        "window": 7,
        "celebrity_threshold": 2,
        "key_retention": RETENTION,
    }
    return kinds


class StoreComparison(RuleBasedStateMachine):
    @initialize()
    def open_stores(self):
        self.dir = tempfile.mkdtemp(prefix="twittercore-sm-")
        self.clocks = {"memory": FakeClock()}
        self.reference = twittercore.open(":memory:", clock=self.clocks["memory"], key_retention=RETENTION)
        self.others = {}
        self.shared: dict = {}  # the reference's answer to the current step, for id-translating views
        self.options = self.kinds()
        for name in self.options:
            self.clocks[name] = FakeClock()
            self.others[name] = self.open(name)
        self.ids: list[int] = []

    def kinds(self):
        return _kinds()

    def open(self, name):
        """(Re)open the store ``name`` with its current options."""
        return twittercore.open(f"{self.dir}/{name}", durable=False, clock=self.clocks[name], **self.options[name])

    def teardown(self):
        for other in getattr(self, "others", {}).values():
            other._check()
            other.close()
        if hasattr(self, "dir"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def all(self, call):
        """Apply ``call`` to every store; all must agree (on results or on the exception type)."""
        outcomes = {}
        for name, target in [("memory", self.reference), *self.others.items()]:
            try:
                outcomes[name] = ("ok", _plain(call(target)))
            except twittercore.Error as exc:
                outcomes[name] = ("error", type(exc).__name__)
            if name == "memory":
                self.shared["result"] = outcomes[name][1] if outcomes[name][0] == "ok" else None
        expected = outcomes["memory"]
        for name, outcome in outcomes.items():
            assert outcome == expected, f"{name} differs from the reference:\n{outcome}\n!=\n{expected}"
        return expected[1] if expected[0] == "ok" else None

    # ------------------------------------------------------------- mutations

    @rule(sink=NODES, source=NODES)
    def follow(self, sink, source):
        self.all(lambda s: s.follow(sink, source))

    @rule(sink=NODES, source=NODES)
    def unfollow(self, sink, source):
        self.all(lambda s: s.unfollow(sink, source))

    @rule(pairs=st.lists(st.tuples(NODES, NODES), max_size=8))
    def follow_many(self, pairs):
        self.all(lambda s: s.follow_many(pairs))

    @rule(pairs=st.lists(st.tuples(NODES, NODES), max_size=8))
    def unfollow_many(self, pairs):
        self.all(lambda s: s.unfollow_many(pairs))

    @rule(source=NODES, payload=PAYLOADS)
    def publish(self, source, payload):
        event = self.all(lambda s: s.publish(source, payload))
        self.ids.append(event[0])

    @rule(items=st.lists(st.tuples(NODES, PAYLOADS), max_size=20))
    def publish_many(self, items):
        events = self.all(lambda s: s.publish_many(items))
        self.ids.extend(e[0] for e in events)

    @rule(source=NODES, payload=PAYLOADS, key=KEYS)
    def publish_keyed(self, source, payload, key):
        """Retries return the first event; expired keys publish anew; deleted ones refuse."""
        event = self.all(lambda s: s.publish(source, payload, key=key))
        if event is not None:
            self.ids.append(event[0])

    @rule(items=st.lists(st.tuples(NODES, PAYLOADS, st.one_of(st.none(), KEYS)), max_size=8))
    def publish_many_keyed(self, items):
        events = self.all(lambda s: s.publish_many(items))
        self.ids.extend(e[0] for e in events or ())

    @rule(source=NODES, count=st.integers(100, 400))
    def publish_burst(self, source, count):
        """Enough events on one source to seal chunks of its log."""
        items = [(source, b"%d" % n) for n in range(count)]
        events = self.all(lambda s: s.publish_many(items))
        self.ids.extend(e[0] for e in events)

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def delete(self, data):
        id = data.draw(st.sampled_from(self.ids))
        self.all(lambda s: s.delete(id))

    @rule(id=st.integers(0, 3000))
    def delete_any(self, id):
        self.all(lambda s: s.delete(id))

    @rule()
    def reopen(self):
        for name, other in self.others.items():
            other._check()
            other.close()
            self.others[name] = self.open(name)

    @rule(
        name=st.sampled_from(["lmdb-write", "lmdb-hybrid"]),
        fanout=st.sampled_from(["read", "write", "hybrid"]),
        window=st.integers(1, 12),
        threshold=st.integers(1, 4),
    )
    def switch_strategy(self, name, fanout, window, threshold):
        """Reopening with another strategy rebuilds what it needs; answers stay the same."""
        if name not in self.others:
            return
        other = self.others[name]
        other.close()
        self.options[name] = {
            **self.options[name],
            "fanout": fanout,
            "window": window,
            "celebrity_threshold": threshold,
        }
        self.others[name] = self.open(name)
        assert self.others[name].fanout == fanout
        self.others[name]._check()

    # ----------------------------------------------------------------- reads

    def bound(self, data, label):
        choices = [None, 0, 1, (1 << 64) - 1]
        if self.ids:
            choices.append(data.draw(st.sampled_from(self.ids), label=f"{label}-id"))
            choices.append(data.draw(st.sampled_from(self.ids), label=f"{label}-id2") + 1)
        return data.draw(st.sampled_from(choices), label=label)

    @rule(sink=NODES, limit=LIMITS, data=st.data())
    def home(self, sink, limit, data):
        max_id, since_id, min_id = (self.bound(data, n) for n in ("max_id", "since_id", "min_id"))
        self.all(lambda s: s.home(sink, limit=limit, max_id=max_id, since_id=since_id, min_id=min_id))

    @rule(source=NODES, limit=LIMITS, data=st.data())
    def timeline(self, source, limit, data):
        max_id, since_id, min_id = (self.bound(data, n) for n in ("max_id", "since_id", "min_id"))
        self.all(lambda s: s.timeline(source, limit=limit, max_id=max_id, since_id=since_id, min_id=min_id))

    @rule(sink=NODES, limit=LIMITS)
    def page_through_home(self, sink, limit):
        """Paging with max_id = last id - 1 visits the whole home timeline once (G4)."""
        pages = self.all(lambda s: _all_pages(s, sink, limit))
        assert pages == sorted(set(pages), reverse=True)

    @rule(node=NODES, limit=st.none() | st.integers(1, 4), after=st.none() | NODES)
    def graph_reads(self, node, limit, after):
        self.all(lambda s: (s.sources(node, limit, after), s.sinks(node, limit, after)))
        self.all(lambda s: (s.source_count(node), s.sink_count(node), s.timeline_count(node)))

    @rule(sink=NODES, data=st.data())
    def changes(self, sink, data):
        after = self.bound(data, "after") or 0
        self.all(lambda s: _drain(s, sink, after))

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def event(self, data):
        id = data.draw(st.sampled_from(self.ids))
        self.all(lambda s: s.event(id))

    @rule(sink=NODES, source=NODES)
    def delete_after_unfollow(self, sink, source):
        """Follow, publish, unfollow, then delete: a tail starting after the unfollow is
        owed the notice (the event was published while followed).  Random rules reach
        this order with a cursor in between rarely."""
        self.all(lambda s: s.follow(sink, source))
        events = self.all(lambda s: s.publish_many([(source, b"d1")]))
        self.ids.extend(e[0] for e in events)
        self.all(lambda s: s.unfollow(sink, source))
        self.same_last_id()
        after = self.reference.last_id()
        self.all(lambda s: s.delete(events[0][0]))
        self.same_last_id()
        self.all(lambda s: _drain(s, sink, after))

    @invariant()
    def same_last_id(self):
        if hasattr(self, "reference"):
            self.all(lambda s: s.last_id())


def _all_pages(store, sink, limit):
    ids, max_id = [], None
    while True:
        page = store.home(sink, limit=limit, max_id=max_id)
        if not page:
            return ids
        ids.extend(e.id for e in page)
        if page[-1].id == 0:
            return ids
        max_id = page[-1].id - 1


def _drain(store, sink, after):
    """Every change after ``after``, through pages of 3 (cursors may differ; items may not)."""
    if hasattr(store, "drain"):  # a view whose cursors live in another id space
        return store.drain(sink, after)
    items = []
    while True:
        batch, cursor = store.changes(sink, after, limit=3)
        items.extend(batch)
        if cursor == after or (not batch and cursor >= store.last_id()):
            return items
        after = cursor


def _plain(value):
    """Turn results into comparable plain data (EventBatch -> list, tuples stay tuples)."""
    if isinstance(value, twittercore.Event | twittercore.Deletion):
        return tuple(value)
    if isinstance(value, (list, tuple)) or type(value).__name__ == "EventBatch":
        return [_plain(v) for v in value]
    return value


StoreComparison.TestCase.settings = settings(
    max_examples=max(150, settings.default.max_examples // 2),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestStoreComparison = StoreComparison.TestCase
