"""XLA's CPU runtime settings, applied explicitly by each entry point before JAX computes.

Importing ``training`` (or any of its modules) never touches the environment: the entry
points call :func:`configure` themselves - ``interp-train`` (``training.cli.main``),
``interp-app`` (``interp_app.server.cli.main`` and each gunicorn worker's ``Served.load``), the
bare WSGI factory ``interp_app.server.app.server()``, the bench scripts and the test conftest.

Why these flags: a model this small is bound by per-operation overhead, not arithmetic,
so two single-threaded host devices each taking half the batch beat one device using both
cores, and LLVM optimisation level 1 compiles the training loop faster than the default 2
and runs it no slower (measurements: docs/PERFORMANCE.md).
"""

from __future__ import annotations

import os
import sys

HOST_DEVICES = "--xla_force_host_platform_device_count"
OPT_LEVEL = "--xla_backend_optimization_level"


def backend_started() -> bool:
    """Whether JAX has created its XLA backend, after which XLA_FLAGS are no longer read.

    Importing JAX is fine: XLA reads XLA_FLAGS when the first computation (or device
    query) creates the backend. This never imports JAX itself."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is None:
        return False
    initialized = getattr(bridge, "backends_are_initialized", None)
    return True if initialized is None else bool(initialized())


def xla_flags(current: str, devices: int | None = None) -> str:
    """``current`` XLA_FLAGS plus ours, except those the user set already (theirs win)."""
    n = devices or min(os.cpu_count() or 1, 2)
    ours = {HOST_DEVICES: str(n), OPT_LEVEL: "1"}
    extra = [f"{name}={value}" for name, value in ours.items() if name not in current]
    return " ".join([current, *extra]).strip()


def configure(devices: int | None = None) -> bool:
    """Add our XLA flags to ``os.environ["XLA_FLAGS"]`` for the backend JAX starts later.

    Call it once from an entry point, before the first JAX computation; calling it again
    changes nothing. Flags already in XLA_FLAGS win. Returns False, changing nothing, when
    JAX's backend already runs (the flags would be ignored)."""
    if backend_started():
        return False
    flags = xla_flags(os.environ.get("XLA_FLAGS", ""), devices)
    if flags:
        os.environ["XLA_FLAGS"] = flags
    return True
