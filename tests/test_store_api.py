"""The public API on every store kind: behaviour, paging, and rejected calls that change nothing."""

from __future__ import annotations

import pytest

import twittercore
from twittercore import (
    MAX_LIMIT,
    MAX_PAYLOAD,
    ClosedError,
    Event,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
)

NODES = range(6)


def digest(store):
    """Everything a client can observe about nodes 0..5, to prove a call changed nothing."""
    return (
        store.last_id(),
        [store.sources(n) for n in NODES],
        [store.sinks(n) for n in NODES],
        [[tuple(e) for e in store.timeline(n, limit=100)] for n in NODES],
        [[tuple(e) for e in store.home(n, limit=100)] for n in NODES],
    )


@pytest.fixture
def filled(store):
    store.follow_many([(0, 1), (0, 2), (3, 1), (3, 2), (4, 2), (0, 0)])
    for n in range(30):
        store.publish(1 + n % 2, b"post %d" % n)
    return store


def test_follow_returns_whether_the_edge_is_new(store):
    assert store.follow(1, 2) is True
    assert store.follow(1, 2) is False
    assert store.is_following(1, 2) and not store.is_following(2, 1)
    assert store.unfollow(1, 2) is True
    assert store.unfollow(1, 2) is False
    assert store.follow_many([(1, 2), (1, 3), (1, 2)]) == 2
    assert store.unfollow_many([(1, 2), (1, 9)]) == 1
    assert store.sources(1) == [3] and store.sinks(3) == [1]


def test_home_merges_sources_newest_first_and_follows_backfill(store):
    a = store.publish(10, b"a")
    b = store.publish(11, b"b")
    c = store.publish(10, b"c")
    assert store.home(1) == []
    store.follow(1, 10)
    assert [e.payload for e in store.home(1)] == [b"c", b"a"]  # backfilled
    store.follow(1, 11)
    assert [e.id for e in store.home(1)] == [c.id, b.id, a.id]
    store.unfollow(1, 10)  # unfollowing removes the source's events, as on Twitter
    assert [e.id for e in store.home(1)] == [b.id]
    assert a.id < b.id < c.id


def test_paging_with_max_id_since_id_min_id(filled):
    everything = [e.id for e in filled.home(0, limit=MAX_LIMIT)]
    assert everything == sorted(everything, reverse=True) and len(everything) == 30
    page1 = filled.home(0, limit=10)
    page2 = filled.home(0, limit=10, max_id=page1[-1].id - 1)
    assert [e.id for e in page1 + page2] == everything[:20]
    assert [e.id for e in filled.home(0, max_id=everything[5])][0] == everything[5]  # inclusive
    assert [e.id for e in filled.home(0, since_id=everything[3])] == everything[:3]  # exclusive
    # min_id: the oldest `limit` above it, still newest first (Mastodon)
    assert [e.id for e in filled.home(0, limit=4, min_id=everything[-1])] == everything[-5:-1]
    assert [e.id for e in filled.home(0, limit=4, since_id=everything[-1])] == everything[:4]


def test_event_payload_roundtrip_and_delete(store):
    e = store.publish(7, bytearray(b"\x00\xffbytes"))
    assert isinstance(e, Event) and e.payload == b"\x00\xffbytes" and e.source == 7
    assert store.event(e.id) == e
    store.follow(1, 7)
    assert store.delete(e.id) == e
    assert store.home(1) == [] and store.timeline(7) == [] and store.timeline_count(7) == 0
    with pytest.raises(NotFoundError, match="no such event"):
        store.event(e.id)
    with pytest.raises(NotFoundError):
        store.delete(e.id)


def test_publish_many_is_one_batch_of_consecutive_ids(store):
    batch = store.publish_many([(1, b"x"), (2, b"y"), (1, b"z")])
    ids = [e.id for e in batch]
    assert ids == list(range(ids[0], ids[0] + 3))
    assert [e.payload for e in store.timeline(1)] == [b"z", b"x"]
    assert store.timeline_count(1) == 2
    assert list(store.publish_many([])) == []
    assert store.publish_many(iter([(3, b"gen")]))[0].source == 3


def test_ids_are_unique_and_increasing_across_all_mutations(store):
    first = store.publish(1, b"a")
    store.follow(2, 1)  # a follow takes a position too
    second = store.publish(1, b"b")
    assert second.id > first.id + 1
    assert store.last_id() == second.id


