"""The served app under an unlucky or hostile user: cold starts racing the first page,
odd folders in the checkpoint root, unreadable runs, oversized and forged callback input."""

from __future__ import annotations

import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from interp_app.app import create_app
from tests.browser import app_command, free_port, serve


def _bundle_paths(root) -> list[str]:
    """The component bundles a fresh page asks for (from an app built in this process)."""
    page = create_app(root).server.test_client().get("/").text
    paths = re.findall(r'src="(/_dash-component-suites/[^"]+)"', page)
    assert any("dash_bootstrap_components" in p for p in paths), paths
    return paths


def _wait_for_listener(port: int, timeout: float = 30.0) -> None:
    """Until the master has bound the port: workers may still be booting (that is the point)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


def test_first_requests_after_a_start_never_race_dash_setup(small_root, tmp_path):
    """Regression: a bundle request racing a worker's first page got a 500 (plotly/dash#3971).
    Forty concurrent first requests, over three fresh starts of two threaded workers."""
    root, _ = small_root
    paths = ["/", *_bundle_paths(root)]
    statuses: list[int] = []
    for attempt in range(3):
        port = free_port()
        argv = [*app_command(root, port)[:-1], "2", "--threads", "4"]
        log = tmp_path / f"app-{attempt}.log"
        with serve(argv, port, timeout=120, log=log, ready=_wait_for_listener) as url:
            wanted = [paths[i % len(paths)] for i in range(40)]
            with ThreadPoolExecutor(40) as pool:
                got = pool.map(lambda p: requests.get(url + p, timeout=120).status_code, wanted)
                statuses.extend(got)
    assert len(statuses) == 120
    assert statuses.count(200) == 120, sorted(set(statuses))
    for attempt in range(3):
        assert "is not a registered library" not in (tmp_path / f"app-{attempt}.log").read_text()
