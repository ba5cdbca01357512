"""Routing and pipelining of bucket commands to the masters that own them.

redis-py's cluster pipeline asks the server for the keys of every ``FCALL``
(``COMMAND GETKEYS``, one extra round trip each), so the backend routes by
itself: a bucket's hash tag names its slot, the cluster client's slot table
names the master, and all the commands of one step are written to every
master before any answer is read (one round trip per step, whatever the
number of masters).  MOVED, ASK and TRYAGAIN answers (failover, resharding)
are followed; a command that may have run on a lost connection is reported,
never silently repeated.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import ConfigurationError, StoreError

__all__ = ["Router", "parse_target"]

_TRANSIENT = (RedisConnectionError, RedisTimeoutError, ClusterDownError, OSError)
#: One cluster client per (target, timeout) in a process, shared by its stores:
#: building one reads the slot table and the command table (tens of ms).
_CLIENTS: dict[tuple[str, float], list[Any]] = {}
_CLIENTS_LOCK = threading.Lock()


def parse_target(target: str) -> tuple[bool, list[tuple[str, int]], int]:
    """``(cluster, [(host, port)], db)`` of a ``redis://`` or ``redis+cluster://`` target."""
    scheme, rest = target.split("://", 1)
    cluster = scheme.lower() == "redis+cluster"
    netloc, _, path = rest.partition("/")
    nodes = []
    for part in netloc.split(","):
        parsed = urlsplit(f"//{part}")
        try:
            port = parsed.port or 6379
        except ValueError:
            raise ConfigurationError(f"open({target!r}): bad port in {part!r} (expected host:port)") from None
        if not parsed.hostname:
            raise ConfigurationError(f"open({target!r}): expected host:port, got {part!r}")
        nodes.append((parsed.hostname, port))
    db = 0
    if path:
        if cluster or not path.isdigit():
            raise ConfigurationError(
                f"open({target!r}): a database number is only allowed for one Redis "
                "(redis://host:port/0); Redis Cluster has database 0 only"
            )
        db = int(path)
    if len(nodes) > 1 and not cluster:
        raise ConfigurationError(f"open({target!r}): several nodes need the cluster form (redis+cluster://h1:p1,h2:p2)")
    return cluster, nodes, db


_pack_command: Any
try:
    from hiredis import pack_command as _pack_command
except ImportError:  # pragma: no cover - hiredis comes with the [redis] extra
    _pack_command = None


def _pack(conn: Any, commands: list[tuple[Any, ...]]) -> Any:
    """The wire form of ``commands``.  hiredis packs a command in C; redis-py
    first runs its own encoder over each argument in Python (0.8 us each,
    and a home read sends hundreds of arguments)."""
    if _pack_command is None:
        return conn.pack_commands(commands)
    return [b"".join([_pack_command(command) for command in commands])]


