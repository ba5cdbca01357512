"""``twittercore node``: run one decentralised node (docs/nodes.md).

    twittercore node --data DIR --port 8001 --name node1 --admin-token T \\
        --peers http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003

``--peers`` is the whole static membership, this node included, in the same
order on every node; a node's index is its 1-based position in it, taken from
the digits ending ``--name`` (or ``--index``).  User ids carry that index.
Or join a running membership through any member (gossip spreads the rest):

    twittercore node --data DIR --port 8004 --name node4 --admin-token T \
        --join http://127.0.0.1:8001 --advertise http://127.0.0.1:8004
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from ..errors import Error, InvalidArgumentError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="the node's own durable store (created if missing)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--name", required=True, help="this node's name; its trailing digits are its index in --peers")
    parser.add_argument(
        "--index", type=int, default=None, help="this node's 1-based position in --peers (default: from --name)"
    )
    parser.add_argument(
        "--admin-token",
        default=os.environ.get("TWITTERCORE_ADMIN_TOKEN"),
        help="bearer token for client writes and peer traffic, the same on every node (default: $TWITTERCORE_ADMIN_TOKEN)",
    )
    parser.add_argument(
        "--peers", default="", help="comma-separated base URLs of every node, this one included (static membership)"
    )
    parser.add_argument(
        "--join",
        default="",
        help="comma-separated URLs of running members to join through (instead of, or with, --peers)",
    )
    parser.add_argument(
        "--advertise",
        default=None,
        help="the URL other nodes reach this one at (needed with --join; default: from --peers)",
    )
    parser.add_argument(
        "--consistency",
        choices=["strict", "bounded"],
        default="strict",
        help="strict: views wait for every origin; bounded: a silent origin is left out after --staleness-ms",
    )
    parser.add_argument("--staleness-ms", type=int, default=1000)
    parser.add_argument("--no-durable", action="store_true", help="do not fsync each commit")
    parser.add_argument("--log-level", default="warning")


def node_index(name: str, index: int | None) -> int:
    if index is not None:
        return index
    match = re.search(r"(\d+)$", name)
    if match is None:
        raise InvalidArgumentError(f"node: --name {name!r} ends in no digits; give --index")
    return int(match.group(1))


def run(args: argparse.Namespace) -> int:
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    try:
        import uvicorn

        from .app import create_app
        from .core import Node

        if args.staleness_ms < 0:
            raise InvalidArgumentError("node: --staleness-ms must be >= 0")
        node = Node(
            args.data,
            args.name,
            node_index(args.name, args.index),
            peers,
            args.admin_token,
            consistency=args.consistency,
            staleness_ms=args.staleness_ms,
            durable=not args.no_durable,
            seeds=[u.strip() for u in args.join.split(",") if u.strip()],
            advertise=args.advertise,
        )
    except Error as exc:
        print(f"twittercore {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        create_app(node),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    return 0
