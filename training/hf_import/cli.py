"""``interp-import SRC --root ROOT --run NAME``: refusals are one line on stderr, exit code
2, and nothing is written (no network access is ever needed)."""

from __future__ import annotations

import argparse
import sys

PROG = "interp-import"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Turn a Hugging Face GPT-2 or GPT-NeoX (Pythia) folder into a run that "
        "interp-app can browse. SRC holds config.json and model.safetensors (one step), or "
        "step folders named step1000, checkpoint-1000 or 1000 (a series).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("src", metavar="SRC", help="the Hugging Face folder")
    p.add_argument("--root", default="checkpoints", help="checkpoint root folder")
    p.add_argument("--run", required=True, help="run name: a plain folder name under --root")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run of this name")
    return p


def fail(message: str) -> int:
    """One line on stderr (a library's message may span several), exit code 2."""
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse printed the usage and its error (or --help)
        return stop.code if isinstance(stop.code, int) else 2
    from training.checkpoint import list_steps
    from training.hf_import.series import import_series

    try:
        path = import_series(args.src, args.root, args.run, overwrite=args.overwrite)
    except ValueError as err:  # HFImportError and CheckpointError
        return fail(str(err))
    except OSError as err:  # a folder that cannot be listed, a full disk
        where = f": {err.filename}" if err.filename else ""
        return fail(f"{err.strerror or err}{where}")
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no run was written", file=sys.stderr)
        return 130
    steps = list_steps(path)
    span = f", {steps[0]}..{steps[-1]}" if steps else ""
    print(f"{PROG}: run {args.run!r} written to {path} ({len(steps)} steps{span})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
