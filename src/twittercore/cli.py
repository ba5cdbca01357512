"""``twittercore`` / ``python -m twittercore``: one entry point, one module per command.

Each command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only dispatches, so commands stay independent.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module, one-line help)
COMMANDS = {
    "demo": ("twittercore.tools.demo", "build a synthetic Twitter, replay it, verify G1-G3, report"),
    "verify": ("twittercore.checking.verify", "check a recorded history for G1, G2 and G3"),
    "workload": ("twittercore.checking.workload", "write a synthetic workload as JSON Lines"),
    "bench": ("twittercore.tools.bench", "where the comparison harness is (it ships with the source checkout)"),
    "serve": ("twittercore.tools.serve", "run the Mastodon-compatible server (the server extra)"),
    "node": (
        "twittercore.node.cli",
        "run one decentralised node: own users and store, peers by --peers (docs/nodes.md)",
    ),
    "load": ("twittercore.tools.loadtool", "drive a server over HTTP, record and verify"),
    "lab": ("twittercore.lab.cli", "the failure-point lab: lab up/down DEPLOYMENT, lab run SCENARIO (docs/lab.md)"),
}


#: Optional dependencies -> the extra that installs them.
EXTRAS = {
    "rich": "tools",
    "matplotlib": "tools",
    "starlette": "server",
    "uvicorn": "server",
    "httpx": "server",
    "orjson": "server",
    "redis": "redis",
}


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in EXTRAS:
            raise
        print(
            f"twittercore: this command needs {missing}, which is not installed "
            f"(pip install 'twittercore[{EXTRAS[missing]}]')",
            file=sys.stderr,
        )
        return 2


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="twittercore",
        description="twittercore: ordered fan-out. Tools around the library; each command has --help.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    # Parse the command name first so only that command's module is imported.
    argv = sys.argv[1:] if argv is None else argv
    name = next((a for a in argv if not a.startswith("-")), None)
    for command, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(command, help=help_text)
        if command == name:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
            command_parser.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
