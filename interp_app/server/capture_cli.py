"""``interp-capture``: one step's internals and every metric on one prompt, as one safetensors file.

::

    interp-capture --root checkpoints --run fruits --step 10000 \\
        --prompt "i like spicy so i like" --target chili --out capture.safetensors

The numbers are the app's (``interp_app.core.api``, which the panels' functions also use), for
the prompt's T real tokens. Tensors (L layers, H heads, D width, K head width, V vocabulary,
C components of the residual stream at ``pos``; the header names them)::

    tokens         [T]           int32    token ids
    logits         [T, V]        float32  logits
    tok_emb        [T, D]        float32  token embeddings
    pos_emb        [T, D]        float32  position embeddings
    resid          [L+1, T, D]   float32  residual stream at each layer boundary
    resid_mid      [L, T, D]     float32  after attention, before the MLP
    patterns       [L, H, T, T]  float32  attention patterns (query, key)
    values         [L, H, T, K]  float32  value vectors
    head_out       [L, H, T, D]  float32  each head's write to the residual stream
    attn_bias      [L, D]        float32  attention output bias
    attn_out       [L, T, D]     float32  attention block output (heads + bias)
    mlp_out        [L, T, D]     float32  MLP outputs
    final          [T, D]        float32  after the final LayerNorm
    final_inv_std  [T]           float32  the final LayerNorm's 1/std
    probs          [V]           float64  P(word) at pos
    clean_probs    [V]           float64  the same without ablation (only with --ablate)
    dla            [C]           float64  direct logit attribution; sums to logit[pos, target]
    token_attr     [T]           float64  each source token's DLA through --head
    lens_top       [L+1, T]      int64    logit lens: most likely word id
    lens_prob      [L+1, T]      float64  logit lens: its probability
    head_dla, head_share, head_attn_src, head_entropy, head_prev_token
                   [L, H]        float64  the head grid's metrics
    head_ablation  [L, H]        float32  change in log P(target) when each head is ablated
    patch_heads    [L, H]        float32  patching each head's output (only with --corrupt)
    patch_resid    [L+1, T]      float32  patching each residual vector (only with --corrupt)

With ``--circuits``, the circuit graph's edge scores at every step of the run (S steps, E
edges; ``Run.circuits``: the logit difference of --target against the corrupted prompt's
answer, --corrupt or the run's default corrupted prompt; an induction run's repeated-part
loss with ``--circuits-metric repeat_loss``), and ``circuits`` in the header (edge,
sender and receiver names, the metric)::

    circuit_steps           [S]       int64    the steps scored
    circuit_edge_sender     [E]       int32    each edge's sender (header's senders)
    circuit_edge_receiver   [E]       int32    each edge's receiver (header's receivers)
    circuit_exact           [S, E]    float32  exact path patching of each edge
    circuit_eap             [S, E]    float32  edge attribution patching
    circuit_eap_ig          [S, E]    float32  EAP-IG
    circuit_clean_metric    [S]       float32  the metric on the clean input
    circuit_corrupt_metric  [S]       float32  and on the corrupted input
    circuit_faith_exact     [S, E+1]  float32  the metric keeping the top k edges (exact order)
    circuit_faith_ig        [S, E+1]  float32  the same in EAP-IG order

The file's metadata holds one entry, ``header``: JSON with ``format``, ``run``, ``step``,
``prompt``, ``tokens``, ``words``, ``target``, ``target_id``, ``pos``, ``head``, ``src``,
``ablate``, ``mode``, ``logit``, ``target_prob``, ``components``, ``component_kinds``,
``vocab``, ``model`` and ``train`` (the run's configs), ``patching`` (with ``--corrupt``)
and ``tensors`` (each tensor's axes, shape, dtype and meaning). Read it back with::

    from safetensors import safe_open
    from safetensors.numpy import load_file
    tensors = load_file("capture.safetensors")
    with safe_open("capture.safetensors", "np") as f:
        header = json.loads(f.metadata()["header"])

Bad input (unknown run, step or target word, a prompt without words, an existing --out
without --force) is one line on stderr, exit code 2, and nothing is written; the file
appears whole or not at all (written under a temporary name, then renamed).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import textwrap
from pathlib import Path

import numpy as np

from training import runtime

HEADER_KEY = "header"
PROG = "interp-capture"
WIDTH = 100  # the --help epilog's paragraphs
# the flags passed on to ``Run.export`` by name (``Run.metrics``' keywords and ``corrupt``)
EXPORT_OPTIONS = ("target", "pos", "head", "src", "ablate", "mode", "corrupt")
#: what ``--circuits`` adds: name -> (shape, dtype, meaning), as ``api.TENSORS``
CIRCUIT_TENSORS: dict[str, tuple[str, str, str]] = {
    "circuit_steps": ("[S]", "int64", "the steps scored"),
    "circuit_edge_sender": ("[E]", "int32", "each edge's sender (header's senders)"),
    "circuit_edge_receiver": ("[E]", "int32", "each edge's receiver (header's receivers)"),
    "circuit_exact": ("[S, E]", "float32", "exact path patching of each edge"),
    "circuit_eap": ("[S, E]", "float32", "edge attribution patching"),
    "circuit_eap_ig": ("[S, E]", "float32", "EAP-IG"),
    "circuit_clean_metric": ("[S]", "float32", "the metric on the clean input"),
    "circuit_corrupt_metric": ("[S]", "float32", "and on the corrupted input"),
    "circuit_faith_exact": ("[S, E+1]", "float32", "the metric keeping the top k edges"),
    "circuit_faith_ig": ("[S, E+1]", "float32", "the same in EAP-IG order"),
}


class CaptureError(ValueError):
    """A refusal of the CLI itself (the output path)."""


def build_parser() -> argparse.ArgumentParser:
    from interp_app.core import api, causal
    from interp_app.core.selection import DEFAULT_RUN

    metadata = textwrap.fill(
        f"metadata: {HEADER_KEY!r}, JSON: format, run, step, prompt, tokens, words, target, "
        "target_id, pos, head, src, ablate, mode, logit, target_prob, components, "
        "component_kinds, vocab, model and train configs, patching (with --corrupt), tensors "
        "(each one's axes, shape, dtype and meaning).",
        WIDTH,
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=textwrap.fill(
            "Write one step's internals and every metric the app shows, on one prompt, to "
            "one safetensors file. Bad input: one line on stderr, exit 2, nothing written.",
            WIDTH,
        ),
        epilog="tensors (T prompt tokens, L layers, H heads, D width, K head width,\n"
        "V vocabulary, C components of the residual stream at --pos):\n"
        f"{api.tensor_table()}\n\nwith --circuits, over every step (S steps, E edges):\n"
        f"{api.tensor_table(CIRCUIT_TENSORS)}\n\n{metadata}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--root", default="checkpoints", help="checkpoint root (default: %(default)s)"
    )
    parser.add_argument("--run", default=DEFAULT_RUN, help="run name (default: %(default)s)")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument("--prompt", required=True, help="the prompt text")
    parser.add_argument(
        "--target", help="target word (default: the model's most likely word at --pos)"
    )
    parser.add_argument("--pos", type=int, help="predicting position (default: the last)")
    parser.add_argument("--head", help="head of token_attr, e.g. L1H0 (default: L1H0)")
    parser.add_argument("--src", type=int, default=0, help="source position of head_attn_src")
    parser.add_argument("--ablate", default="", help="heads to ablate, e.g. L0H1,L1H0")
    parser.add_argument("--mode", default="zero", choices=causal.MODES, help="ablation mode")
    parser.add_argument("--corrupt", help="a corrupted prompt of the same length: add patching")
    parser.add_argument(
        "--circuits",
        action="store_true",
        help="add the circuit graph's edge scores at every step (exact, EAP, EAP-IG)",
    )
    parser.add_argument(
        "--circuits-metric",
        choices=("logit_diff", "repeat_loss"),
        help="the circuits' metric (default: repeat_loss for an induction run, else logit_diff)",
    )
    parser.add_argument("--out", required=True, help="the .safetensors file to write")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    return parser


def check_out(out: Path, force: bool) -> None:
    if out.is_dir():
        raise CaptureError(f"--out {out} is a folder")
    if (out.exists() or out.is_symlink()) and not force:
        raise CaptureError(f"{out} exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise CaptureError(f"the folder {out.parent} does not exist")


def encode(tensors: dict[str, np.ndarray], header: dict) -> bytes:
    from safetensors.numpy import save

    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    return save(arrays, metadata={HEADER_KEY: json.dumps(header)})


def write_atomic(out: Path, data: bytes, force: bool) -> None:
    """Write a temporary file beside ``out`` (with the umask's mode), then move it into
    place: replacing ``out`` with ``force``, else never over a file that appeared meanwhile."""
    while True:
        tmp = out.parent / f".{out.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp, out)
            return
        try:
            os.link(tmp, out)  # fails if out exists: no overwrite, even in a race
        except FileExistsError:
            raise CaptureError(f"{out} exists; pass --force to replace it") from None
        except OSError:  # a file system without hard links
            if out.exists():
                raise CaptureError(f"{out} exists; pass --force to replace it") from None
            os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def with_circuits(run, export, args: argparse.Namespace):
    """The export plus the circuit tensors (:data:`CIRCUIT_TENSORS`) and header entry."""
    from interp_app.core.api import Export

    h = export.header
    metric = args.circuits_metric or None
    if metric == "repeat_loss" or (metric is None and "induction" in run.info.meta):
        found = run.circuits(metric=metric)
    else:
        corrupt = args.corrupt
        found = run.circuits(args.prompt, corrupt, target=h["target"], pos=h["pos"])
    tensors = {**export.tensors, **found.arrays()}
    header = {**h, "circuits": found.header()}
    header["tensors"] = {
        **h["tensors"],
        **{
            k: {
                "axes": CIRCUIT_TENSORS[k][0],
                "shape": list(v.shape),
                "dtype": str(v.dtype),
                "doc": CIRCUIT_TENSORS[k][2],
            }
            for k, v in found.arrays().items()
        },
    }
    return Export(tensors, header)


def _os_message(err: OSError) -> str:
    where = f" {err.filename}" if err.filename else ""
    return f"cannot write{where}: {err.strerror or err}"


def fail(message: str) -> int:
    """One line on stderr (a library's message may span several), exit code 2."""
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse printed the usage and its error (or --help)
        return stop.code if isinstance(stop.code, int) else 2
    runtime.configure()  # XLA's CPU flags, before JAX starts
    from interp_app.core import api

    out = Path(args.out)
    try:
        check_out(out, args.force)
        run = api.open_run(args.root, args.run)
        options = {k: getattr(args, k) for k in EXPORT_OPTIONS}
        export = run.export(args.step, args.prompt, **options)
        if args.circuits:
            export = with_circuits(run, export, args)
        write_atomic(out, encode(export.tensors, export.header), args.force)
    except ValueError as err:  # CheckpointError included
        return fail(str(err))
    except OSError as err:
        return fail(_os_message(err))
    h = export.header
    print(
        f"{PROG}: wrote {out} ({len(export.tensors)} tensors): run {h['run']!r} step "
        f"{h['step']}, {len(h['tokens'])} tokens, P({h['target']!r} at position {h['pos']}) "
        f"= {h['target_prob']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
