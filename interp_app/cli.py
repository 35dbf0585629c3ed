"""``interp-app``: placeholder until the explorer lands."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("interp-app: the explorer is not built yet; use interp-train for now", file=sys.stderr)
    return 1
