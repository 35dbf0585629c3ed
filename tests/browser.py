"""Real headless Chromium (Debian's) driven by Playwright, and the real app in a subprocess."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def chromium_path() -> str:
    """The system Chromium; skips (or fails under CI=true) with install advice."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    advice = "no Chromium found: install it with `apt-get install chromium chromium-driver`"
    if os.environ.get("CI") == "true":
        pytest.fail(advice)
    pytest.skip(advice)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(
    argv: list[str],
    port: int,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    ready: Callable[[int], None] | None = None,
):
    """Run a server command until it answers /healthz (or until ``ready(port)`` returns);
    always stop it afterwards.

    Its output goes to a file (``log``), never a pipe: a busy access log would fill a pipe
    and stall the server.
    """
    if log is None:
        handle, name = tempfile.mkstemp(prefix="server-", suffix=".log")
        os.close(handle)
        log = Path(name)
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while ready is None:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()}")
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not answer: {log.read_text()}") from None
                time.sleep(0.2)
        if ready is not None:
            ready(port)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def app_command(root: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "interp_app.server.cli",
        "--no-train",
        "--root",
        str(root),
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def train_command(root: Path, run: str, *args: str) -> list[str]:
    """``interp-train`` as a subprocess (quiet), for tests that kill or race it."""
    return [
        sys.executable,
        "-m",
        "training.cli",
        "--root",
        str(root),
        "--run",
        run,
        "--quiet",
        *args,
    ]
