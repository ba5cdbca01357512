"""Shared fixtures: every store variant the library has, opened fresh per test."""

from __future__ import annotations

import importlib.util
import itertools
import os

import pytest
from hypothesis import settings

import twittercore
from twittercore import _kernel

# `make test` uses the default profile; HYPOTHESIS_PROFILE=thorough explores far more.
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

HAVE_COMPILED = (
    importlib.util.find_spec("twittercore._merge") is not None
    and importlib.util.find_spec("twittercore._codec") is not None
)

#: (name, open options) of every store the suite runs against; the memory store is the reference.
STORE_KINDS = [("memory", None), ("lmdb-python", {"kernel": "python"})]
if HAVE_COMPILED:
    STORE_KINDS.append(("lmdb-cython", {"kernel": "cython"}))

_counter = itertools.count()


class FakeClock:
    """A deterministic clock so that every store stamps the same times (G5 compares whole events)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 0.25
        return self.now


def open_kind(kind: str, tmp_path, clock=None, **extra):
    options = dict(STORE_KINDS)[kind]
    clock = clock or FakeClock()
    if options is None:
        return twittercore.open(":memory:", clock=clock, **extra)
    path = tmp_path / f"{kind}-{next(_counter)}"
    return twittercore.open(str(path), durable=False, clock=clock, **options, **extra)


@pytest.fixture(params=[name for name, _ in STORE_KINDS])
def store(request, tmp_path):
    """One open store of each kind; closed after the test."""
    opened = open_kind(request.param, tmp_path)
    yield opened
    opened.close()


KERNELS = ["cython", "python"] if HAVE_COMPILED else ["python"]


@pytest.fixture(scope="session", params=KERNELS)
def kernel(request):
    """The default merge and codec implementation: the compiled module, then its twin.

    A session fixture with one param per implementation (as multidict's
    conftest does), so tests run grouped by implementation; the fixtures that
    open stores swap the default for the length of one test only.
    """
    return request.param


@pytest.fixture
def lmdb_path(tmp_path, kernel, monkeypatch):
    """A fresh store directory; stores opened on it without ``kernel=`` use the ``kernel`` param."""
    monkeypatch.setattr(_kernel, "merge", _kernel.select(kernel))
    return str(tmp_path / "store")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` run only when ``-m`` names them (``make test-long``), so `make test` stays short."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow (make test-long)")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)


def pytest_sessionfinish(session, exitstatus):
    """Kill child processes a failed test left running: multiprocessing joins them at exit, which hung CI for 90 min."""
    import multiprocessing

    left = multiprocessing.active_children()
    for child in left:
        child.kill()
    for child in left:
        child.join(10)
    if left:
        print(f"\nconftest: killed {len(left)} child process(es) left running: {[c.name for c in left]}")
