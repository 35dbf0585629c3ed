"""``interp-app``: serve the explorer on a checkpoint root, training the default run if none."""

from __future__ import annotations

import argparse
import sys

from training import checkpoint as ckpt


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="interp-app",
        description="Explore a transformer's checkpoints in linked views.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--root", default="checkpoints", help="checkpoint root (one folder per run)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=int, default=8050, help="port to listen on")
    p.add_argument(
        "--no-train",
        action="store_true",
        help="never train: with an empty root the page says how to train a run",
    )
    p.add_argument(
        "--live-ms",
        type=int,
        default=3000,
        help="poll the run folder for new checkpoints every N ms (0: off)",
    )
    p.add_argument(
        "--cache-steps",
        type=int,
        default=512,
        help="parameter cache size in checkpoints (about 43 KB each for the default model)",
    )
    p.add_argument("--debug", action="store_true", help="Dash debug mode (development only)")
    return p


def ensure_default_run(root: str) -> None:
    """Train the built-in default run when the root has no runs, so the app has something."""
    if ckpt.list_runs(root):
        return
    from training.config import ModelConfig, TrainConfig
    from training.corpus import builtin_corpus
    from training.train import train

    print(f"interp-app: no runs in {root}; training the default run first (about a minute)")
    summary = train(root, "fruits", ModelConfig(), TrainConfig(), builtin_corpus())
    print(f"interp-app: trained {summary.run_path} ({len(summary.steps)} checkpoints)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.no_train:
        try:
            ensure_default_run(args.root)
        except (OSError, ValueError) as err:
            print(f"interp-app: error: cannot train the default run: {err}", file=sys.stderr)
            return 2
    from interp_app.app import create_app

    app = create_app(args.root, live_ms=args.live_ms, param_cache=args.cache_steps, warm=True)
    print(f"interp-app: serving {args.root} at http://{args.host}:{args.port}/", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("interp-app: warning: open to the network without authentication", flush=True)
    app.run(host=args.host, port=args.port, debug=args.debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
