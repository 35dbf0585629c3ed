"""The selection/URL model is free of JAX: importing it (in a fresh interpreter, since this
process has JAX loaded already) loads neither JAX nor Flax nor the model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CODE = """
import json, sys
import interp_app.core.selection, interp_app.core.heads
heavy = ("jax", "jaxlib", "flax", "training.model")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in heavy)))
"""


def test_selection_imports_no_jax():
    out = subprocess.run(
        [sys.executable, "-c", CODE], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
