"""What the node tests compare against: a source's chain, every home, the memory store's answer."""

from __future__ import annotations

import time

import twittercore


def wait(predicate, timeout=10.0, step=0.05):
    """Poll ``predicate`` until it returns something truthy or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def source_chain(c, home, user):
    """A source's whole chain, oldest first, from its home node: (key, text)."""
    events: list = []
    params: dict = {"limit": 200}
    while True:
        page = c._call("GET", home, f"/api/v1/users/{user}/timeline", params=params)
        events += page
        if len(page) < 200:
            return [(int(e["id"]), e["content"]) for e in reversed(events)]
        params = {"limit": 200, "max_id": page[-1]["id"]}


def all_pages(store, sink):
    """Every event of a home timeline, newest first, paging by max_id (a page holds at most 10,000)."""
    out, max_id = [], None
    while True:
        page = store.home(sink, limit=10_000, max_id=max_id)
        out += page
        if len(page) < 10_000:
            return out
        max_id = page[-1].id - 1


def reference_homes(c, users, edges):
    """What twittercore.open(":memory:") shows, given the follows and every event in merge order.

    Texts start with their source's id and a colon, which is how an event finds its source here.
    """
    events = sorted(kv for user, home in users.items() for kv in source_chain(c, home, user))
    with twittercore.open(":memory:") as ref:
        for sink, source in edges:
            ref.follow(sink, source)
        for _, text in events:
            ref.publish(int(text.split(":", 1)[0]), text.encode())
        return {sink: [e.payload.decode() for e in all_pages(ref, sink)] for sink in users}


def homes(c, users):
    return {u: [e["content"] for e in c.home_all(home, u)] for u, home in users.items()}


def converge(c, users, edges, timeout=30.0, step=0.05):
    """Poll until every node's every home equals the memory store's answer; (that answer, seconds taken).
    Fails with the homes that differ (their lengths, got and expected) if they never do."""
    started = time.monotonic()
    expected = reference_homes(c, users, edges)
    got = wait(lambda: (h := homes(c, users)) == expected and h, timeout=timeout, step=step)
    elapsed = time.monotonic() - started
    got = got or homes(c, users)
    assert got == expected, {u: (len(got[u]), len(expected[u])) for u in users if got[u] != expected[u]}
    return expected, elapsed
