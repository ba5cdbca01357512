"""``twittercore bench``: run the comparison harness, ``benchmarks/compare.py``, from a checkout.

The harness (baselines, plots, a Redis server) is not part of the installed
package: it lives in the source checkout next to ``src/``.  This command
finds it there (or under the current directory) and runs it in this process
with the same arguments, so ``twittercore bench --quick`` is
``python benchmarks/compare.py --quick``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from .errors import ConfigurationError

_RELATIVE = Path("benchmarks") / "compare.py"


def find_compare(cwd: str | os.PathLike[str] | None = None) -> Path:
    """The checkout's ``benchmarks/compare.py``, or :class:`ConfigurationError` saying where it looked."""
    package_root = Path(__file__).resolve().parents[2]  # src/twittercore/benchcli.py -> checkout
    candidates = [package_root / _RELATIVE, Path(cwd or os.getcwd()).resolve() / _RELATIVE]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigurationError(
        "twittercore bench: the comparison harness (benchmarks/compare.py) ships with the source "
        "checkout, not the installed package; run it from a clone of the repository "
        "(git clone ...; make bench), or pass through: python benchmarks/compare.py --help"
    )


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("twittercore_bench_compare", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_arguments(parser: argparse.ArgumentParser) -> None:
    try:
        compare = _load(find_compare())
    except ConfigurationError as exc:
        # Fail here, before argparse rejects the harness's options as unknown.
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    compare.add_arguments(parser)
    parser.set_defaults(compare_module=compare)


def run(args: argparse.Namespace) -> int:
    return int(args.compare_module.run(args) or 0)
