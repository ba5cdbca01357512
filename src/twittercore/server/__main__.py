"""``python -m twittercore.server``: account admin and serving from a data dir.

    python -m twittercore.server create-account alice --data DIR
    python -m twittercore.server serve --data DIR --port 8000

``create-account`` prints the new account's id and bearer token (shown once:
only its digest is stored).  ``serve`` is the same as ``twittercore serve``.
"""

from __future__ import annotations

import argparse
import os
import sys


def create_account(data: str, username: str, store_target: str | None = None) -> tuple[int, str]:
    """Create an account in a data dir (server running or not); returns (id, token)."""
    import twittercore

    from .app import paths
    from .state import State

    os.makedirs(data, exist_ok=True)
    store_path, state_path = paths(data)
    state = State(state_path)
    try:
        with twittercore.open(store_target or store_path) as store:
            account, token = state.create_account(username)
            # The self-edge: an account's home timeline includes its own posts.
            store.follow(account.id, account.id)
    finally:
        state.close()
    return account.id, token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twittercore.server", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("create-account", help="create an account and print its bearer token")
    make.add_argument("username")
    make.add_argument("--data", required=True, help="the server's data dir")
    serve = sub.add_parser("serve", help="run the server (same as `twittercore serve`)")
    from ..tools import serve as serve_command

    serve_command.add_arguments(serve)
    args = parser.parse_args(argv)
    if args.command == "create-account":
        from .state import StateError

        try:
            id, token = create_account(args.data, args.username)
        except StateError as exc:
            print(f"create-account: {exc}", file=sys.stderr)
            return 1
        print(f"account {args.username} id={id}")
        print(f"token {token}")
        return 0
    return serve_command.run(args)


if __name__ == "__main__":
    sys.exit(main())
