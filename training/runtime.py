"""XLA's CPU runtime settings, applied before JAX starts.

Measured on a 2-core machine: a model this small is bound by per-operation overhead, not
arithmetic, so two single-threaded host devices each taking half the batch beat one
device using both cores (1.3 vs 2.2 ms a training step). LLVM optimisation level 1
instead of the default 2 compiles the training loop 0.45 s faster (2.5 vs 2.9 s) and
runs it no slower.
"""

from __future__ import annotations

import os
import sys

HOST_DEVICES = "--xla_force_host_platform_device_count"
OPT_LEVEL = "--xla_backend_optimization_level"


def configure(devices: int | None = None) -> None:
    """Add our XLA flags to XLA_FLAGS, unless the user set them or JAX runs already."""
    if "jax" in sys.modules:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    n = devices or min(os.cpu_count() or 1, 2)
    ours = {HOST_DEVICES: str(n), OPT_LEVEL: "1"}
    extra = [f"{name}={value}" for name, value in ours.items() if name not in flags]
    os.environ["XLA_FLAGS"] = " ".join([flags, *extra]).strip()
