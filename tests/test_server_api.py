"""Finding people, relationships, CORS, WebSocket streaming and malformed requests, over real HTTP."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from tests.server_fixtures import server_fixture

ADMIN = "api-admin"

server = server_fixture(ADMIN, heartbeat=0.3)


def register(c: httpx.Client, name: str) -> tuple[str, dict[str, str]]:
    r = c.post("/api/v1/accounts", data={"username": name}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    return c.get("/api/v1/accounts/verify_credentials", headers=headers).json()["id"], headers


def test_lookup_search_relationships(server):
    with httpx.Client(base_url=server, timeout=10) as c:
        alice, a = register(c, "alice")
        alan, _ = register(c, "Alan_2")
        bob, b = register(c, "bob")
        assert c.get("/api/v1/accounts/lookup", params={"acct": "bob"}).json()["id"] == bob
        assert c.get("/api/v1/accounts/lookup", params={"acct": "@BOB"}).json()["id"] == bob  # case-insensitive
        host = server.split("//")[1]
        assert c.get("/api/v1/accounts/lookup", params={"acct": f"bob@{host}"}).json()["id"] == bob
        assert c.get("/api/v1/accounts/lookup", params={"acct": "bob@elsewhere.example"}).status_code == 404
        assert c.get("/api/v1/accounts/lookup", params={"acct": "nobody"}).status_code == 404
        assert c.get("/api/v1/accounts/lookup").status_code == 400
        found = c.get("/api/v2/search", params={"q": "al", "type": "accounts", "resolve": "true"}, headers=a).json()
        assert [x["username"] for x in found["accounts"]] == ["Alan_2", "alice"] and found["statuses"] == []
        assert c.get("/api/v2/search", params={"q": "al", "limit": 1, "offset": 1}).json()["accounts"][0]["id"] == alice
        assert c.get("/api/v2/search", params={"q": "a%_"}).json()["accounts"] == []  # no LIKE wildcards
        status = c.post("/api/v1/statuses", data={"status": "findable"}, headers=b).json()
        by_id = c.get("/api/v2/search", params={"q": status["id"], "type": "statuses"}).json()
        assert [s["id"] for s in by_id["statuses"]] == [status["id"]]
        by_url = c.get("/api/v2/search", params={"q": status["url"]}).json()
        assert [s["id"] for s in by_url["statuses"]] == [status["id"]]
        assert c.get("/api/v2/search").status_code == 400
        assert c.get("/api/v2/search", params={"q": "x", "type": "nonsense"}).status_code == 400
        c.post(f"/api/v1/accounts/{bob}/follow", headers=a).raise_for_status()
        rels = c.get(
            "/api/v1/accounts/relationships", params=[("id[]", bob), ("id[]", alan), ("id[]", "999999")], headers=a
        ).json()
        assert [(r["id"], r["following"], r["followed_by"]) for r in rels] == [(bob, True, False), (alan, False, False)]
        rev = c.get("/api/v1/accounts/relationships", params={"id": alice}, headers=b).json()
        assert rev[0]["followed_by"] is True and rev[0]["following"] is False
        assert c.get("/api/v1/accounts/relationships", params={"id": bob}).status_code == 401


def test_cors_as_mastodon_sends_it(server):
    with httpx.Client(base_url=server, timeout=10) as c:
        _, a = register(c, "alice")
        pre = c.options("/api/v1/statuses", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                                                     "Access-Control-Request-Headers": "authorization, idempotency-key"})  # fmt: skip
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "*"
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert pre.headers["access-control-allow-headers"] == "authorization, idempotency-key"
        home = c.get("/api/v1/timelines/home", headers={**a, "Origin": "https://app.example"})  # the fast path
        assert (
            home.headers["access-control-allow-origin"] == "*"
            and "Link" in home.headers["access-control-expose-headers"]
        )
        err = c.get("/api/v1/accounts/999999", headers={"Origin": "https://app.example"})
        assert err.status_code == 404 and err.headers["access-control-allow-origin"] == "*"
        token = c.options(
            "/oauth/token", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        )
        assert token.status_code == 200
        # Not on the HTML authorize page, and not without an Origin.
        assert (
            "access-control-allow-origin"
            not in c.get("/oauth/authorize", headers={"Origin": "https://x.example"}).headers
        )
        assert "access-control-allow-origin" not in c.get("/api/v1/instance").headers


def test_websocket_streaming(server):
    with httpx.Client(base_url=server, timeout=10) as c:
        alice, a = register(c, "alice")
        bob, b = register(c, "bob")
        c.post(f"/api/v1/accounts/{bob}/follow", headers=a).raise_for_status()
        token = a["Authorization"].split()[1]
        ws_url = server.replace("http", "ws", 1) + "/api/v1/streaming"

        async def scenario() -> None:
            # Refused without a valid token, before the handshake completes.
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                async with websockets.connect(f"{ws_url}?access_token=wrong&stream=user"):
                    pass
            assert refused.value.response.status_code == 401
            async with websockets.connect(f"{ws_url}?access_token={token}&stream=user") as ws:
                await asyncio.sleep(0.2)
                status = await asyncio.to_thread(
                    lambda: c.post("/api/v1/statuses", data={"status": "over ws"}, headers=b).json()
                )
                event = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert event["stream"] == ["user"] and event["event"] == "update"
                assert json.loads(event["payload"])["id"] == status["id"]
                await asyncio.to_thread(
                    lambda: c.delete(f"/api/v1/statuses/{status['id']}", headers=b).raise_for_status()
                )
                event = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert event["event"] == "delete" and event["payload"] == status["id"]
                # Unsubscribe: nothing more arrives; bad messages get an error frame.
                await ws.send(json.dumps({"type": "unsubscribe", "stream": "user"}))
                await ws.send("not json")
                assert "error" in json.loads(await asyncio.wait_for(ws.recv(), 10))
                await asyncio.to_thread(lambda: c.post("/api/v1/statuses", data={"status": "unheard"}, headers=b))
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.7)
            # The token as the subprotocol (what browsers do); subscribe by message.
            async with websockets.connect(ws_url, subprotocols=[token]) as ws:
                await ws.send(json.dumps({"type": "subscribe", "stream": "user"}))
                await asyncio.sleep(0.2)
                status = await asyncio.to_thread(
                    lambda: c.post("/api/v1/statuses", data={"status": "again"}, headers=b).json()
                )
                event = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert (
                    json.loads(event["payload"])["content"] == "<p>again</p>"
                    and json.loads(event["payload"])["id"] == status["id"]
                )

        asyncio.run(scenario())


BAD_BODIES = [
    ("lone surrogate in status", b'{"status": "cut \\ud83d"}', "application/json"),
    ("lone surrogate in spoiler", b'{"status": "ok", "spoiler_text": "\\udc00"}', "application/json"),
    ("lone surrogate in language", b'{"status": "ok", "language": "\\ud800"}', "application/json"),
    ("deep nesting", b'{"status": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json"),
    ("deep nesting under the size limit", b'{"status": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", "application/json"),
    ("moderate nesting", b'{"status": "x", "poll": ' + b'{"a":' * 50 + b"1" + b"}" * 50 + b"}", "application/json"),
    ("oversized", b'{"status": "' + b"x" * 200_000 + b'"}', "application/json"),
    ("not JSON", b'{"status": ', "application/json"),
    ("JSON array", b'["status"]', "application/json"),
    ("bad UTF-8 form", b"status=\xff\xfe", "application/x-www-form-urlencoded"),
    ("bad UTF-8 JSON", b'{"status": "\xff"}', "application/json"),
    ("status as number", b'{"status": 5}', "application/json"),
    ("status as object", b'{"status": {"a": 1}}', "application/json"),
    ("sensitive as object", b'{"status": "x", "sensitive": {"a": 1}}', "application/json"),
    ("visibility as list", b'{"status": "x", "visibility": ["public"]}', "application/json"),
    ("spoiler as number", b'{"status": "x", "spoiler_text": 3}', "application/json"),
    ("scheduled_at", b'{"status": "x", "scheduled_at": "2030-01-01T00:00:00Z"}', "application/json"),
    ("in_reply_to_id", b'{"status": "x", "in_reply_to_id": "1"}', "application/json"),
    ("unknown media_ids", b"status=x&media_ids[]=12345", "application/x-www-form-urlencoded"),
    ("poll", b'{"status": "x", "poll": {"options": ["a", "b"], "expires_in": 300}}', "application/json"),
    ("XML", b"<status>x</status>", "application/xml"),
]


@pytest.mark.parametrize("name,body,kind", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_malformed_posts_are_4xx_and_change_nothing(server, name, body, kind):
    with httpx.Client(base_url=server, timeout=30) as c:
        _, a = register(c, "alice")
        before = c.get("/api/v1/timelines/home", headers=a).json()
        r = c.post("/api/v1/statuses", content=body, headers={**a, "Content-Type": kind})
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
        assert isinstance(r.json()["error"], str)
        if name in ("scheduled_at", "in_reply_to_id", "unknown media_ids", "poll", "status as number"):
            assert r.status_code == 422
        assert c.get("/api/v1/timelines/home", headers=a).json() == before


def test_malformed_elsewhere(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        _, a = register(c, "alice")
        assert (
            c.post("/api/v1/statuses", data={"status": "x"}, headers={**a, "Idempotency-Key": "k" * 256}).status_code
            == 422
        )
        assert c.post("/api/v1/apps", content=b'{"client_name": "\\ud800", "redirect_uris": "urn:ietf:wg:oauth:2.0:oob"}',
                      headers={"Content-Type": "application/json"}).status_code == 400  # fmt: skip
        assert (
            c.post("/oauth/token", content=b"[" * 50_000, headers={"Content-Type": "application/json"}).status_code
            == 400
        )
        assert c.post("/api/v1/accounts", content=b'{"username": "\\udfff"}',
                      headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN}"}).status_code == 400  # fmt: skip
        assert c.get("/api/v1/timelines/home?limit=%FF", headers=a).status_code == 400
        assert c.get("/api/v1/timelines/home?max_id=%ED%A0%80", headers=a).status_code == 400
        assert c.get("/api/v2/search?q=%ED%A0%80").status_code in (200, 400)
        # A declared Content-Length past the limit is refused without reading the body.
        big = c.post("/api/v1/statuses", content=b"x" * 70_000, headers={**a, "Content-Type": "application/json"})
        assert big.status_code == 413


def test_multipart_post(server):
    with httpx.Client(base_url=server, timeout=10) as c:
        _, a = register(c, "alice")
        r = c.post("/api/v1/statuses", files={"status": (None, "multipart works")}, headers=a)
        assert r.status_code == 200, r.text
        assert r.json()["content"] == "<p>multipart works</p>"
