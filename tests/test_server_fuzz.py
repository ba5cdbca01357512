"""Fuzzing the live server: no request, however malformed, gets a 5xx.

Hypothesis builds bodies (JSON of any shape, with lone surrogates and deep
nesting; urlencoded pairs; raw bytes under any content type) and query
strings for every write and read endpoint; each response must be below 500
and, when it is an error, carry a JSON error.  The default run sends a few
hundred requests; ``TWITTERCORE_FUZZ_EXAMPLES=100000 pytest -m slow`` is the
long run.
"""

from __future__ import annotations

import json
import os

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twittercore.server.testing import running_server

ADMIN = "fuzz-admin"

WRITES = ["/api/v1/statuses", "/api/v1/apps", "/oauth/token", "/oauth/revoke", "/api/v1/accounts",
          "/oauth/authorize", "/api/v1/accounts/2/follow", "/1.1/statuses/update.json", "/1.1/friendships/create.json"]  # fmt: skip
READS = ["/api/v1/timelines/home", "/api/v1/accounts/1/statuses", "/api/v2/search", "/api/v1/accounts/lookup",
         "/api/v1/accounts/relationships", "/api/v1/accounts/1/followers", "/oauth/authorize",
         "/1.1/statuses/home_timeline.json", "/1.1/statuses/user_timeline.json", "/1.1/friends/ids.json",
         "/1.1/statuses/show.json", "/api/v1/statuses/1"]  # fmt: skip
FIELDS = ["status", "visibility", "sensitive", "spoiler_text", "language", "media_ids", "in_reply_to_id", "scheduled_at",
          "poll", "client_name", "redirect_uris", "scopes", "grant_type", "client_id", "client_secret", "code", "username",
          "password", "email", "token", "scope", "code_verifier", "decision", "screen_name", "user_id"]  # fmt: skip
PARAMS = ["limit", "max_id", "since_id", "min_id", "q", "type", "resolve", "offset", "acct", "id[]", "id", "count",
          "cursor", "user_id", "screen_name", "pinned", "client_id", "response_type", "scope", "code_challenge_method"]  # fmt: skip

# Text as clients get it wrong: any code point, lone surrogates included.
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=40) | st.sampled_from(
    ["\ud800", "a\udfffb", "", "1", "-1", "99999999999999999999999", "true", "read write"]
)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | texts
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=12
)


def encode_json(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=True).encode()  # \\ud800 escapes survive ASCII encoding


bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS) | texts, values, max_size=6).map(lambda d: (encode_json(d), "application/json")),
    values.map(lambda v: (encode_json(v), "application/json")),
    st.integers(1, 5000).map(lambda n: (b'{"status":' + b"[" * n + b"]" * n + b"}", "application/json")),
    st.lists(st.tuples(st.sampled_from(FIELDS) | texts, texts), max_size=6).map(
        lambda pairs: ("&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass"), "application/x-www-form-urlencoded")),
    st.tuples(st.binary(max_size=200), st.sampled_from(["application/json", "application/x-www-form-urlencoded", "", "text/plain",
                                                        "multipart/form-data; boundary=x", "application/json; charset=latin-1"])),
)  # fmt: skip
queries = st.lists(st.tuples(st.sampled_from(PARAMS), st.binary(max_size=12)), max_size=4)
headers = st.fixed_dictionaries({}, optional={
    # (h11 refuses to send values with leading or trailing whitespace: servers never see those)
    "Idempotency-Key": st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=300).map(str.strip).filter(bool),
    "Origin": st.just("https://app.example"),
    "Last-Event-ID": st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(str.strip).filter(bool),
})  # fmt: skip


@pytest.fixture(scope="module")
def live():
    with running_server(admin_token=ADMIN) as url, httpx.Client(base_url=url, timeout=30) as c:
        tokens = [c.post("/api/v1/accounts", data={"username": n, "password": "fuzzing password"},
                         headers={"Authorization": f"Bearer {ADMIN}"}).json()["access_token"] for n in ("alice", "bob")]  # fmt: skip
        c.post("/api/v1/statuses", data={"status": "seed"}, headers={"Authorization": f"Bearer {tokens[0]}"})
        yield c, tokens[0]


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, (
        response.status_code,
        response.request.method,
        response.request.url,
        response.text[:300],
    )
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        assert "error" in body or "errors" in body


def run_fuzz(examples: int):
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fuzz(live, data):
        c, token = live
        auth = data.draw(
            st.sampled_from(
                [
                    {"Authorization": f"Bearer {token}"},
                    {"Authorization": f"Bearer {ADMIN}"},
                    {},
                    {"Authorization": "Basic !!"},
                ]
            )
        )
        extra = {
            k: v.encode("latin-1") for k, v in data.draw(headers).items()
        }  # raw header bytes, as a client may send
        if data.draw(st.booleans()):
            path = data.draw(st.sampled_from(WRITES))
            body, kind = data.draw(bodies)
            check(c.post(path, content=body, headers={**auth, **extra, "Content-Type": kind}))
        else:
            path = data.draw(st.sampled_from(READS))
            query = "&".join(f"{k}={''.join(f'%{b:02X}' for b in v)}" for k, v in data.draw(queries))
            check(c.get(f"{path}?{query}", headers={**auth, **extra}))

    return fuzz


def test_fuzz_no_5xx(live):
    run_fuzz(int(os.environ.get("TWITTERCORE_FUZZ_EXAMPLES", "300")))(live)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 100,000 requests take longer than the suite's per-test limit
def test_fuzz_no_5xx_long(live):
    run_fuzz(int(os.environ.get("TWITTERCORE_FUZZ_EXAMPLES", "100000")))(live)
