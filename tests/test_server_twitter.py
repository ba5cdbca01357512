"""Twitter's v1.1 subset over HTTPS, driven by tweepy (which speaks only HTTPS).

The test makes its own certificate authority and server certificate
(trustme) and tells tweepy's requests session to trust it.
"""

from __future__ import annotations

import ssl

import httpx
import pytest

from twittercore.server.testing import running_server

tweepy = pytest.importorskip("tweepy")
trustme = pytest.importorskip("trustme")

ADMIN = "twitter-admin"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    root = tmp_path_factory.mktemp("tls")
    certfile, keyfile, cafile = root / "cert.pem", root / "key.pem", root / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return str(certfile), str(keyfile), str(cafile)


def api_for(url: str, token: str, cafile: str) -> tweepy.API:
    api = tweepy.API(tweepy.OAuth2BearerHandler(token), host=url.split("//")[1])
    api.session.verify = cafile
    api.session.trust_env = False  # else $REQUESTS_CA_BUNDLE would replace our CA
    return api


def test_tweepy_v1_1(tls, tmp_path):
    certfile, keyfile, cafile = tls
    with running_server(
        str(tmp_path / "store"), str(tmp_path / "state.sqlite3"), admin_token=ADMIN, tls=(certfile, keyfile)
    ) as url:
        assert url.startswith("https://")
        tokens = {}
        with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=cafile), timeout=10) as c:
            for name in ("alice", "bob", "carol", "dave"):
                r = c.post("/api/v1/accounts", data={"username": name}, headers={"Authorization": f"Bearer {ADMIN}"})
                tokens[name] = r.json()["access_token"]
        alice, bob, carol, dave = (api_for(url, tokens[n], cafile) for n in ("alice", "bob", "carol", "dave"))
        me = alice.verify_credentials()
        assert me.screen_name == "alice"

        bob_user = alice.create_friendship(screen_name="bob")
        assert bob_user.screen_name == "bob"
        carol_id = carol.verify_credentials().id
        alice.create_friendship(user_id=carol_id)
        dave.create_friendship(screen_name="alice")
        tweets = [(bob if n % 2 else carol).update_status(f"tweet {n}") for n in range(8)]
        own = alice.update_status("alice's own")
        assert own.text == "alice's own" and own.user.screen_name == "alice"
        ids = [t.id for t in tweets] + [own.id]

        home = alice.home_timeline(count=200)
        assert [t.id for t in home] == ids[::-1]
        # since_id exclusive, max_id inclusive, count as Twitter defined them.
        assert [t.id for t in alice.home_timeline(since_id=ids[5])] == ids[6:][::-1]
        assert [t.id for t in alice.home_timeline(max_id=ids[3], count=2)] == [ids[3], ids[2]]
        assert [t.id for t in alice.user_timeline(screen_name="bob")] == [
            t.id for t in tweets if t.user.screen_name == "bob"
        ][::-1]
        assert [t.id for t in alice.user_timeline(user_id=carol_id, max_id=ids[4], since_id=ids[0], count=1)] == [
            ids[4]
        ]
        assert alice.user_timeline()[0].id == own.id  # default: the authenticating user

        shown = alice.get_status(ids[1])
        assert shown.text == "tweet 1" and shown.user.screen_name == "bob"
        with pytest.raises(tweepy.Forbidden):
            alice.destroy_status(ids[1])  # not hers
        assert bob.destroy_status(ids[1]).id == ids[1]
        with pytest.raises(tweepy.NotFound) as gone:
            alice.get_status(ids[1])
        assert gone.value.api_codes == [144]

        # Cursored id lists: three followees of alice in pages of two, then the end (0).
        alice.create_friendship(screen_name="dave")
        first = alice.get_friend_ids(count=2, stringify_ids=True)
        assert len(first) == 2 and all(isinstance(i, str) for i in first)
        followees = set(first)
        raw = httpx.get(
            f"{url}/1.1/friends/ids.json",
            params={"count": 2},
            headers={"Authorization": f"Bearer {tokens['alice']}"},
            verify=ssl.create_default_context(cafile=cafile),
        ).json()
        assert len(raw["ids"]) == 2 and raw["next_cursor"] != 0 and raw["previous_cursor"] == 0
        rest = httpx.get(f"{url}/1.1/friends/ids.json", params={"count": 2, "cursor": raw["next_cursor"]},
                         headers={"Authorization": f"Bearer {tokens['alice']}"}, verify=ssl.create_default_context(cafile=cafile)).json()  # fmt: skip
        assert len(rest["ids"]) == 1 and rest["next_cursor"] == 0
        followees |= {str(i) for i in rest["ids"]}
        assert len(followees) == 3
        all_ids = list(tweepy.Cursor(alice.get_friend_ids, count=1).items())
        assert sorted(all_ids) == sorted(int(i) for i in followees) and alice.verify_credentials().id not in all_ids
        assert alice.get_follower_ids() == [dave.verify_credentials().id]

        alice.destroy_friendship(screen_name="bob")
        assert all(t.user.screen_name != "bob" for t in alice.home_timeline())
        with pytest.raises(tweepy.Forbidden):
            alice.create_friendship(screen_name="alice")
        with pytest.raises(tweepy.NotFound):
            alice.create_friendship(screen_name="nobody")
        with pytest.raises(tweepy.Forbidden):
            alice.update_status("x" * 281)
        with pytest.raises(tweepy.Unauthorized):
            api_for(url, "wrong", cafile).home_timeline()
        bad = httpx.get(f"{url}/1.1/statuses/home_timeline.json", params={"max_id": "abc"},
                        headers={"Authorization": f"Bearer {tokens['alice']}"}, verify=ssl.create_default_context(cafile=cafile))  # fmt: skip
        assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == 44
