"""A real Mastodon client (Mastodon.py) drives the example server over loopback."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]

mastodon = pytest.importorskip("mastodon")
from mastodon import Mastodon, StreamListener  # noqa: E402
from mastodon.errors import MastodonAPIError, MastodonNotFoundError, MastodonUnauthorizedError  # noqa: E402

from tests.server_fixtures import server_fixture  # noqa: E402

ADMIN = "client-admin"

server = server_fixture(ADMIN, heartbeat=0.5)


def client(url: str, name: str, admin: str = ADMIN) -> Mastodon:
    token = httpx.post(
        f"{url}/api/v1/accounts", data={"username": name}, headers={"Authorization": f"Bearer {admin}"}
    ).json()["access_token"]
    # version_check_mode="created": Mastodon.py reads /api/v1/instance and checks our version string.
    return Mastodon(api_base_url=url, access_token=token, version_check_mode="created", request_timeout=10)


def test_post_timelines_paging_follow_delete(server):
    check_post_timelines_paging_follow_delete(client(server, "alice"), client(server, "bob"))


def check_post_timelines_paging_follow_delete(alice: Mastodon, bob: Mastodon) -> None:
    """What a client sees of two fresh accounts: follow, post, page, unfollow, delete (also run on Redis)."""
    me = alice.account_verify_credentials()
    bob_me = bob.me()
    bob_id = bob_me.id
    assert isinstance(me.id, (int, str))

    relationship = alice.account_follow(bob_id)
    assert relationship.following is True
    assert [a.username for a in bob.account_followers(bob_id)] == [me.username]
    assert [a.username for a in alice.account_following(me.id)] == [bob_me.username]

    posted = [bob.status_post(f"bob <{n}>") if n % 2 else alice.status_post(f"alice {n}") for n in range(7)]
    assert posted[1].content == "<p>bob &lt;1&gt;</p>"
    assert alice.status(posted[1].id).id == posted[1].id

    # Home timeline, paged with the Link headers (fetch_next / fetch_previous).
    page = alice.timeline_home(limit=3)
    seen = []
    while page:
        seen += [s.id for s in page]
        page = alice.fetch_next(page)
    assert seen == [s.id for s in reversed(posted)]
    older = alice.timeline_home(limit=2, max_id=posted[4].id)
    assert [s.id for s in older] == [posted[3].id, posted[2].id]
    newer = alice.fetch_previous(older)
    assert [s.id for s in newer] == [posted[5].id, posted[4].id]

    # Account timeline.
    assert [s.id for s in alice.account_statuses(bob_id)] == [posted[5].id, posted[3].id, posted[1].id]

    # Unfollow removes bob's posts from alice's home timeline.
    assert alice.account_unfollow(bob_id).following is False
    assert all(s.account.username == me.username for s in alice.timeline_home())

    # Delete: own status yes, someone else's no.
    alice.status_delete(posted[0].id)
    with pytest.raises(MastodonNotFoundError):
        alice.status(posted[0].id)
    with pytest.raises(MastodonAPIError):
        alice.status_delete(posted[1].id)
    assert bob.status(posted[1].id).id == posted[1].id


def test_idempotency_key_and_auth(server):
    alice = client(server, "alice")
    first = alice.status_post("retry me", idempotency_key="abc")
    second = alice.status_post("retry me", idempotency_key="abc")
    assert first.id == second.id and len(alice.timeline_home()) == 1
    anonymous = Mastodon(api_base_url=server, access_token="wrong", version_check_mode="none")
    with pytest.raises(MastodonUnauthorizedError):
        anonymous.status_post("nope")
    assert alice.instance().version.startswith("4.")


class Collect(StreamListener):
    def __init__(self) -> None:
        self.updates: list = []
        self.deletes: list = []
        self.heartbeats = 0
        self.got = threading.Event()

    def on_update(self, status) -> None:
        self.updates.append(status)
        self.got.set()

    def on_delete(self, status_id) -> None:
        self.deletes.append(status_id)

    def handle_heartbeat(self) -> None:
        self.heartbeats += 1


def test_streamed_update(server):
    check_streamed_update(client(server, "alice"), client(server, "bob"))


def check_streamed_update(alice: Mastodon, bob: Mastodon) -> float:
    """bob's post reaches alice's user stream (the two may talk to different server processes); returns the seconds it took."""
    bob_me = bob.me()
    alice.account_follow(bob_me.id)
    listener = Collect()
    handle = alice.stream_user(listener, run_async=True, timeout=5)
    try:
        deadline = time.monotonic() + 10
        while listener.heartbeats == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # the greeting arrives once the stream is live
        assert listener.heartbeats, "the stream never went live"
        start = time.monotonic()
        status = bob.status_post("live!")
        assert listener.got.wait(10), "no update streamed"
        took = time.monotonic() - start
        assert listener.updates[0].id == status.id
        assert listener.updates[0].content == "<p>live!</p>"
        assert listener.updates[0].account.username == bob_me.username
        return took
    finally:
        handle.close()
