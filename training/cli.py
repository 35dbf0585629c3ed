"""``interp-train``: train a run into the checkpoint root; refusals are one line, exit code 2."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TypeVar

from training.config import TrainConfig
from training.induction import cli as induction_cli
from training.model.config import ConfigDict, ModelConfig

C = TypeVar("C", bound=ConfigDict)


def build_parser() -> argparse.ArgumentParser:
    t = TrainConfig()
    p = argparse.ArgumentParser(
        prog="interp-train",
        description="Train the seed GPT (or one configured here) and save a checkpoint series "
        "that interp-app can browse. Defaults reproduce the seed article.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    io = p.add_argument_group("where")
    io.add_argument(
        "--root", default="checkpoints", help="checkpoint root folder (one folder per run)"
    )
    io.add_argument("--run", default="fruits", help="run name: a plain folder name under --root")
    io.add_argument(
        "--corpus",
        default=None,
        help="UTF-8 text, one sequence a line (default: built-in fruits corpus)",
    )
    io.add_argument(
        "--valid", default=None, help="validation text (default: the built-in one, or --corpus)"
    )
    tr = p.add_argument_group("training")
    tr.add_argument("--steps", type=int, default=t.steps, help="optimizer steps")
    tr.add_argument(
        "--save-every",
        type=int,
        default=t.save_every,
        help="checkpoint spacing after the dense early steps",
    )
    tr.add_argument(
        "--log-spaced",
        type=int,
        default=t.log_spaced,
        metavar="N",
        help="instead: N log-spaced checkpoints (0 = off)",
    )
    tr.add_argument(
        "--seed", type=int, default=t.seed, help="seed for initialisation, batches and dropout"
    )
    tr.add_argument("--lr", type=float, default=t.lr, help="AdamW learning rate")
    tr.add_argument("--weight-decay", type=float, default=t.weight_decay, help="AdamW weight decay")
    tr.add_argument(
        "--batch", type=int, default=t.batch_size, help="sequences per step, drawn at random"
    )
    _model_options(p.add_argument_group("model"))
    induction_cli.add_options(p)
    ex = p.add_mutually_exclusive_group()
    ex.add_argument(
        "--resume", action="store_true", help="continue the run from its latest complete step"
    )
    ex.add_argument(
        "--overwrite", action="store_true", help="delete an existing run of this name first"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _cluster_options(p.add_argument_group("several processes or hosts (jax.distributed)"))
    return p


def _cluster_options(cl: argparse._ArgumentGroup) -> None:
    cl.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="address of process 0, where every process meets (a port free on its host)",
    )
    cl.add_argument(
        "--num-processes", type=int, default=1, help="processes taking part, on any hosts"
    )
    cl.add_argument(
        "--process-id",
        type=int,
        default=0,
        help="this process's number, 0 to N-1; process 0 writes the run",
    )


def _model_options(md: argparse._ArgumentGroup) -> None:
    m = ModelConfig()
    md.add_argument("--layers", type=int, default=m.n_layers, help="transformer blocks")
    md.add_argument("--heads", type=int, default=m.n_heads, help="attention heads per block")
    md.add_argument("--d-model", type=int, default=m.d_model, help="residual stream width")
    md.add_argument("--d-mlp", type=int, default=m.d_mlp, help="MLP hidden width")
    md.add_argument("--context", type=int, default=m.context, help="context length in tokens")
    md.add_argument("--dropout", type=float, default=m.dropout, help="dropout rate while training")


#: Options named otherwise than the config field they set.
_FIELDS = {"layers": "n_layers", "heads": "n_heads", "batch": "batch_size"}


def _config(cls: type[C], args: argparse.Namespace) -> C:
    """``cls`` from the parsed options that set its fields (the others keep their defaults)."""
    return cls.from_dict({_FIELDS.get(option, option): v for option, v in vars(args).items()})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def refuse(message: str) -> int:
        print(f"interp-train: error: {' '.join(message.splitlines())}", file=sys.stderr)
        return 2

    if args.task == "induction":  # its own loop (training.induction); fruits goes on below
        if (args.coordinator, args.num_processes, args.process_id) != (None, 1, 0):
            return refuse("--coordinator, --num-processes and --process-id apply to fruits only")
        return induction_cli.main(argv, build_parser)
    from training import distributed
    from training.checkpoint import CheckpointError
    from training.corpus import CorpusError, load_corpus
    from training.runtime import configure
    from training.train import TrainError, train

    configure()  # XLA's CPU flags, before JAX starts its backend

    try:
        strays = induction_cli.fruits_strays(build_parser, argv)
        if strays:
            raise ValueError(f"{', '.join(strays)} apply to --task induction only")
        mc, tc = _config(ModelConfig, args), _config(TrainConfig, args)
        cluster = distributed.Cluster(args.coordinator, args.num_processes, args.process_id)
        corpus = load_corpus(args.corpus, args.valid)
        joined = _join(cluster)
        if joined:
            return refuse(joined)
        summary = train(
            args.root,
            args.run,
            mc,
            tc,
            corpus,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.quiet,
            cluster=cluster,
        )
    except (ValueError, CorpusError, TrainError, CheckpointError) as err:
        return refuse(str(err))
    except OSError as err:  # a write that failed outside the run's own error handling
        where = f": {err.filename}" if err.filename else ""
        return refuse(f"{err.strerror or err}{where}")
    except KeyboardInterrupt:
        print("interp-train: interrupted; completed steps are kept (use --resume)", file=sys.stderr)
        return 130
    return _report(summary, cluster)


def _report(summary: Any, cluster: Any) -> int:
    """What the run learnt, printed by process 0 (the others say they are done)."""
    if not cluster.writer:
        print(
            f"process {cluster.process_id} of {cluster.num_processes} done: train loss "
            f"{summary.train_loss:.4f}; process 0 wrote the run"
        )
        return 0
    print(f"run saved to {summary.run_path} ({len(summary.steps)} checkpoints)")
    print(f"train loss {summary.train_loss:.4f}   validation loss {summary.valid_loss:.4f}")
    print(f"next-token predictions for {summary.prompt!r}:")
    for word, prob in summary.top:
        print(f"  {word:<12} {prob:7.2%}")
    return 0


def _join(cluster: Any) -> str | None:
    """Join the cluster (nothing for one process); why not, in one line."""
    from training import distributed

    try:
        distributed.initialize(cluster)
    except (RuntimeError, ValueError) as err:  # jaxlib's errors derive from RuntimeError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"cannot join the cluster at {cluster.coordinator}: {first}"
    return None


if __name__ == "__main__":
    sys.exit(main())
