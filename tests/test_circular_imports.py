"""Every module imports on its own, in a fresh interpreter, with warnings as errors.

A module that only imports after some other module has been imported first
hides an import cycle or a layer violation; a warning at import time (a
deprecated API) is a bug for every user who runs with ``-W error``.  As in
aio-libs/multidict's ``test_circular_imports.py``.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import twittercore

PACKAGE = Path(twittercore.__file__).parent


def _modules() -> list[str]:
    names = ["twittercore"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="twittercore."):
        if not info.name.endswith(".__main__"):  # runs a program when imported
            names.append(info.name)
    return sorted(names)


MODULES = _modules()


def test_every_layer_is_found():
    """The walk sees the packages, so the test below cannot pass by importing nothing."""
    for name in (
        "twittercore.store",
        "twittercore.backends.lmdb.store",
        "twittercore.server.app",
        "twittercore.checking.verify",
        "twittercore.tools.demo",
    ):
        assert name in MODULES, name


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
