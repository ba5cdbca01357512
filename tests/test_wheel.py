"""The distribution works without the checkout: build the wheel, install it into a
fresh virtual environment, run the demo and the server from there."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(argv, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{argv[:4]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv with the wheel built from the tracked files (no build products of the checkout)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to know which files are tracked")
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    archive = _run(["git", "-C", str(ROOT), "ls-files", "-z"]).stdout.split("\0")
    for name in filter(None, archive):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    # The build runs with this interpreter's Cython and setuptools (no download);
    # the install resolves the runtime dependencies as a user's pip would.
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp / "dist"),
            str(source),
        ],
        timeout=600,
    )
    wheels = list((tmp / "dist").glob("twittercore-*.whl"))
    assert len(wheels) == 1, wheels
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", f"{wheels[0]}[server,tools]"], timeout=600)
    return env_dir


def _clean_env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONSAFEPATH"] = "1"  # never import from the working directory
    return env


def test_installed_package_has_no_checkout_on_its_path(installed, tmp_path):
    out = _run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import twittercore, twittercore._merge as m, twittercore.server.app; "
            "print(twittercore.__file__); print(m.__file__); print(twittercore.__version__)",
        ],
        cwd=tmp_path,
        env=_clean_env(),
    ).stdout.split()
    assert all(str(installed) in path for path in out[:2]), out
    assert out[1].endswith(".so"), "the wheel must carry the compiled kernel"
    assert out[2] == _run([sys.executable, "-c", "import twittercore; print(twittercore.__version__)"]).stdout.strip()


def test_demo_runs_from_the_wheel(installed, tmp_path):
    out = _run(
        [str(installed / "bin" / "twittercore"), "demo", "--users", "200", "--out", str(tmp_path / "out")],
        cwd=tmp_path,
        env=_clean_env(),
        timeout=300,
    )
    assert "G1" in out.stdout and (tmp_path / "out").is_dir()


def test_serve_runs_from_the_wheel(installed, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(installed / "bin" / "twittercore"), "serve", "--data", str(tmp_path / "data"), "--port", str(port)],
        cwd=tmp_path,
        env=_clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/api/v1/instance", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "serve did not answer within 30 s"
                time.sleep(0.2)
        assert reply.status_code == 200 and "version" in reply.json()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        proc.stderr.close()
