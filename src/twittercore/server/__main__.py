"""``python -m twittercore.server``: account admin and serving from a data dir.

    python -m twittercore.server create-account alice --data DIR [--password PW]
    python -m twittercore.server serve --data DIR --port 8000

``create-account`` prints the new account's id and bearer token (shown once:
only its digest is stored).  ``serve`` is the same as ``twittercore serve``.
"""

from __future__ import annotations

import argparse
import os
import sys


def create_account(
    data: str,
    username: str,
    store_target: str | None = None,
    password: str | None = None,
    state_target: str | None = None,
) -> tuple[int, str]:
    """Create an account in a data dir (server running or not); returns (id, token).

    With a password the account can also log in through OAuth (``/oauth/token``,
    the authorize page).  A registration that died half way is completed.
    """
    import twittercore

    from .app import open_state, paths
    from .auth import hash_password
    from .state import StateError, register

    if password is not None and not 8 <= len(password) <= 72:
        raise StateError("Validation failed: Password must be 8 to 72 characters")
    os.makedirs(data, exist_ok=True)
    store_path, state_path = paths(data)
    state = open_state(state_target or state_path)
    try:
        with twittercore.open(store_target or store_path) as store:
            hashed = None if password is None else hash_password(password)
            account, token = register(state, store, username, None, hashed)
    finally:
        state.close()
    return account.id, token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twittercore.server", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("create-account", help="create an account and print its bearer token")
    make.add_argument("username")
    make.add_argument("--data", required=True, help="the server's data dir")
    make.add_argument("--store", default=None, help="the store, if not the data dir's (any twittercore.open target)")
    make.add_argument(
        "--state", default=None, help="the account state, if not the data dir's (a SQLite file or a redis URL)"
    )
    make.add_argument("--password", default=None, help="lets the account log in through OAuth (8 to 72 characters)")
    serve = sub.add_parser("serve", help="run the server (same as `twittercore serve`)")
    from ..tools import serve as serve_command

    serve_command.add_arguments(serve)
    args = parser.parse_args(argv)
    if args.command == "create-account":
        from .state import StateError

        try:
            id, token = create_account(args.data, args.username, args.store, args.password, args.state)
        except StateError as exc:
            print(f"create-account: {exc}", file=sys.stderr)
            return 1
        print(f"account {args.username} id={id}")
        print(f"token {token}")
        return 0
    return serve_command.run(args)


if __name__ == "__main__":
    sys.exit(main())
