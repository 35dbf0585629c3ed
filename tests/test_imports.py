"""Importing the packages changes nothing; every entry point sets XLA's flags before JAX starts.

Each case runs in a fresh interpreter: this test process set its own flags in conftest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training import runtime

REPO = Path(__file__).resolve().parent.parent
DEVICES = min(os.cpu_count() or 1, 2)
OURS = f"{runtime.HOST_DEVICES}={DEVICES} {runtime.OPT_LEVEL}=1"

IMPORT_EVERYTHING = """
import importlib, json, os, pkgutil, sys
# the Celery worker's module is an entry point: `celery -A interp_app.worker` needs the app
# built at import, flags first (tests/test_celery_worker.py runs it)
ENTRY_MODULES = {"interp_app.worker"}
import training, interp_app
for package in (training, interp_app):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if module.name not in ENTRY_MODULES:
            importlib.import_module(module.name)
from training import runtime
print(json.dumps({"flags": os.environ.get("XLA_FLAGS"), "started": runtime.backend_started()}))
"""

# Replaces the first thing an entry point does with JAX (train, build the app, fork the
# workers): reports the flags and how many devices JAX's backend was created with.
PROBE = """
import json, os, sys
def probe(*args, **kwargs):
    import jax
    flags = os.environ.get("XLA_FLAGS")
    print(json.dumps({"flags": flags, "devices": jax.local_device_count()}), flush=True)
    raise SystemExit(0)
root = sys.argv[1]
"""

ENTRY_POINTS = {
    "interp-train": """
import training.train
training.train.train = probe
from training.cli import main
main(["--root", root, "--quiet"])
""",
    "interp-app": """
import interp_app.server.cli
interp_app.server.cli.Served = probe  # what the forked gunicorn workers inherit
interp_app.server.cli.main(["--no-train", "--root", root])
""",
    "gunicorn worker (Served.load)": """
import interp_app.server.app
interp_app.server.app.app_from_settings = probe
from interp_app.server.cli import Served
from interp_app.server.settings import parse_args
Served(parse_args(["--no-train", "--root", root])).load()
""",
    "interp_app.server.app:server()": """
import os
os.environ["INTERP_ROOT"] = root
import interp_app.server.app
interp_app.server.app.app_from_settings = probe
interp_app.server.app.server()
""",
}


def _run(code: str, xla_flags: str | None, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS" and not k.startswith("INTERP_")}
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("xla_flags", [None, "--xla_cpu_use_thunk_runtime=true"])
def test_importing_every_module_leaves_xla_flags_alone(xla_flags):
    seen = _run(IMPORT_EVERYTHING, xla_flags)
    assert seen == {"flags": xla_flags, "started": False}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_entry_point_sets_flags_before_jax_starts(entry, tmp_path):
    seen = _run(PROBE + ENTRY_POINTS[entry], None, str(tmp_path))
    assert seen == {"flags": OURS, "devices": DEVICES}


@pytest.mark.parametrize("entry", ["interp-train", "interp_app.server.app:server()"])
def test_user_flags_win(entry, tmp_path):
    mine = f"{runtime.HOST_DEVICES}=3"
    seen = _run(PROBE + ENTRY_POINTS[entry], mine, str(tmp_path))
    assert seen == {"flags": f"{mine} {runtime.OPT_LEVEL}=1", "devices": 3}


def test_configure_once_jax_runs_changes_nothing():
    code = """
import json, os
import jax
jax.devices()
from training import runtime
print(json.dumps({"applied": runtime.configure(), "flags": os.environ.get("XLA_FLAGS")}))
"""
    assert _run(code, None) == {"applied": False, "flags": None}


def test_xla_flags_keep_the_users_and_add_ours_once():
    assert runtime.xla_flags("", 2) == f"{runtime.HOST_DEVICES}=2 {runtime.OPT_LEVEL}=1"
    user = f"--xla_dump_to=/tmp/x {runtime.OPT_LEVEL}=3"
    assert runtime.xla_flags(user, 2) == f"{user} {runtime.HOST_DEVICES}=2"
    once = runtime.xla_flags("", 2)
    assert runtime.xla_flags(once, 2) == once
