"""A step folder's safetensors: which tensors it holds (headers only), checked against the
config, then read as float32.

One ``model.safetensors`` or shards listed by ``model.safetensors.index.json``. Checking
reads headers only, so every step of a series is checked before anything is written.
``pytorch_model.bin`` is a pickle (code, not data): refused, never opened.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy, so safetensors reads BF16)
import numpy as np
from safetensors import safe_open

from training.hf_import import layouts
from training.hf_import.discover import read_json
from training.hf_import.errors import HFImportError
from training.model.config import ModelConfig

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
FLOATS = {"F16", "BF16", "F32", "F64"}
CONVERT = (
    'python -c "from transformers import AutoModelForCausalLM as M; '
    "M.from_pretrained('{d}').save_pretrained('{d}')\""
)


@dataclass(frozen=True)
class Ref:
    """Where one tensor is stored and what its header says."""

    file: Path
    name: str  # as stored
    shape: tuple[int, ...]
    dtype: str


def _files(folder: Path) -> dict[Path, list[str] | None]:
    """Each weight file with the names to read from it (None: all of them)."""
    if (folder / SINGLE).is_file():
        return {folder / SINGLE: None}
    if (folder / INDEX).is_file():
        index = read_json(folder / INDEX)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(
            isinstance(f, str) and f and Path(f).name == f for f in weight_map.values()
        ):
            raise HFImportError(f"{folder / INDEX} has no weight_map of plain file names")
        files: dict[Path, list[str] | None] = {}
        for name, file in weight_map.items():
            files.setdefault(folder / file, []).append(name)  # type: ignore[union-attr]
        return files
    for pickle in PICKLES:
        if (folder / pickle).exists():
            raise HFImportError(
                f"{folder} holds its weights only as {pickle}, a pickle the importer does not "
                f"open; convert it to safetensors first: {CONVERT.format(d=folder)}"
            )
    raise HFImportError(f"no {SINGLE} (or {INDEX}) in {folder}")


def _header(file: Path, names: list[str] | None) -> list[Ref]:
    try:
        with safe_open(str(file), "numpy") as f:
            stored = set(f.keys())
            for name in names or []:
                if name not in stored:
                    raise HFImportError(f"{file} lacks tensor {name} (its index lists it there)")
            out = []
            for name in sorted(stored) if names is None else names:
                sl = f.get_slice(name)
                out.append(Ref(file, name, tuple(sl.get_shape()), sl.get_dtype()))
            return out
    except HFImportError:
        raise
    except OSError as err:
        raise HFImportError(f"cannot read {file}: {err.strerror or err}") from None
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise HFImportError(f"{file} is not a readable safetensors file: {err}") from None


def index_folder(folder: Path, arch: str) -> dict[str, Ref]:
    """The folder's tensors by normalized name (buffers left out); headers only."""
    index: dict[str, Ref] = {}
    for file, names in _files(folder).items():
        for ref in _header(file, names):
            short = layouts.normalize(arch, ref.name)
            if short is None:
                continue
            if short in index:
                raise HFImportError(f"{folder}: {index[short].name} and {ref.name} are one tensor")
            index[short] = ref
    return index


def check(folder: Path, arch: str, mc: ModelConfig, index: dict[str, Ref]) -> None:
    """Every tensor the config asks for, with its shape, and nothing else; headers only."""
    required, optional = layouts.shapes(arch, mc)
    for name, shape in (required | optional).items():
        ref = index.get(name)
        if ref is not None and ref.shape != shape:
            raise HFImportError(
                f"{folder}: tensor {ref.name} has shape {list(ref.shape)} in {ref.file.name} "
                f"but config.json makes it {list(shape)}"
            )
    missing = [name for name in required if name not in index]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise HFImportError(f"{folder}: tensor {missing[0]}{more} missing; config.json needs it")
    extra = sorted(set(index) - set(required) - set(optional))
    if extra:
        ref = index[extra[0]]
        raise HFImportError(
            f"{folder}: tensor {ref.name} {list(ref.shape)} is not part of the model "
            "config.json describes"
        )
    for ref in index.values():
        if ref.dtype not in FLOATS:
            raise HFImportError(f"{folder}: tensor {ref.name} has dtype {ref.dtype}, not a float")


class Reader(contextlib.AbstractContextManager["Reader"]):
    """Reads indexed tensors as float32 (f16/bf16 upcast), each file opened once."""

    def __init__(self, index: dict[str, Ref]):
        self.index = index
        self._stack = contextlib.ExitStack()
        self._open: dict[Path, object] = {}

    def __call__(self, name: str) -> np.ndarray:
        ref = self.index[name]
        try:
            if ref.file not in self._open:
                self._open[ref.file] = self._stack.enter_context(safe_open(str(ref.file), "numpy"))
            arr = self._open[ref.file].get_tensor(ref.name)  # type: ignore[attr-defined]
        except Exception as err:  # safetensors raises its own error types for corrupt files
            raise HFImportError(f"{ref.file}: tensor {ref.name} cannot be read: {err}") from None
        out = np.asarray(arr).astype(np.float32)
        if not np.isfinite(out).all():  # also a float64 past float32's range
            bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
            raise HFImportError(
                f"{ref.file}: tensor {ref.name} holds {bad} NaN or infinite values "
                "(as float32); a run needs finite weights"
            )
        return out

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()
