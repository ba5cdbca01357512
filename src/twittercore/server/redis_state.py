"""The account state on Redis or a Redis Cluster (see :mod:`.state` for the interface).

With the store on a Redis Cluster, several ``serve`` processes on several
hosts share nothing but the cluster: their accounts and tokens must be there
too, or a token issued by one process is unknown to the next one a load
balancer picks, and two processes hand out the same account id (the same
store node) to different users.

Every key carries one hash tag, so the whole state lives in one slot: the
multi-key steps (registration, revocation) are single Lua scripts, atomic on
the master that owns the slot.  The state is small (a record per account,
app and token), so one slot is plenty for the example server.

Layout under ``{NS.state}``: ``next`` (last account id), ``accounts`` (id ->
JSON record), ``names`` (lower-case username -> id, pending ones included),
``emails`` (lower-case email -> id, finished accounts), ``ready`` (sorted
set of finished ids), ``lex`` (sorted set of finished lower-case usernames,
for prefix search), ``clients`` and ``tokens`` (id or digest -> JSON), and
one ``code:DIGEST`` key per authorization code, expiring by itself.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from ..backends.redis.router import parse_target
from ..errors import ConfigurationError, StoreError
from .sqlite_state import CODE_TTL
from .state import Account, AccountState, Client, CodeGrant, Grant, StateError, digest, new_secret

__all__ = ["RedisState"]

_NAMESPACE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")

# KEYS: names, emails, accounts, next.  ARGV: lower name, lower email or "", username, email or "", password or "", now.
# Returns {id, username, created_at} or an error reply naming what is taken.
_BEGIN = """
local id = redis.call('HGET', KEYS[1], ARGV[1])
if id then
  local record = cjson.decode(redis.call('HGET', KEYS[3], id))
  if record.ready == 1 then return redis.error_reply('username') end
end
if ARGV[2] ~= '' and redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return redis.error_reply('email') end
local record
if id then
  record = cjson.decode(redis.call('HGET', KEYS[3], id))
else
  id = tostring(redis.call('INCR', KEYS[4]))
  record = {username = ARGV[3], name_key = ARGV[1], created_at = ARGV[6], ready = 0}
  redis.call('HSET', KEYS[1], ARGV[1], id)
end
record.email = ARGV[4]
record.email_key = ARGV[2]
record.password = ARGV[5]
redis.call('HSET', KEYS[3], id, cjson.encode(record))
return {id, record.username, record.created_at}
"""

# KEYS: accounts, emails, ready, lex.  ARGV: id.
_FINISH = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local record = cjson.decode(raw)
if record.ready == 1 then return 0 end
record.ready = 1
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
if record.email_key ~= '' then redis.call('HSET', KEYS[2], record.email_key, ARGV[1]) end
redis.call('ZADD', KEYS[3], tonumber(ARGV[1]), ARGV[1])
redis.call('ZADD', KEYS[4], 0, record.name_key)
return 1
"""

# KEYS: tokens.  ARGV: digest, client id.  1: revoked or unknown; 0: issued to another app.
_REVOKE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 1 end
if cjson.decode(raw).client_id ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""


def _connect(target: str, timeout: float) -> Any:
    cluster, nodes, db = parse_target(target)
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    try:
        if cluster:
            return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes], **options)  # type: ignore[no-untyped-call]
        host, port = nodes[0]
        client = redis.Redis(host=host, port=port, db=db, **options)
        try:
            client.ping()
        except BaseException:
            client.close()
            raise
        return client
    except (redis.RedisError, RedisClusterException) as exc:
        raise StoreError(f"account state {target!r}: {exc}") from None


