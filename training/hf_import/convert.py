"""One step folder: checked from its headers, then read and converted to our parameters."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.hf_import import layouts
from training.hf_import.config_map import Spec, read_spec
from training.hf_import.errors import HFImportError
from training.hf_import.weights import Reader, Ref, check, index_folder
from training.model.config import ModelConfig
from training.run_meta import TOKENIZER_FILE


@dataclass(frozen=True)
class HFCheckpoint:
    """A Hugging Face model folder as our model: config, float32 params, its tokenizer."""

    config: ModelConfig
    params: dict[str, np.ndarray]
    tokenizer_file: Path | None
    arch: str  # "gpt2" or "neox"


@dataclass(frozen=True)
class CheckedStep:
    """A step whose config and tensor headers passed every check; nothing read yet."""

    step: int
    folder: Path
    spec: Spec
    index: dict[str, Ref]

    @property
    def n_tensors(self) -> int:
        """How many stored tensors converting reads (a progress bar's total)."""
        return len(layouts.shapes(self.spec.arch, self.spec.config)[0])


def check_step(folder: Path, step: int) -> CheckedStep:
    """Config and headers only, so a whole series is checked before anything is written."""
    spec = read_spec(folder)
    index = index_folder(folder, spec.arch)
    check(folder, spec.arch, spec.config, index)
    return CheckedStep(step, folder, spec, index)


def read_step(
    s: CheckedStep,
    tick: Callable[[], object] = lambda: None,
    warn: Callable[[str], object] = lambda _: None,
) -> dict[str, np.ndarray]:
    """The step's parameters in our schema; ``tick`` after each tensor read, ``warn`` when a
    tied model's file holds a head that differs from the embedding (transformers, like us,
    uses the embedding)."""
    arch, mc = s.spec.arch, s.spec.config
    with Reader(s.index) as reader:

        def get(name: str) -> np.ndarray:
            arr = reader(name)
            tick()
            return arr

        params = layouts.to_params(arch, mc, get)
        head = layouts.HEAD[arch]
        if mc.tied and head in s.index and not np.allclose(reader(head), params["wte"]):
            warn(
                f"{s.folder}: {s.index[head].name} differs from {layouts.EMBED[arch]} but "
                "tie_word_embeddings is true; the embedding is used, as transformers does"
            )
    return params


def load_hf_folder(path: str | Path) -> HFCheckpoint:
    """One Hugging Face model folder (config.json and safetensors) as our checkpoint."""
    folder = Path(path)
    if not folder.is_dir():
        raise HFImportError(f"{folder} is not a folder")
    checked = check_step(folder, 0)
    params = read_step(checked, warn=lambda msg: warnings.warn(msg, stacklevel=3))
    tokenizer = folder / TOKENIZER_FILE
    return HFCheckpoint(
        checked.spec.config, params, tokenizer if tokenizer.is_file() else None, checked.spec.arch
    )
