"""Dynamic membership: a node joins through any member, moves to a new address, and a taken index is refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

from twittercore.errors import InvalidArgumentError
from twittercore.node.membership import Member, Membership

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
from tests.node_checks import wait  # noqa: E402
from twittercore.node.testing import TOKEN, NodeCluster, free_ports  # noqa: E402


def test_merge_is_order_independent_and_refuses_claims_on_our_index():
    updates = [
        {1: Member("http://a", 0), 3: Member("http://c", 1)},
        {3: Member("http://c-moved", 2)},
        {4: Member("http://d", 1)},
        {4: Member("http://d-twin", 1)},  # a conflict: the smaller URL wins everywhere
    ]
    results = []
    for order in (updates, updates[::-1], updates[1:] + updates[:1]):
        m = Membership(2, "http://b", 1, {})
        for u in order:
            m.merge(u)
        results.append(m.peers())
    assert results[0] == results[1] == results[2] == {1: "http://a", 3: "http://c-moved", 4: "http://d"}
    m = Membership(2, "http://b", 5, {})
    assert m.merge({2: Member("http://b", 9)}) == ([], [])  # ourselves, as others know us: fine
    assert m.merge({2: Member("http://impostor", 5)}) == ([], [2])
    assert m.conflicts == 1 and m.peers() == {}


@pytest.mark.parametrize(
    "wire",
    [
        [],
        {"x": ["http://a", 1]},
        {"1": ["ftp://a", 1]},
        {"1": ["http://a", -1]},
        {"1": "http://a"},
        {"0": ["http://a", 1]},
    ],
)
def test_bad_member_lists_are_refused(wire):
    with pytest.raises(InvalidArgumentError):
        Membership.from_wire(wire)


def _members(c, i):
    return c.stats(i)["members"]


def test_a_node_joins_through_one_member_and_everyone_learns_it(tmp_path):
    with NodeCluster(3, tmp_path) as c:
        d = c.join(via=1)
        assert d == 4
        # node4 knew only node1's URL; it learned the rest, and announced itself to all of them.
        everyone = {str(i): c.urls[i - 1] for i in (1, 2, 3, 4)}
        for i in (1, 2, 3, 4):
            expected = {k: v for k, v in everyone.items() if k != str(i)}
            assert wait(lambda i=i, expected=expected: _members(c, i) == expected, timeout=5), (i, _members(c, i))
        c.wait_meshed()
        # Users across the new edge follow and see each other, in both directions.
        old, new = c.create_user(2, "m-old"), c.create_user(4, "m-new")
        assert new >> 40 == 4
        c.follow(2, old, new)
        c.follow(4, new, old)
        c.publish(4, new, f"{new}:hello")
        c.publish(2, old, f"{old}:welcome")
        for home, user, other in ((2, old, f"{new}:hello"), (4, new, f"{old}:welcome")):
            got = wait(lambda home=home, user=user: c.home(home, user), timeout=10)
            assert [e["content"] for e in got] == [other]

        # node4 moves to a new port: its higher incarnation carries the new URL to everyone.
        before = c.stats(4)["incarnation"]
        c.move(4)
        assert c.stats(4)["incarnation"] == before + 1
        for i in (1, 2, 3):
            assert wait(lambda i=i: _members(c, i).get("4") == c.urls[3], timeout=6), (i, _members(c, i))
        c.publish(2, old, f"{old}:after-move")
        got = wait(lambda: f"{old}:after-move" in [e["content"] for e in c.home(4, new)], timeout=10)
        assert got

        # A second node started with index 4 at another address (its own fresh store) is refused, and
        # nothing about node 4 changes.
        (port,) = free_ports(1)
        impostor = subprocess.run(
            [
                sys.executable, "-m", "twittercore", "node", "--data", str(tmp_path / "impostor"),
                "--port", str(port), "--name", "node4", "--admin-token", TOKEN,
                "--join", c.urls[0], "--advertise", f"http://127.0.0.1:{port}",
            ],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert impostor.returncode != 0
        assert "already taken" in impostor.stderr, impostor.stderr[-2000:]
        assert all(_members(c, i)["4"] == c.urls[3] for i in (1, 2, 3))
        assert c.stats(1)["member_conflicts"] >= 1

        # A bad member list is a 422 and changes nothing.
        bad = c.http.post(c.urls[0] + "/node/v1/members", json={"from": 9, "members": {"9": ["nope", 1]}})
        assert bad.status_code == 422 and "9" not in _members(c, 1)


def test_a_node_restarted_from_a_stale_copy_of_its_store_takes_its_chains_back(tmp_path):
    """A restored backup must not reuse sequence numbers its chains already gave out: the node takes
    the missing links of its own chains back from a peer (hash-checked) before it takes new posts."""
    import shutil

    with NodeCluster(3, tmp_path) as c:
        writer, reader = c.create_user(2, "stale-writer"), c.create_user(1, "stale-reader")
        c.follow(1, reader, writer)
        for n in range(3):
            c.publish(2, writer, f"{writer}:{n}")
        c.stop(2)
        backup = tmp_path / "backup"
        shutil.copytree(tmp_path / "node2", backup)
        c.start(2)
        for n in range(3, 7):
            c.publish(2, writer, f"{writer}:{n}")
        assert wait(lambda: len(c.home(1, reader)) == 7, timeout=10)
        c.stop(2)
        shutil.rmtree(tmp_path / "node2")
        shutil.copytree(backup, tmp_path / "node2")  # the disk goes back to the copy: 3 posts, not 7
        c.start(2)
        assert c.stats(2)["recovered"] == 4
        after = c.publish(2, writer, f"{writer}:7")
        assert after["seq"] == 8  # not 4: the chain went on from what the peers held
        texts = [f"{writer}:{n}" for n in range(8)]
        got = wait(lambda: [e["content"] for e in c.home(1, reader)][::-1] == texts, timeout=10)
        assert got, [e["content"] for e in c.home(1, reader)]
        assert all(c.stats(i)["forks"] == 0 for i in (1, 2, 3))
