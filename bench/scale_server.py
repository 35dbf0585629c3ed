"""The server's share of a head click, in process (no browser, no network, no other
request in flight): the main callback through Dash's own endpoint (``tests.dash_client``).

    python bench/scale_server.py ROOT RUN HEADS [--app-dir DIR] [--repeat 20]

Prints one JSON line: the median milliseconds and the response bytes. ``scale_bench``
runs it after each column's browser part (a process of its own: its memory is not the
app's)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root")
    ap.add_argument("run")
    ap.add_argument("heads", help="comma-separated head names, clicked in turn")
    ap.add_argument("--app-dir", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    sys.path.insert(0, args.app_dir)
    from training import runtime

    runtime.configure()
    from interp_app.server.app import create_app
    from tests.dash_client import DashClient

    client = DashClient(create_app(args.root))
    sel = client.select(None, search=f"?run={args.run}")["selection"]["data"]
    rendered = client.render(sel)["rendered"]["data"]
    heads = args.heads.split(",")

    def click(name: str) -> tuple[float, int]:
        t = time.perf_counter()
        client.select("grid-click.data", {"head": name, "shift": False}, sel, rendered=rendered)
        return (time.perf_counter() - t) * 1000, client.last_bytes

    for name in heads:  # each head's first click computes its token attributions
        click(name)
    times = [click(heads[i % len(heads)]) for i in range(args.repeat)]
    print(
        json.dumps(
            {
                "ms": statistics.median(t for t, _ in times),
                "kb": statistics.median(b for _, b in times) / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