class Router:
    """Sends ``(bucket_tag, command...)`` batches to the right masters, pipelined."""

    def __init__(self, target: str, timeout: float) -> None:
        self.cluster_mode, nodes, db = parse_target(target)
        self.timeout = timeout
        kwargs: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        self._key = (target, timeout)
        with _CLIENTS_LOCK:
            shared = _CLIENTS.get(self._key)
            if shared is None:
                try:
                    if self.cluster_mode:
                        client: Any = RedisCluster(
                            startup_nodes=[ClusterNode(h, p) for h, p in nodes],  # type: ignore[no-untyped-call]
                            **kwargs,
                        )
                    else:
                        ((host, port),) = nodes
                        client = redis.Redis(host=host, port=port, db=db, **kwargs)
                        client.ping()
                except Exception as exc:
                    raise StoreError(f"open({target!r}): cannot reach Redis: {exc} (is the server running?)") from None
                shared = _CLIENTS[self._key] = [client, 0]
            shared[1] += 1
        self.client = shared[0]
        self.target = target
        self._node_of: dict[str, Any] = {}
        #: Commands and round trips sent, for the benchmarks.
        self.commands = 0
        self.round_trips = 0

    # ----------------------------------------------------------- topology

    def masters(self) -> list[Any]:
        """The redis.Redis client of every master."""
        if not self.cluster_mode:
            return [self.client]
        return [n.redis_connection or self.client.get_redis_connection(n) for n in self.client.get_primaries()]

    def _node(self, tag: str) -> Any:
        if not self.cluster_mode:
            return self.client
        # Remembered until the next refresh: a stale entry costs one MOVED answer.
        known = self._node_of.get(tag)
        if known is not None:
            return known
        node = self.client.nodes_manager.get_node_from_slot(key_slot(tag.encode()))
        known = self._node_of[tag] = node.redis_connection or self.client.get_redis_connection(node)
        return known

    def groups(self, tags: list[str]) -> list[list[int]]:
        """Indices of ``tags`` grouped by the master that owns them now (the
        slot table may be stale: a call sent on it is still routed and checked)."""
        if not self.cluster_mode:
            return [list(range(len(tags)))] if tags else []
        by_node: dict[int, list[int]] = {}
        for i, tag in enumerate(tags):
            by_node.setdefault(id(self._node(tag)), []).append(i)
        return list(by_node.values())

    def forget(self) -> None:
        """Drop the remembered bucket owners (after a call found one moved)."""
        self._node_of.clear()

    def _refresh(self) -> None:
        self._node_of.clear()
        if self.cluster_mode:
            try:
                self.client.nodes_manager.initialize()
            except Exception:  # the next attempt reports the failure
                pass

    # ------------------------------------------------------------ sending

    def run(self, calls: list[tuple[str, tuple[Any, ...]]], *, safe: bool) -> list[Any]:
        """Answers of ``calls`` (each ``(tag, args)``), in order; ``safe`` calls
        (reads and closes) are retried after a lost connection, others are not.
        Error replies come back as exceptions in place."""
        answers: list[Any] = [None] * len(calls)
        pending = [(i, None) for i in range(len(calls))]  # (index, ask target)
        deadline = time.monotonic() + max(self.timeout * 3, 1.0)
        attempt = 0
        while pending:
            groups: dict[int, tuple[Any, list[tuple[int, Any]]]] = {}
            for index, ask in pending:
                node = ask if ask is not None else self._node(calls[index][0])
                groups.setdefault(id(node), (node, []))[1].append((index, ask))
            retry: list[tuple[int, Any]] = []
            sent: list[tuple[Any, Any, list[tuple[int, Any]], Exception | None]] = []
            for node, members in groups.values():
                pool = node.connection_pool
                try:
                    # A new connection's handshake can time out (a frozen master accepts
                    # TCP but never answers); nothing was sent, so writes may go again too.
                    conn = pool.get_connection()
                except _TRANSIENT:
                    self._refresh()
                    retry.extend((i, None) for i, _ in members)
                    continue
                try:
                    wire = []
                    for index, ask in members:
                        if ask is not None:
                            wire.append(("ASKING",))
                        wire.append(calls[index][1])
                    conn.send_packed_command(_pack(conn, wire), check_health=False)
                    sent.append((pool, conn, members, None))
                except _TRANSIENT as exc:
                    conn.disconnect()
                    sent.append((pool, conn, members, exc))
            self.round_trips += 1
            for pool, conn, members, failure in sent:
                try:
                    for index, ask in members:
                        if failure is not None:
                            raise failure
                        if ask is not None:
                            conn.read_response()
                        try:
                            answers[index] = conn.read_response()
                        except ResponseError as exc:
                            answers[index] = exc
                        self.commands += 1
                        reply = answers[index]
                        if isinstance(reply, MovedError):
                            self._refresh()
                            retry.append((index, None))
                        elif isinstance(reply, AskError):
                            retry.append((index, self._ask_node(reply)))
                        elif isinstance(reply, (TryAgainError, ClusterDownError)) or (
                            isinstance(reply, ResponseError) and str(reply).startswith(("TRYAGAIN", "CLUSTERDOWN"))
                        ):
                            retry.append((index, None))
                except _TRANSIENT as exc:
                    conn.disconnect()
                    if not safe:
                        raise StoreError(
                            f"redis {self.target}: lost the connection to a master during a write "
                            f"({exc}); the write may or may not have happened (retry it with a key)"
                        ) from None
                    self._refresh()
                    retry.extend((i, None) for i, _ in members)
                finally:
                    pool.release(conn)
            pending = list(dict.fromkeys(retry))
            if pending:
                attempt += 1
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"redis {self.target}: the cluster did not answer within {self.timeout * 3:g} s "
                        "(a master is down or slots are moving; retry later)"
                    )
                time.sleep(min(0.01 * attempt, 0.2))
                for index, _ in pending:
                    answers[index] = None
        return answers

    def _ask_node(self, reply: AskError) -> Any:
        node = self.client.nodes_manager.get_node(reply.host, reply.port)
        if node is None:
            node = ClusterNode(reply.host, reply.port)  # type: ignore[no-untyped-call]
            self.client.nodes_manager.nodes_cache[node.name] = node
        return node.redis_connection or self.client.get_redis_connection(node)

    def close(self) -> None:
        with _CLIENTS_LOCK:
            shared = _CLIENTS.get(self._key)
            if shared is None or shared[0] is not self.client:
                return
            shared[1] -= 1
            if shared[1] > 0:
                return
            del _CLIENTS[self._key]
        try:
            self.client.close()
        except Exception:  # closing a dead connection must not hide the caller's error
            pass
