"""Which merge kernel loads: the compiled one wherever it was built, the twin on request.

``make test`` runs this file twice: once plainly (the compiled kernel must
have loaded: a broken build fails here instead of quietly running 30x slower)
and once under ``TWITTERCORE_NO_EXTENSIONS=1`` (the twin must be selected).
Each test reads the switch the same way :mod:`twittercore._kernel` does to
know which run it is in.  The subprocess tests cover both cases in either run.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import subprocess
import sys
import textwrap

import pytest

from twittercore import ConfigurationError, _kernel, _merge_py

NO_EXTENSIONS = os.environ.get("TWITTERCORE_NO_EXTENSIONS", "") not in ("", "0")


def _compiled():
    """The compiled module if it imports here, else None."""
    try:
        return importlib.import_module("twittercore._merge")
    except ImportError:
        return None


def _is_extension(module) -> bool:
    return module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


@pytest.mark.skipif(NO_EXTENSIONS, reason="TWITTERCORE_NO_EXTENSIONS is set: the twin is expected")
def test_compiled_kernel_loaded():
    """Without the switch the compiled kernel is the one in use, and it is compiled."""
    assert not _kernel.NO_EXTENSIONS
    assert _kernel.merge is sys.modules["twittercore._merge"], _kernel.merge
    assert _is_extension(_kernel.merge), (
        f"twittercore._merge comes from {_kernel.merge.__file__}, not a compiled extension; rebuild with `make build`"
    )
    assert _kernel.merge is not _merge_py


@pytest.mark.skipif(not NO_EXTENSIONS, reason="TWITTERCORE_NO_EXTENSIONS is not set")
def test_switch_selects_twin():
    assert _kernel.NO_EXTENSIONS
    assert _kernel.merge is _merge_py
    assert _kernel.merge.__name__ == "twittercore._merge_py"
    assert _kernel.merge.__file__.endswith(".py")


def test_selected_kernel_works():
    """Whichever kernel this run selected answers like the twin."""
    runs = [_merge_py.pack([1, 4, 9]), _merge_py.pack([2, 3, 10])]
    assert _kernel.merge.newest(runs, 3) == _merge_py.newest(runs, 3) == [10, 9, 4]


def test_select():
    assert _kernel.select("python") is _merge_py
    assert _kernel.select("auto") is _kernel.merge
    assert _kernel.select(None) is _kernel.merge
    compiled = _compiled()
    if compiled is None:
        assert NO_EXTENSIONS, "the compiled kernel is missing and the switch is not set"
        with pytest.raises(ConfigurationError, match="kernel='cython'"):
            _kernel.select("cython")
    else:
        assert _kernel.select("cython") is compiled
        assert _is_extension(compiled)


@pytest.mark.parametrize("name", ["", "C", "Cython", "pure", 1])
def test_select_rejects_unknown_names(name):
    with pytest.raises(ConfigurationError, match="expected 'auto', 'cython' or 'python'"):
        _kernel.select(name)


# A child interpreter in which `twittercore._merge` cannot be imported, as
# after a TWITTERCORE_NO_EXTENSIONS=1 install (or a broken build).
_HIDE_COMPILED = textwrap.dedent(
    """
    import importlib.abc, sys

    class HideCompiled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "twittercore._merge":
                raise ImportError("hidden by the test", name=name)
            return None

    sys.meta_path.insert(0, HideCompiled())
    """
)


def _child(code: str, switch: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TWITTERCORE_NO_EXTENSIONS"}
    if switch is not None:
        env["TWITTERCORE_NO_EXTENSIONS"] = switch
    return subprocess.run(
        [sys.executable, "-c", _HIDE_COMPILED + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_switch_works_without_compiled_module():
    proc = _child(
        """
        import twittercore
        from twittercore import _kernel, ConfigurationError
        print(_kernel.merge.__name__)
        print(_kernel.merge.newest([_kernel.merge.pack([1, 2])], 5))
        try:
            _kernel.select("cython")
        except ConfigurationError as exc:
            print("ConfigurationError")
        """,
        switch="1",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:3] == ["twittercore._merge_py", "[2, 1]", "ConfigurationError"]


def test_missing_compiled_module_fails_loudly():
    """Without the switch a missing kernel is an ImportError that says how to fix it."""
    proc = _child("import twittercore._kernel", switch=None)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr
    assert "TWITTERCORE_NO_EXTENSIONS=1" in proc.stderr


@pytest.mark.parametrize("switch", ["0", ""])
def test_switch_off_values(switch):
    """``0`` and the empty string mean "off", as in setup.py."""
    proc = _child("import twittercore._kernel", switch=switch)
    assert proc.returncode != 0  # compiled module hidden, and the switch is off
    assert "did not import" in proc.stderr