def test_graph_pages(store):
    store.follow_many([(s, 100) for s in range(50)] + [(100, s) for s in range(50)])
    assert store.sink_count(100) == 50 and store.source_count(100) == 50
    pages, after = [], None
    while page := store.sinks(100, limit=7, after=after):
        pages.extend(page)
        after = page[-1]
    assert pages == list(range(50))
    assert store.sources(100, limit=3, after=10) == [11, 12, 13]
    assert store.sources(100, after=(1 << 64) - 1) == []


def test_context_manager_and_closed_store(store):
    with store as same:
        assert same is store
    assert store.closed
    for call in (lambda: store.home(1), lambda: store.publish(1, b"x"), lambda: store.follow(1, 2), store.last_id):
        with pytest.raises(ClosedError, match="closed"):
            call()
    store.close()  # idempotent


BAD_CALLS = [
    ("publish str payload", lambda s: s.publish(1, "text"), InvalidArgumentError, "encode"),
    ("publish oversize", lambda s: s.publish(1, b"x" * (MAX_PAYLOAD + 1)), PayloadTooLargeError, "larger"),
    ("publish negative source", lambda s: s.publish(-1, b"x"), InvalidArgumentError, "range"),
    ("publish huge source", lambda s: s.publish(1 << 64, b"x"), InvalidArgumentError, "range"),
    ("publish float source", lambda s: s.publish(1.0, b"x"), InvalidArgumentError, "int"),
    ("publish bool source", lambda s: s.publish(True, b"x"), InvalidArgumentError, "int"),
    (
        "publish_many one bad item",
        lambda s: s.publish_many([(1, b"ok"), (2, "bad")]),
        InvalidArgumentError,
        r"items\[1\]",
    ),
    ("publish_many not pairs", lambda s: s.publish_many([(1, b"ok"), 5]), InvalidArgumentError, "pair"),
    (
        "publish_many oversize",
        lambda s: s.publish_many([(1, b"x" * (MAX_PAYLOAD + 1))]),
        PayloadTooLargeError,
        "larger",
    ),
    ("follow str", lambda s: s.follow("a", 1), InvalidArgumentError, "sink"),
    ("follow_many one bad", lambda s: s.follow_many([(5, 1), (1, -3)]), InvalidArgumentError, r"pairs\[1\]"),
    ("unfollow_many bad", lambda s: s.unfollow_many([(0, 1), None]), InvalidArgumentError, "pair"),
    ("home zero limit", lambda s: s.home(0, limit=0), InvalidArgumentError, "limit"),
    ("home negative limit", lambda s: s.home(0, limit=-5), InvalidArgumentError, "limit"),
    ("home oversize limit", lambda s: s.home(0, limit=MAX_LIMIT + 1), InvalidArgumentError, "limit"),
    ("home str limit", lambda s: s.home(0, limit="20"), InvalidArgumentError, "limit"),
    ("home bad max_id", lambda s: s.home(0, max_id=-1), InvalidArgumentError, "max_id"),
    ("timeline bad since_id", lambda s: s.timeline(1, since_id="x"), InvalidArgumentError, "since_id"),
    ("event unknown", lambda s: s.event(10**9), NotFoundError, "no such event"),
    ("delete unknown", lambda s: s.delete(10**9), NotFoundError, "no such event"),
    ("sinks bad limit", lambda s: s.sinks(1, limit=0), InvalidArgumentError, "limit"),
    ("tail bad timeout", lambda s: s.tail(0, timeout=-1), InvalidArgumentError, "timeout"),
]


@pytest.mark.parametrize("name, call, error, message", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_a_clear_error_and_changes_nothing(filled, name, call, error, message):
    before = digest(filled)
    with pytest.raises(error, match=message) as info:
        call(filled)
    assert isinstance(info.value, twittercore.Error)
    assert digest(filled) == before
    if hasattr(filled, "_check"):
        filled._check()


def test_numpy_style_integers_are_accepted(store):
    class Index:
        def __index__(self):
            return 4

    store.follow(Index(), 5)
    assert store.sources(4) == [5]


def test_open_rejects_what_it_cannot_open(tmp_path):
    with pytest.raises(twittercore.ConfigurationError, match="TLS"):
        twittercore.open("rediss://localhost:6379/0")
    with pytest.raises(twittercore.StoreError, match="cannot reach Redis"):
        twittercore.open("redis://127.0.0.1:1/0", timeout=0.5)
    with pytest.raises(InvalidArgumentError, match="directory path"):
        twittercore.open(42)
    (tmp_path / "file").write_bytes(b"not a directory")
    with pytest.raises(twittercore.StoreError):
        twittercore.open(str(tmp_path / "file"))