class RedisState(AccountState):
    """Accounts, apps, tokens and codes in one hash slot of a Redis (Cluster).

    ``target`` is a ``redis://`` or ``redis+cluster://`` URL, as for the store;
    ``namespace`` keeps several servers' states apart on one cluster (the
    store's namespace is a good choice).
    """

    def __init__(self, target: str, namespace: str = "tc", timeout: float = 5.0) -> None:
        if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
            raise ConfigurationError(f"namespace: expected 1-40 letters, digits, '_' or '-', got {namespace!r}")
        self._r = _connect(target, timeout)
        prefix = f"{{{namespace}.state}}:"
        self._k = {
            name: prefix + name for name in ("next", "accounts", "names", "emails", "ready", "lex", "clients", "tokens")
        }
        self._code = prefix + "code:"
        self._scripts = {
            name: self._r.register_script(code)
            for name, code in (("begin", _BEGIN), ("finish", _FINISH), ("revoke", _REVOKE))
        }
        self._closed = False
        # Finished accounts never change, so each process caches them (as SQLiteState does).
        self._by_id: dict[int, Account] = {}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._r.close()

    # -------------------------------------------------------------- accounts

    @staticmethod
    def _account(id: int | str, raw: bytes | str | None) -> tuple[Account, str | None] | None:
        if raw is None:
            return None
        record = json.loads(raw)
        if record["ready"] != 1:
            return None
        account = Account(int(id), record["username"], float(record["created_at"]), record["email"] or None)
        return account, record["password"] or None

    def begin_account(self, username: str, email: str | None, password_hash: str | None) -> Account:
        k = self._k
        try:
            id, name, created_at = self._scripts["begin"](
                keys=[k["names"], k["emails"], k["accounts"], k["next"]],
                args=[
                    username.lower(),
                    (email or "").lower(),
                    username,
                    email or "",
                    password_hash or "",
                    repr(time.time()),
                ],
            )
        except redis.ResponseError as exc:
            if "username" in str(exc):
                raise StateError("Validation failed: Username has already been taken") from None
            if "email" in str(exc):
                raise StateError("Validation failed: Email has already been taken") from None
            raise
        return Account(int(id), name.decode(), float(created_at), email)

    def finish_account(self, id: int) -> None:
        k = self._k
        self._scripts["finish"](keys=[k["accounts"], k["emails"], k["ready"], k["lex"]], args=[id])

    def account(self, id: int) -> Account | None:
        found = self._by_id.get(id)
        if found is None:
            if not isinstance(id, int) or not 0 < id < 2**63:
                return None  # a client's made-up id names no account
            row = self._account(id, self._r.hget(self._k["accounts"], str(id)))
            if row is not None:
                found = self._by_id[id] = row[0]
        return found

    def _by_name(self, username: str) -> tuple[Account, str | None] | None:
        id = self._r.hget(self._k["names"], username.lower())
        return None if id is None else self._account(id.decode(), self._r.hget(self._k["accounts"], id))

    def account_by_name(self, username: str) -> Account | None:
        row = self._by_name(username)
        return None if row is None else row[0]

    def accounts_by_prefix(self, prefix: str, limit: int) -> list[Account]:
        low = prefix.lower()
        # Usernames are [a-z0-9_] once lowered: every one with the prefix sorts below prefix + 0xff.
        names = self._r.zrangebylex(
            self._k["lex"], b"[" + low.encode(), b"(" + low.encode() + b"\xff", start=0, num=limit
        )
        found = []
        for name in names:
            row = self._by_name(name.decode())
            if row is not None:
                found.append(row[0])
        return found

    def account_count(self) -> int:
        return int(self._r.zcard(self._k["ready"]))

    def account_ids(self) -> list[int]:
        return [int(id) for id in self._r.zrange(self._k["ready"], 0, -1)]

    def login(self, name: str) -> tuple[Account, str | None] | None:
        row = self._by_name(name)
        if row is not None:
            return row
        id = self._r.hget(self._k["emails"], name.lower())
        return None if id is None else self._account(id.decode(), self._r.hget(self._k["accounts"], id))

    # ---------------------------------------------------------- apps, tokens

    def create_client(
        self, name: str, redirect_uris: tuple[str, ...], scopes: frozenset[str], website: str | None
    ) -> tuple[Client, str]:
        client_id, secret, now = new_secret(), new_secret(), time.time()
        id = int(self._r.hincrby(self._k["clients"], "", 1))  # the "" field counts apps
        record = {"id": id, "secret": digest(secret), "name": name, "redirect_uris": list(redirect_uris),
                  "scopes": sorted(scopes), "website": website, "created_at": now}  # fmt: skip
        self._r.hset(self._k["clients"], client_id, json.dumps(record))
        return Client(client_id, name, redirect_uris, scopes, website, now, id), secret

    def client(self, client_id: str, secret: str | None = None) -> Client | None:
        raw = self._r.hget(self._k["clients"], client_id) if client_id else None
        if raw is None:
            return None
        r = json.loads(raw)
        if secret is not None and digest(secret) != r["secret"]:
            return None
        return Client(
            client_id,
            r["name"],
            tuple(r["redirect_uris"]),
            frozenset(r["scopes"]),
            r["website"],
            r["created_at"],
            r["id"],
        )

    def issue_token(self, account: int | None, scopes: frozenset[str], client_id: str | None) -> str:
        token = new_secret()
        record = {"account": account or 0, "scopes": sorted(scopes), "client_id": client_id, "created_at": time.time()}
        self._r.hset(self._k["tokens"], digest(token), json.dumps(record))
        return token

    def grant(self, token: str) -> Grant | None:
        raw = self._r.hget(self._k["tokens"], digest(token))
        if raw is None:
            return None
        r = json.loads(raw)
        return Grant(r["account"] or None, frozenset(r["scopes"]), r["client_id"], r["created_at"])

    def revoke_token(self, token: str, client_id: str) -> bool:
        return bool(self._scripts["revoke"](keys=[self._k["tokens"]], args=[digest(token), client_id]))

    def issue_code(self, grant: CodeGrant) -> str:
        code = new_secret()
        record = {"client_id": grant.client_id, "account": grant.account, "scopes": sorted(grant.scopes),
                  "redirect_uri": grant.redirect_uri, "challenge": grant.challenge, "challenge_method": grant.challenge_method}  # fmt: skip
        self._r.set(self._code + digest(code), json.dumps(record), ex=int(CODE_TTL))
        return code

    def redeem_code(self, code: str) -> CodeGrant | None:
        raw = self._r.getdel(self._code + digest(code))  # single use: whoever deletes it redeems it
        if raw is None:
            return None
        r = json.loads(raw)
        return CodeGrant(
            r["client_id"],
            r["account"],
            frozenset(r["scopes"]),
            r["redirect_uri"],
            r["challenge"],
            r["challenge_method"],
        )
