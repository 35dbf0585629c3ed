"""Server time of the 3D views through Dash's endpoint: a 12-token prompt on the default run.

    uv run python bench/forward3d_bench.py [--root checkpoints]

Prints median and worst server time (and response size) for the forward view + nearest
tokens on a new prompt, on a head change, on a threshold change, the embedding stacks on a
step change, and the HTML export.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import default_root  # noqa: E402

from interp_app.server.app import create_app  # noqa: E402
from tests.dash_client import DashClient  # noqa: E402

TWELVE = "i like spicy so i like chili and lemon is so sour"
HEADS = ["L0H0", "L0H1", "L1H0", "L1H1"]


def measure(label: str, calls, n: int, client: DashClient) -> None:
    times, sizes = [], []
    for i in range(n):
        t0 = time.perf_counter()
        calls(i)
        times.append((time.perf_counter() - t0) * 1000)
        sizes.append(client.last_bytes)
    print(
        f"{label:<44} median {statistics.median(times):6.1f} ms  max {max(times):6.1f} ms"
        f"  {statistics.median(sizes) / 1024:6.1f} KB"
    )


def main() -> None:
    root, tmp = default_root(__doc__)
    client = DashClient(create_app(root, warm=True))
    start = client.select(None, search="?run=fruits")["selection"]["data"]
    sel = client.select("prompt-input.value", TWELVE, current=start)["selection"]["data"]
    assert len(sel["prompt"].split()) == 12

    shown = {}

    def forward(s, threshold=0.3):
        """As the browser calls it: with what it shows now (a head change is a Patch)."""
        out = client.call(
            "forward-3d.figure",
            {"selection.data": s, "attention-threshold.value": threshold},
            ["selection.data"],
            {"forward-key.data": shown.get("key")},
        )
        if "forward-key" in out:
            shown["key"] = out["forward-key"]["data"]
        return out

    prompts = [f"{TWELVE} {w}".split(" ", 1)[1] for w in ("apple", "lemon", "chili", "orange")]
    new = [
        client.select("prompt-input.value", p, current=sel)["selection"]["data"] for p in prompts
    ]
    measure("forward view, new 12-token prompt (uncached)", lambda i: forward(new[i]), 4, client)
    heads = [{**sel, "layer": int(h[1]), "head": int(h[3])} for h in HEADS]
    measure("forward view, head change (12 tokens)", lambda i: forward(heads[i % 4]), 40, client)
    measure(
        "forward view, threshold change",
        lambda i: forward(sel, [0.1, 0.3, 0.5, 0.7][i % 4]),
        40,
        client,
    )
    steps = [0, 500, 2000, 5000, 10000]

    def embeddings(i):
        return client.call(
            "embedding-stacks.figure",
            {"selection.data": {**sel, "step": steps[i % 5]}, "embedding-set.value": "fruits"},
            ["selection.data"],
            {"embedding-key.data": None},
        )

    measure("embedding stacks, step change", embeddings, 40, client)

    def export(i):
        return client.call(
            "export-3d-file.data",
            {"export-3d.n_clicks": 1},
            ["export-3d.n_clicks"],
            {"selection.data": sel, "attention-threshold.value": 0.3},
        )

    measure("export as standalone HTML", export, 3, client)
    tmp.cleanup()


if __name__ == "__main__":
    main()
