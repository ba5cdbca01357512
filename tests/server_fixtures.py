"""The example server as a pytest fixture, on the memory store and on LMDB."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

from twittercore.server.testing import running_server  # noqa: E402


def server_fixture(admin_token: str, heartbeat: float):
    """A fixture yielding the base URL of a live server, once per backend."""

    @pytest.fixture(params=["memory", "lmdb"])
    def server(request, tmp_path):
        if request.param == "memory":
            target, state = ":memory:", ":memory:"
        else:
            target, state = str(tmp_path / "store"), str(tmp_path / "server.sqlite3")
        with running_server(target, state, admin_token=admin_token, heartbeat=heartbeat) as url:
            yield url

    return server
