"""Write the golden Hugging Face folders that tests/test_hf_reference.py checks the importer on.

Run (torch and transformers live only in the ``hf-ref`` dependency group, never in the
app's environment; the tests read the files this writes, so CI needs neither)::

    UV_PROJECT_ENVIRONMENT=.venv-hf .tools/bin/uv run --group hf-ref python scripts/hf_goldens.py

Each folder under ``tests/golden/hf/`` is a tiny random model built from a transformers
config class (nothing is downloaded) and written with ``save_pretrained``, plus an offline
``tokenizer.json`` and ``expected.npz`` holding transformers' own outputs for one text:
``text``, ``ids``, ``tokens``, ``offsets`` (from ``tokenizers``), ``logits`` [T, V],
``hidden_states`` [L+1, T, D] (entries 0..L-1 are the residual stream before each block;
entry L is after the final LayerNorm) and ``attentions`` [L, H, T, T]. Torch is seeded, the
npz is written with fixed zip timestamps, and each folder is rewritten from scratch, so
running it twice gives byte-identical files.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    PreTrainedModel,
)
from transformers.utils import logging as hf_logging

OUT = Path(__file__).resolve().parent.parent / "tests" / "golden" / "hf"
#: The text every golden runs: multi-byte characters (split across byte-level tokens) included.
TEXT = "the cat sat on the mat; héllo wörld 🙂!"
CORPUS = ["the cat sat on the mat", "the dog ate the cat food", "héllo wörld 🙂"]
TOKENIZER_VOCAB = 280  # the trainer's target: 256 bytes, some merges, one special token
#: Larger than the tokenizer, as Pythia's 50304 is: some ids have no token.
VOCAB = 288
SIZE = {"hidden": 16, "heads": 2, "layers": 2, "mlp": 32, "context": 32}
#: Weights drawn wider than transformers' 0.02 so the attention patterns are far from uniform.
INIT_STD = 0.3


def train_tokenizer() -> Tokenizer:
    """A byte-level BPE tokenizer trained offline (Pythia and GPT-2 ship the same kind)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    return tok


def gpt2(tied: bool = True) -> PreTrainedModel:
    """GPT-2: learned positions, gelu_new, qkv biases, tied (or untied) unembedding."""
    s = SIZE
    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_positions=s["context"],
        n_embd=s["hidden"],
        n_layer=s["layers"],
        n_head=s["heads"],
        n_inner=s["mlp"],
        initializer_range=INIT_STD,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=tied,
    )
    return GPT2LMHeadModel(cfg)


def neox(**overrides: Any) -> PreTrainedModel:
    """GPT-NeoX (Pythia's architecture): rotary, untied unembedding, exact gelu."""
    s = SIZE
    kwargs: dict[str, Any] = dict(
        vocab_size=VOCAB,
        max_position_embeddings=s["context"],
        hidden_size=s["hidden"],
        num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"],
        intermediate_size=s["mlp"],
        initializer_range=INIT_STD,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPTNeoXForCausalLM(GPTNeoXConfig(**{**kwargs, **overrides}))


def legacy_rotary_keys(folder: Path) -> None:
    """Rewrite config.json's ``rope_parameters`` as the ``rotary_pct``/``rotary_emb_base``
    keys real Pythia configs carry (transformers 5 saves only the new form)."""
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    rope = cfg.pop("rope_parameters")
    cfg.pop("rope_theta", None)
    cfg.pop("partial_rotary_factor", None)
    cfg["rotary_pct"] = rope["partial_rotary_factor"]
    cfg["rotary_emb_base"] = rope["rope_theta"]
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


#: name -> (what it exercises, the model, save_pretrained's keywords, a rewrite of the folder)
Golden = tuple[str, Callable[[], PreTrainedModel], dict[str, Any], Callable[[Path], None] | None]
GOLDENS: dict[str, Golden] = {
    "gpt2": ("tied, learned positions, gelu_new", gpt2, {}, None),
    "neox_par": (
        "parallel residual, rotary 25%",
        lambda: neox(rotary_pct=0.25, use_parallel_residual=True),
        {},
        None,
    ),
    "neox_seq_r50": (
        "sequential residual, rotary 50% base 500, eps 1e-3, legacy rotary keys",
        lambda: neox(
            rotary_pct=0.5, rotary_emb_base=500, use_parallel_residual=False, layer_norm_eps=1e-3
        ),
        {},
        legacy_rotary_keys,
    ),
    "neox_nobias": (
        "attention_bias false (no qkv or dense bias), rotary 100%",
        lambda: neox(rotary_pct=1.0, use_parallel_residual=True, attention_bias=False),
        {},
        None,
    ),
    "gpt2_sharded": (
        "untied lm_head, saved in shards (model.safetensors.index.json)",
        lambda: gpt2(tied=False),
        {"max_shard_size": "20KB"},
        None,
    ),
}


def perturb(model: PreTrainedModel) -> None:
    """Move every LayerNorm weight off 1 and every bias off 0, so the tests exercise them."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") or "ln_" in name or "norm" in name:
                p.add_(0.2 * torch.randn_like(p))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` with fixed zip timestamps, so reruns give identical bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def reference(folder: Path, tok: Tokenizer, text: str = TEXT) -> dict[str, np.ndarray]:
    """transformers' outputs for ``text``, from the folder as saved (so the files, legacy
    keys included, are what produced them); eager attention so the patterns come back."""
    enc = tok.encode(text, add_special_tokens=False)
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(torch.tensor([enc.ids]), output_hidden_states=True, output_attentions=True)
    return {
        "text": np.array(text),
        "ids": np.array(enc.ids, np.int32),
        "tokens": np.array(enc.tokens),
        "offsets": np.array(enc.offsets, np.int32).reshape(-1, 2),
        "logits": out.logits[0].float().numpy(),
        "hidden_states": torch.stack(out.hidden_states)[:, 0].float().numpy(),
        "attentions": torch.stack(out.attentions)[:, 0].float().numpy(),
    }


def build(name: str, tok: Tokenizer, out: Path = OUT) -> Path:
    """Write one golden folder from scratch: model, tokenizer.json, expected.npz."""
    _, make, save_kw, rewrite = GOLDENS[name]
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    torch.manual_seed(sorted(GOLDENS).index(name))
    model = make()
    perturb(model)
    model.save_pretrained(folder, **save_kw)
    if rewrite is not None:
        rewrite(folder)
    tok.save(str(folder / "tokenizer.json"))
    write_npz(folder / "expected.npz", reference(folder, tok))
    return folder


def main() -> None:
    hf_logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    tok = train_tokenizer()
    assert tok.get_vocab_size() <= VOCAB, tok.get_vocab_size()
    for name, (about, *_rest) in GOLDENS.items():
        folder = build(name, tok)
        size = sum(f.stat().st_size for f in folder.iterdir())
        print(f"{name:14s} {size / 1024:6.1f} KiB  {about}", file=sys.stderr)
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"total {total / 1024:.1f} KiB in {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
