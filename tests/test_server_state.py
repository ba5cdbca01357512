"""The account state behind its interface: SQLiteState and RedisState, and the upgrade of an older state file."""

from __future__ import annotations

import itertools
import sqlite3

import pytest

import twittercore
from tests.redis_cluster import redis_cluster  # noqa: F401  (the fixture)
from twittercore.server.sqlite_state import SQLiteState
from twittercore.server.state import AccountState, CodeGrant, StateError, digest, register

_namespaces = itertools.count()


@pytest.fixture(params=["sqlite", "redis"])
def state(request, tmp_path):
    """A fresh, empty account state of each kind; the Redis one in its own namespace of the test cluster."""
    if request.param == "sqlite":
        opened = SQLiteState(str(tmp_path / "s.sqlite3"))
    else:
        from twittercore.server.redis_state import RedisState

        cluster = request.getfixturevalue("redis_cluster")
        opened = RedisState(cluster.url, namespace=f"state-test-{next(_namespaces)}")
    yield opened
    opened.close()


def test_interface_is_complete():
    class Partial(AccountState):
        def close(self) -> None: ...

    with pytest.raises(TypeError):
        Partial()  # a backend missing a method cannot be made


def test_pending_accounts_are_invisible_and_resumable(state):
    pending = state.begin_account("alice", "a@example.org", None)
    assert state.account(pending.id) is None and state.account_by_name("alice") is None
    assert state.accounts_by_prefix("a", 10) == [] and state.login("alice") is None and state.account_count() == 0
    again = state.begin_account("ALICE", None, "hash")  # a retry, any case: the same pending account
    assert again.id == pending.id
    with twittercore.open(":memory:") as store:
        account, token = register(state, store, "alice")
        assert account.id == pending.id and store.is_following(account.id, account.id)
        with pytest.raises(StateError, match="taken"):
            register(state, store, "Alice")
        with pytest.raises(StateError, match="Username"):
            register(state, store, "no spaces")
    assert state.grant(token).account == account.id
    assert [a.username for a in state.accounts_by_prefix("AL", 5)] == ["alice"]
    assert state.accounts_by_prefix("_", 5) == [] and state.accounts_by_prefix("%", 5) == []


def test_lookups_by_prefix_email_and_id(state):
    with twittercore.open(":memory:") as store:
        made = [
            register(state, store, name, f"{name}@Example.org")[0] for name in ("bob", "Al_b", "al", "ALZ", "carol")
        ]
        with pytest.raises(StateError, match="Email"):
            register(state, store, "other", "BOB@example.ORG")
    assert len({a.id for a in made}) == 5 and state.account_ids() == sorted(a.id for a in made)
    assert state.account_count() == 5
    # Ordered by username, case-insensitively, and cut at the limit.
    assert [a.username for a in state.accounts_by_prefix("al", 10)] == ["al", "Al_b", "ALZ"]
    assert [a.username for a in state.accounts_by_prefix("aL", 2)] == ["al", "Al_b"]
    assert state.account(made[1].id) == made[1] and state.account_by_name("al_B") == made[1]
    assert state.account(2**70) is None and state.account(10**6) is None
    assert state.login("ALZ@example.org")[0] == made[3] and state.login("carol")[0] == made[4]
    assert state.login("nobody") is None


def test_codes_are_single_use_and_revocation_is_per_client(state):
    client, secret = state.create_client("app", ("urn:ietf:wg:oauth:2.0:oob",), frozenset({"read"}), None)
    assert state.client(client.client_id, secret) == client and state.client(client.client_id, "wrong") is None
    code = state.issue_code(
        CodeGrant(client.client_id, 1, frozenset({"read"}), "urn:ietf:wg:oauth:2.0:oob", None, None)
    )
    assert state.redeem_code(code).account == 1
    assert state.redeem_code(code) is None
    token = state.issue_token(1, frozenset({"read"}), client.client_id)
    assert not state.revoke_token(token, "another client") and state.grant(token) is not None
    assert state.revoke_token(token, client.client_id) and state.grant(token) is None
    assert state.revoke_token("never issued", client.client_id)


def test_an_older_state_file_is_upgraded(tmp_path):
    """A data dir from the first release (accounts and tokens only) keeps working."""
    path = tmp_path / "server.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE accounts (id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT NOT NULL UNIQUE COLLATE NOCASE, created_at REAL NOT NULL);
        CREATE TABLE tokens (digest TEXT PRIMARY KEY, account INTEGER NOT NULL REFERENCES accounts(id), created_at REAL NOT NULL);
        CREATE TABLE idempotency (account INTEGER NOT NULL, key TEXT NOT NULL, status INTEGER, created_at REAL NOT NULL, PRIMARY KEY (account, key));
    """)
    db.execute("INSERT INTO accounts (username, created_at) VALUES ('old', 1.0)")
    db.execute("INSERT INTO tokens VALUES (?, 1, 1.0)", (digest("old-token"),))
    db.commit()
    db.close()
    state = SQLiteState(str(path))
    try:
        assert state.account_by_name("old").id == 1
        grant = state.grant("old-token")
        assert grant.account == 1 and grant.scopes == frozenset({"read", "write", "follow"})
    finally:
        state.close()


def _open_at_once(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        SQLiteState(path).close()
        results.put("ok")
    except Exception as exc:  # reported to the parent, which asserts
        results.put(repr(exc))


def test_workers_opening_a_new_state_file_at_once_all_start(tmp_path):
    """Server workers start together and each opens the (new) state file; switching it to WAL must not fail any of them."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    for trial in range(3):
        path = str(tmp_path / f"s{trial}.sqlite3")
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(path, barrier, results)) for _ in range(6)]
        for p in procs:
            p.start()
        got = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        results.close()
        results.join_thread()
        assert got == ["ok"] * 6
