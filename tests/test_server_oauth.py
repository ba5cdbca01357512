"""OAuth as Mastodon does it, against the live server: apps, authorize, tokens, revoke, scopes.

Real clients too: Mastodon.py's create_app + log_in (password and code
flows) and toot's ``login_cli`` followed by post, timeline, follow by name,
whois and delete.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from twittercore.server.testing import running_server

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "oauth-admin"
PASSWORD = "correct horse battery"


@pytest.fixture(params=["memory", "lmdb"])
def server(request, tmp_path):
    if request.param == "memory":
        target, state = ":memory:", ":memory:"
    else:
        target, state = str(tmp_path / "store"), str(tmp_path / "server.sqlite3")
    with running_server(target, state, admin_token=ADMIN, heartbeat=0.5) as url:
        yield url


def make_user(c: httpx.Client, name: str, password: str = PASSWORD) -> str:
    r = c.post("/api/v1/accounts", data={"username": name, "email": f"{name}@example.org", "password": password},
               headers={"Authorization": f"Bearer {ADMIN}"})  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def make_app(c: httpx.Client, scopes: str = "read write follow", redirect: str = "urn:ietf:wg:oauth:2.0:oob") -> dict:
    r = c.post("/api/v1/apps", json={"client_name": "tester", "redirect_uris": redirect, "scopes": scopes})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["client_id"] and body["client_secret"] and body["redirect_uris"] == redirect.split()
    return body


def pkce() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(os.urandom(40)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def test_authorization_code_with_pkce(server):
    with httpx.Client(base_url=server, timeout=10) as c:
        make_user(c, "alice")
        app = make_app(c, redirect="https://client.example/cb")
        verifier, challenge = pkce()
        query = {"response_type": "code", "client_id": app["client_id"], "redirect_uri": "https://client.example/cb",
                 "scope": "read write", "state": "xyz", "code_challenge": challenge, "code_challenge_method": "S256"}  # fmt: skip
        page = c.get("/oauth/authorize", params=query)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert page.headers["x-frame-options"] == "DENY" and "read write" in page.text
        assert 'name="password"' in page.text and "tester" in page.text
        # A wrong password shows the form again and issues nothing.
        wrong = c.post(
            "/oauth/authorize", data={**query, "username": "alice", "password": "nope nope", "decision": "approve"}
        )
        assert wrong.status_code == 401 and "Invalid username or password" in wrong.text
        ok = c.post(
            "/oauth/authorize",
            data={**query, "username": "alice@example.org", "password": PASSWORD, "decision": "approve"},
        )
        assert ok.status_code == 302
        location = urlsplit(ok.headers["location"])
        assert location.netloc == "client.example" and parse_qs(location.query)["state"] == ["xyz"]
        code = parse_qs(location.query)["code"][0]
        form = {"grant_type": "authorization_code", "code": code, "client_id": app["client_id"],
                "client_secret": app["client_secret"], "redirect_uri": "https://client.example/cb"}  # fmt: skip
        # Without the verifier, or with another, the code is refused (and, as it is single-use, consumed).
        bad = c.post("/oauth/token", data={**form, "code_verifier": pkce()[0]})
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
        again = c.post("/oauth/token", data={**form, "code_verifier": verifier})
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        # A fresh code with the right verifier gives a token with exactly the consented scopes.
        ok = c.post(
            "/oauth/authorize", data={**query, "username": "alice", "password": PASSWORD, "decision": "approve"}
        )
        code = parse_qs(urlsplit(ok.headers["location"]).query)["code"][0]
        token = c.post("/oauth/token", data={**form, "code": code, "code_verifier": verifier})
        assert token.status_code == 200, token.text
        body = token.json()
        assert body["token_type"] == "Bearer" and body["scope"] == "read write"
        me = c.get("/api/v1/accounts/verify_credentials", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert me.json()["username"] == "alice"
        # Deny redirects with access_denied.
        denied = c.post("/oauth/authorize", data={**query, "decision": "deny"})
        assert denied.status_code == 302 and "error=access_denied" in denied.headers["location"]
        # An unregistered redirect URI never redirects (RFC 6749 4.1.2.1).
        evil = c.get("/oauth/authorize", params={**query, "redirect_uri": "https://evil.example/"})
        assert evil.status_code == 400 and "location" not in evil.headers


def test_password_client_credentials_revoke_and_scopes(server):
    with httpx.Client(base_url=server, timeout=10) as c:
        make_user(c, "alice")
        bob_token = make_user(c, "bob")
        bob = c.get("/api/v1/accounts/verify_credentials", headers={"Authorization": f"Bearer {bob_token}"}).json()[
            "id"
        ]
        app = make_app(c)
        creds = {"client_id": app["client_id"], "client_secret": app["client_secret"]}
        # Only the scopes the app registered can be granted.
        assert c.post("/oauth/token", data={**creds, "grant_type": "password", "username": "alice", "password": PASSWORD,
                                            "scope": "read push"}).json()["error"] == "invalid_scope"  # fmt: skip
        assert c.post("/oauth/token", data={**creds, "grant_type": "password", "username": "alice",
                                            "password": "wrong password"}).status_code == 400  # fmt: skip
        assert c.post("/oauth/token", data={"grant_type": "password", "client_id": app["client_id"], "client_secret": "x",
                                            "username": "alice", "password": PASSWORD}).status_code == 401  # fmt: skip
        read_only = c.post("/oauth/token", data={**creds, "grant_type": "password", "username": "alice",
                                                 "password": PASSWORD, "scope": "read"}).json()  # fmt: skip
        ro = {"Authorization": f"Bearer {read_only['access_token']}"}
        assert read_only["scope"] == "read"
        assert c.get("/api/v1/timelines/home", headers=ro).status_code == 200
        refused = c.post("/api/v1/statuses", data={"status": "hi"}, headers=ro)
        assert refused.status_code == 403 and refused.json()["error"] == "This action is outside the authorized scopes"
        assert c.post(f"/api/v1/accounts/{bob}/follow", headers=ro).status_code == 403
        # Granular and legacy scopes: write:statuses may post, not follow; follow may follow.
        granular = make_app(c, scopes="write:statuses follow")
        gcreds = {"client_id": granular["client_id"], "client_secret": granular["client_secret"]}
        g = c.post("/oauth/token", data={**gcreds, "grant_type": "password", "username": "alice", "password": PASSWORD,
                                         "scope": "write:statuses follow"}).json()  # fmt: skip
        gh = {"Authorization": f"Bearer {g['access_token']}"}
        assert c.post("/api/v1/statuses", data={"status": "granular"}, headers=gh).status_code == 200
        assert c.post(f"/api/v1/accounts/{bob}/follow", headers=gh).status_code == 200
        assert c.get("/api/v1/timelines/home", headers=gh).status_code == 403
        # An app-only token acts as no one.
        app_token = c.post("/oauth/token", data={**creds, "grant_type": "client_credentials", "scope": "read"}).json()
        at = {"Authorization": f"Bearer {app_token['access_token']}"}
        assert c.get("/api/v1/timelines/home", headers=at).status_code == 422
        # Revocation: only by the app the token was issued to; then the token is dead.
        other = make_app(c)
        assert c.post("/oauth/revoke", data={"client_id": other["client_id"], "client_secret": other["client_secret"],
                                             "token": read_only["access_token"]}).status_code == 403  # fmt: skip
        assert c.post("/oauth/revoke", data={**creds, "token": read_only["access_token"]}).json() == {}
        assert c.get("/api/v1/timelines/home", headers=ro).status_code == 401
        # Malformed app registrations are 422, unknown grant types 400.
        assert c.post("/api/v1/apps", data={"client_name": "x", "redirect_uris": "not a uri"}).status_code == 422
        assert c.post("/api/v1/apps", data={"client_name": "x", "redirect_uris": "urn:ietf:wg:oauth:2.0:oob",
                                            "scopes": "read admin:everything"}).status_code == 422  # fmt: skip
        assert (
            c.post("/oauth/token", data={**creds, "grant_type": "implicit"}).json()["error"] == "unsupported_grant_type"
        )
        meta = c.get("/.well-known/oauth-authorization-server").json()
        assert "password" in meta["grant_types_supported"] and meta["code_challenge_methods_supported"] == ["S256"]


def test_passwords_are_hashed(tmp_path):
    state = tmp_path / "server.sqlite3"
    with running_server(str(tmp_path / "store"), str(state), admin_token=ADMIN) as url, httpx.Client(base_url=url) as c:
        make_user(c, "alice")
    raw = (
        state.read_bytes() + (tmp_path / "server.sqlite3-wal").read_bytes()
        if (tmp_path / "server.sqlite3-wal").exists()
        else state.read_bytes()
    )
    assert PASSWORD.encode() not in raw and b"$argon2id$" in raw


def test_mastodon_py_create_app_and_log_in(server):
    mastodon = pytest.importorskip("mastodon")
    with httpx.Client(base_url=server, timeout=10) as c:
        make_user(c, "alice")
    client_id, client_secret = mastodon.Mastodon.create_app(
        "mpy", api_base_url=server, scopes=["read", "write", "follow"]
    )
    m = mastodon.Mastodon(
        client_id=client_id, client_secret=client_secret, api_base_url=server, version_check_mode="none"
    )
    token = m.log_in("alice@example.org", PASSWORD, scopes=["read", "write", "follow"], allow_http=True)
    assert token and m.account_verify_credentials().username == "alice"
    assert m.status_post("via Mastodon.py").content == "<p>via Mastodon.py</p>"
    # The code flow: the URL Mastodon.py builds, a login on the page, the code back into log_in.
    url = m.auth_request_url(scopes=["read"], redirect_uris="urn:ietf:wg:oauth:2.0:oob", allow_http=True)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    page = httpx.post(
        f"{server}/oauth/authorize", data={**query, "username": "alice", "password": PASSWORD, "decision": "approve"}
    )
    code = re.search(r"<code>([^<]+)</code>", page.text).group(1)
    m2 = mastodon.Mastodon(
        client_id=client_id, client_secret=client_secret, api_base_url=server, version_check_mode="none"
    )
    m2.log_in(code=code, scopes=["read"], allow_http=True)
    assert m2.timeline_home()[0].content == "<p>via Mastodon.py</p>"


def toot(home: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CONFIG_HOME": str(home), "HOME": str(home), "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "toot", *args], env=env, capture_output=True, text=True, timeout=60, input=input
    )


def test_toot_cli(tmp_path):
    pytest.importorskip("toot")
    with running_server(str(tmp_path / "store"), str(tmp_path / "state.sqlite3"), admin_token=ADMIN) as url:
        with httpx.Client(base_url=url, timeout=10) as c:
            make_user(c, "alice")
            bob = make_user(c, "bob")
            c.post("/api/v1/statuses", data={"status": "bob was here"}, headers={"Authorization": f"Bearer {bob}"})
        home = tmp_path / "home"
        login = toot(home, "login_cli", "--instance", url, "--email", "alice@example.org", "--password", PASSWORD)
        assert login.returncode == 0, login.stdout + login.stderr
        assert "Successfully logged in" in login.stdout
        posted = toot(home, "post", "hello from toot")
        assert posted.returncode == 0, posted.stderr
        status_id = re.search(r"/(\d+)\s*$", posted.stdout.strip()).group(1)
        follow = toot(home, "follow", "bob")
        assert follow.returncode == 0 and "You are now following bob" in follow.stdout, follow.stdout + follow.stderr
        whois = toot(home, "whois", "bob", "--json")
        assert whois.returncode == 0, whois.stderr
        assert '"username": "bob"' in whois.stdout
        timeline = toot(home, "timelines", "home", "--no-pager", "--no-clear", "--limit", "5")
        assert timeline.returncode == 0, timeline.stderr
        assert "hello from toot" in timeline.stdout and "bob was here" in timeline.stdout
        deleted = toot(home, "delete", status_id)
        assert deleted.returncode == 0, deleted.stderr
        with httpx.Client(base_url=url) as c:
            assert c.get(f"/api/v1/statuses/{status_id}").status_code == 404
