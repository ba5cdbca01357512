"""``twittercore bench``: says where the comparison harness is.

The harness (baselines, plots, a Redis server to compare against) measures
the library from outside, so it ships with the source checkout, not with the
installed package: ``make bench`` or ``python benchmarks/compare.py`` in a
clone of the repository.
"""

from __future__ import annotations

import argparse
import sys

MESSAGE = (
    "twittercore bench: the comparison harness ships with the source checkout, not the installed "
    "package (in a clone of the repository: `make bench`, or `python benchmarks/compare.py --help`)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Say it here, before argparse rejects the harness's options as unknown.
    print(MESSAGE, file=sys.stderr)
    raise SystemExit(2)


def run(args: argparse.Namespace) -> int:
    print(MESSAGE, file=sys.stderr)
    return 2
