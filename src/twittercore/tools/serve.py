"""``twittercore serve``: run the Mastodon-compatible server (:mod:`twittercore.server`) with uvicorn.

Installed with the ``server`` extra (``pip install 'twittercore[server]'``).
uvicorn gets an app factory; every worker process opens the store in the
data dir itself (the LMDB store is safe for several processes).

    twittercore serve --data DIR --port 8000 --workers 2
    twittercore serve --data DIR --create-account alice   # prints alice's token, then serves
    twittercore serve --data DIR --store redis+cluster://...  # another store; accounts stay in DIR
    twittercore serve --data DIR --store URL --state URL     # accounts on the cluster too: servers share only it
    twittercore serve --data DIR --ssl-certfile cert.pem --ssl-keyfile key.pem   # HTTPS (Twitter clients)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..errors import ConfigurationError
from . import reuseport

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="data dir: the store and the server's accounts (created if missing)"
    )
    parser.add_argument(
        "--store",
        default=None,
        metavar="TARGET",
        help="the store: any twittercore.open target (default: the LMDB store in DATA/store); "
        "the server's accounts and tokens stay in DATA",
    )
    parser.add_argument(
        "--state",
        default=None,
        metavar="TARGET",
        help="the accounts and tokens: a SQLite file (default: DATA/server.sqlite3) or a redis:// or "
        "redis+cluster:// URL, so that several serve processes with their own DATA can share one Redis store",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the store")
    parser.add_argument(
        "--admin-token",
        default=os.environ.get("TWITTERCORE_ADMIN_TOKEN"),
        help="enables POST /api/v1/accounts (registration) for holders of this token "
        "(default: $TWITTERCORE_ADMIN_TOKEN; without it, create accounts with --create-account)",
    )
    parser.add_argument(
        "--create-account",
        action="append",
        default=[],
        metavar="NAME",
        help="create this account before serving and print its bearer token (repeatable)",
    )
    parser.add_argument(
        "--memory", action="store_true", help="keep statuses in the in-memory reference store (one worker only)"
    )
    parser.add_argument(
        "--no-durable",
        action="store_true",
        help="do not fsync each commit (survives a process crash, not a machine crash)",
    )
    parser.add_argument(
        "--fanout",
        choices=["read", "write", "hybrid"],
        default=None,
        help="the store's fan-out strategy (default: the store's own, fan-out on read for a new one); "
        "an existing LMDB store is converted",
    )
    parser.add_argument("--ssl-certfile", default=None, help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--ssl-keyfile", default=None, help="... and this private key (PEM)")
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="idle streams get a heartbeat this often (default 15, as Mastodon); keep it under the proxy's timeouts",
    )
    parser.add_argument("--log-level", default="warning")


def run(args: argparse.Namespace) -> int:
    try:
        if args.memory and args.workers != 1:
            raise ConfigurationError("serve: --memory keeps the store inside one process; use --workers 1")
        if args.workers < 1:
            raise ConfigurationError(f"serve: --workers {args.workers}: expected at least 1")
        if args.memory and args.store:
            raise ConfigurationError("serve: --memory and --store both name the store; give one")
        if args.memory and args.state:
            raise ConfigurationError("serve: --memory keeps accounts in the process too; drop --state")
        if not 0.05 <= args.heartbeat <= 3600:
            raise ConfigurationError(f"serve: --heartbeat {args.heartbeat}: expected 0.05 to 3600 seconds")
        if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
            raise ConfigurationError("serve: --ssl-certfile and --ssl-keyfile go together")
    except ConfigurationError as exc:
        print(f"twittercore {exc}", file=sys.stderr)
        return 2
    try:
        import uvicorn

        from ..server.__main__ import create_account
        from ..server.state import StateError
    except ImportError:
        print("twittercore serve: needs uvicorn and starlette (pip install 'twittercore[server]')", file=sys.stderr)
        return 2
    data = os.path.abspath(args.data)
    os.makedirs(data, exist_ok=True)
    options: dict[str, Any] = {"durable": False} if args.no_durable else {}
    if args.fanout:
        options["fanout"] = args.fanout
    if (args.store or args.fanout) and not args.memory:
        # Fail here, once, with the store's own message, rather than in every worker
        # (and convert a store to another strategy once, before the workers open it).
        import twittercore

        target = args.store or os.path.join(data, "store")
        try:
            twittercore.open(target, **options).close()
        except twittercore.Error as exc:
            print(f"twittercore serve: --store {target}: {exc}", file=sys.stderr)
            return 2
    if args.state:
        import twittercore

        from ..server.app import open_state

        try:
            open_state(args.state).close()
        except twittercore.Error as exc:
            print(f"twittercore serve: --state {args.state}: {exc}", file=sys.stderr)
            return 2
    if not args.memory:
        for name in args.create_account:
            try:
                id, token = create_account(data, name, args.store, state_target=args.state)
            except StateError as exc:
                print(f"twittercore serve: --create-account {name}: {exc}", file=sys.stderr)
                return 1
            print(f"account {name} id={id} token={token}", flush=True)
    # Workers read their settings from the environment (uvicorn rebuilds the app in each).
    os.environ["TWITTERCORE_DATA"] = data
    os.environ["TWITTERCORE_STORE_OPTIONS"] = json.dumps(options)
    os.environ["TWITTERCORE_HEARTBEAT"] = repr(args.heartbeat)
    if args.memory or args.store:
        os.environ["TWITTERCORE_STORE"] = ":memory:" if args.memory else args.store
    if args.state:
        os.environ["TWITTERCORE_STATE"] = args.state
    if args.admin_token:
        os.environ["TWITTERCORE_ADMIN_TOKEN"] = args.admin_token
    if args.memory and args.create_account:
        print(
            "twittercore serve: --create-account needs the on-disk store; with --memory use the admin token",
            file=sys.stderr,
        )
        return 2
    scheme = "https" if args.ssl_certfile else "http"
    where = f" store={args.store}" if args.store else ""
    print(
        f"twittercore serve: {scheme}://{args.host}:{args.port} data={data}{where} workers={args.workers}", flush=True
    )
    settings: dict[str, Any] = dict(
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=args.log_level in ("debug", "trace", "info"),  # a log line per request costs ~10%
        # Streams stay open: do not wait for them forever on shutdown.
        timeout_graceful_shutdown=3,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    if args.workers > 1 and reuseport.available():
        # A listener per worker: the kernel spreads connections (see tools/reuseport.py).
        reuseport.serve(uvicorn.Config("twittercore.server.app:app_from_env", **settings))
    else:
        uvicorn.run("twittercore.server.app:app_from_env", **settings)
    return 0
