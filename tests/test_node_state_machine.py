"""G5 through decentralised nodes: three real ``twittercore node`` processes,
driven over their Mastodon API, answer like the reference store.

Accounts live on all three nodes; follows, posts and deletes go to the actor's
home node, home pages are read on the reader's home node right after (strict
mode: a read holds every publish acknowledged before it began, on any node),
with Mastodon paging.  The reference is ``twittercore.open(":memory:")``
rebuilt before each read from everything posted, in the nodes' merge order
(their status ids), with the follows as they are now and the deletes done:
any difference of content, order or paging is a failure.
"""

from __future__ import annotations

import itertools

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import twittercore
from twittercore.node.testing import TOKEN, NodeCluster

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

NODES = 3
USERS_PER_NODE = 2
USERS = range(NODES * USERS_PER_NODE)

_cluster: NodeCluster | None = None
_http: httpx.Client | None = None
#: Accounts made once per module: (id, home node, auth header), by index.
_accounts: list[tuple[str, int, dict[str, str]]] = []
#: Everything ever posted, across examples: status id -> [author index, text, deleted].
_posts: dict[int, list] = {}
_texts = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def nodes(tmp_path_factory):
    global _cluster, _http
    with NodeCluster(NODES, tmp_path_factory.mktemp("sm-nodes")) as cluster, httpx.Client(timeout=15) as http:
        _cluster, _http = cluster, http
        for user in USERS:
            home = user % NODES + 1
            url = cluster.urls[home - 1]
            r = http.post(
                f"{url}/api/v1/accounts", data={"username": f"u{user}"}, headers={"authorization": f"Bearer {TOKEN}"}
            )
            r.raise_for_status()
            auth = {"authorization": f"Bearer {r.json()['access_token']}"}
            me = http.get(f"{url}/api/v1/accounts/verify_credentials", headers=auth)
            me.raise_for_status()
            _accounts.append((me.json()["id"], home, auth))
        try:
            yield cluster
        finally:
            _cluster = _http = None
            _accounts.clear()
            _posts.clear()


def _url(user: int) -> str:
    assert _cluster is not None
    return _cluster.urls[_accounts[user][1] - 1]


def _ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, (
        f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:300]}"
    )
    return response.json()


class NodesAgainstReference(RuleBasedStateMachine):
    @initialize()
    def start_clean(self):
        assert _http is not None
        # Accounts and posts outlive an example (registering costs a password hash);
        # follows are reset, and the reference is rebuilt from every post anyway.
        self.follows: set[tuple[int, int]] = set()
        for sink in USERS:
            for source in USERS:
                if sink != source:
                    _ok(
                        _http.post(
                            f"{_url(sink)}/api/v1/accounts/{_accounts[source][0]}/unfollow", headers=_accounts[sink][2]
                        )
                    )

    # ---------------------------------------------------------------- writes

    @rule(sink=st.sampled_from(USERS), source=st.sampled_from(USERS))
    def follow(self, sink, source):
        if sink == source:
            return
        got = _ok(_http.post(f"{_url(sink)}/api/v1/accounts/{_accounts[source][0]}/follow", headers=_accounts[sink][2]))
        assert got["following"] is True
        self.follows.add((sink, source))

    @rule(sink=st.sampled_from(USERS), source=st.sampled_from(USERS))
    def unfollow(self, sink, source):
        if sink == source:
            return
        got = _ok(
            _http.post(f"{_url(sink)}/api/v1/accounts/{_accounts[source][0]}/unfollow", headers=_accounts[sink][2])
        )
        assert got["following"] is False
        self.follows.discard((sink, source))

    @rule(author=st.sampled_from(USERS), count=st.integers(1, 3))
    def post(self, author, count):
        for _ in range(count):
            text = f"t{next(_texts)}"
            status = _ok(
                _http.post(f"{_url(author)}/api/v1/statuses", data={"status": text}, headers=_accounts[author][2])
            )
            assert status["content"] == f"<p>{text}</p>"
            _posts[int(status["id"])] = [author, text, False]

    @rule(pick=st.integers(0, 10_000))
    def delete(self, pick):
        # No precondition on the posts: they outlive examples, and Hypothesis must
        # draw the same data when it replays one.
        live = sorted(i for i, (_, _, deleted) in _posts.items() if not deleted)
        if not live:
            return
        id = live[pick % len(live)]
        author = _posts[id][0]
        _ok(_http.delete(f"{_url(author)}/api/v1/statuses/{id}", headers=_accounts[author][2]))
        _posts[id][2] = True

    # ----------------------------------------------------------------- reads

    def reference(self):
        """The memory store with every post in merge order, and status id <-> its id there."""
        ref = twittercore.open(":memory:")
        to_ref: dict[int, int] = {}
        # Every account follows itself (its home holds its own posts, as on Mastodon).
        for sink, source in self.follows | {(u, u) for u in USERS}:
            ref.follow(sink, source)
        for id in sorted(_posts):
            author, text, _ = _posts[id]
            to_ref[id] = ref.publish(author, text.encode()).id
        for id, (_, _, deleted) in _posts.items():
            if deleted:
                ref.delete(to_ref[id])
        return ref, to_ref

    @rule(
        reader=st.sampled_from(USERS),
        limit=st.sampled_from([1, 2, 5, 40]),
        bound=st.sampled_from([None, "max_id", "since_id", "min_id"]),
        pick=st.integers(0, 10_000),
    )
    def read_home(self, reader, limit, bound, pick):
        params: dict = {"limit": limit}
        ref_params: dict = {}
        ref, to_ref = self.reference()
        if bound is not None and _posts:
            ids = sorted(_posts)
            at = ids[pick % len(ids)]
            params[bound] = str(at)
            # Mastodon's max_id is exclusive, the store's inclusive.
            ref_params[bound] = to_ref[at] - 1 if bound == "max_id" else to_ref[at]
        page = _ok(_http.get(f"{_url(reader)}/api/v1/timelines/home", params=params, headers=_accounts[reader][2]))
        from_ref = {v: k for k, v in to_ref.items()}
        want = [(from_ref[e.id], f"<p>{e.payload.decode()}</p>") for e in ref.home(reader, limit=limit, **ref_params)]
        assert [(int(s["id"]), s["content"]) for s in page] == want, f"home of u{reader} {params}"
        ref.close()

    @invariant()
    def relationships_agree(self):
        # Cheap and always on: the follow flags a client sees are the reference's follows.
        if not hasattr(self, "follows"):
            return
        for sink in USERS[:2]:
            ids = [_accounts[s][0] for s in USERS]
            r = _ok_list(
                _http.get(
                    f"{_url(sink)}/api/v1/accounts/relationships", params={"id[]": ids}, headers=_accounts[sink][2]
                )
            )
            assert {int(x["id"]) for x in r if x["following"]} == {
                int(_accounts[s][0]) for k, s in self.follows if k == sink
            }


def _ok_list(response: httpx.Response) -> list:
    assert response.status_code == 200, response.text[:300]
    return response.json()


NodesAgainstReference.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestNodesAgainstReference = NodesAgainstReference.TestCase
