"""``interp-train --task induction``: the induction lab's options and its entry point.

The shared options (``--steps``, ``--lr``, ``--batch``, ``--context``, the model's width)
keep the fruits defaults in ``--help``; under ``--task induction`` only the ones typed count,
and the rest take :class:`InductionConfig`'s defaults (measured to form an induction head).
Options that mean nothing here (a corpus, dropout, an MLP, resuming) are refused.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from training.induction.config import InductionConfig

#: Options of interp-train that an induction run has no use for.
NOT_HERE = ("corpus", "valid", "resume", "log_spaced", "d_mlp", "dropout")
#: Option -> InductionConfig field, where the names differ.
FIELDS = {"heads": "n_heads", "layers": "n_layers", "batch": "batch_size"}
#: Options that are not config fields.
OTHER = ("root", "run", "task", "seed", "seeds", "overwrite", "quiet")


def add_options(p: argparse.ArgumentParser) -> None:
    """``--task`` and the induction task's own options (a group of their own)."""
    c = InductionConfig()
    g = p.add_argument_group("task (--task induction: shared options default to its own)")
    g.add_argument(
        "--task", choices=("fruits", "induction"), default="fruits", help="what to train on"
    )
    g.add_argument(
        "--seeds", default=None, help="induction: comma-separated seeds, trained together"
    )
    g.add_argument("--vocab", type=int, default=c.vocab, help="induction: data tokens")
    g.add_argument("--min-segment", type=int, default=c.min_segment, help="induction")
    g.add_argument("--max-segment", type=int, default=c.max_segment, help="induction")
    g.add_argument(
        "--repeat-weight",
        type=float,
        default=c.repeat_weight,
        help="induction: training-loss weight of the repeated part (others 1)",
    )
    g.add_argument(
        "--adam-eps",
        type=float,
        default=c.adam_eps,
        help="induction: AdamW's epsilon (larger: small gradients move less)",
    )
    g.add_argument(
        "--dense-every", type=int, default=c.dense_every, help="induction: early spacing"
    )
    g.add_argument(
        "--dense-until", type=int, default=c.dense_until, help="induction: end of dense saves"
    )


#: Options only the induction task reads: given with the fruits task, they are refused.
INDUCTION_ONLY = (
    "seeds",
    "vocab",
    "min_segment",
    "max_segment",
    "repeat_weight",
    "adam_eps",
    "dense_every",
    "dense_until",
)


def fruits_strays(build_parser: Callable[[], argparse.ArgumentParser], argv: list[str] | None):
    """The induction-only options typed for the fruits task (ignoring them would hide a
    forgotten ``--task induction``)."""
    typed = typed_options(build_parser, argv)
    return ["--" + o.replace("_", "-") for o in INDUCTION_ONLY if o in typed]


def typed_options(build_parser: Callable[[], argparse.ArgumentParser], argv: list[str] | None):
    """Only the options given on the command line (none of the defaults)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(argv))


def parse_seeds(given: dict[str, object]) -> list[int]:
    """``--seeds 0,1,2`` or ``--seed 3`` (not both); seed 0 by default."""
    if "seeds" in given and "seed" in given:
        raise ValueError("give --seeds or --seed, not both")
    if "seed" in given:
        return [int(given["seed"])]  # type: ignore[call-overload]
    text = str(given.get("seeds", "0"))
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise ValueError(f"--seeds is a comma-separated list of integers, got {text!r}") from None
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds must be distinct non-negative integers, got {text!r}")
    return seeds


def induction_config(given: dict[str, object]) -> InductionConfig:
    """The config from the typed options; options with no meaning here refused."""
    refused = [k for k in NOT_HERE if given.get(k) not in (None, False)]
    if refused:
        names = ", ".join("--" + k.replace("_", "-") for k in refused)
        raise ValueError(f"{names} does not apply to --task induction")
    fields = {FIELDS.get(k, k): v for k, v in given.items() if k not in OTHER + NOT_HERE}
    return InductionConfig.from_dict(fields)


def main(argv: list[str] | None, build_parser: Callable[[], argparse.ArgumentParser]) -> int:
    """Train the seeds together; refusals are one line and exit code 2, as interp-train."""
    from training.checkpoint import CheckpointError
    from training.induction.loop import train_induction
    from training.runtime import configure
    from training.train import TrainError

    configure()
    given = typed_options(build_parser, argv)
    try:
        cfg, seeds = induction_config(given), parse_seeds(given)
        summary = train_induction(
            str(given.get("root", "checkpoints")),
            str(given.get("run", "induction")),
            cfg,
            seeds,
            overwrite=bool(given.get("overwrite", False)),
            progress=not given.get("quiet", False),
        )
    except (ValueError, TrainError, CheckpointError) as err:
        print(f"interp-train: error: {' '.join(str(err).splitlines())}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"interp-train: error: {err.strerror or err}", file=sys.stderr)
        return 2
    for path, valid, repeat in zip(
        summary.runs, summary.valid_loss, summary.repeat_loss, strict=True
    ):
        print(f"run saved to {path}: validation loss {valid:.4f}, repeated part {repeat:.4f}")
    print(f"{len(summary.runs)} seed(s) in {summary.timings['total_s']:.1f} s")
    return 0
