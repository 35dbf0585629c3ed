"""A checkpoint series from your own training loop (JAX, Flax or plain numpy).

Each :meth:`SeriesWriter.save` writes one step in the format ``interp-train`` writes (the
same atomic ``save_step``, the same ``metrics.jsonl``), so ``interp-app`` and
``interp_app.core.api`` browse the run like any other. ``examples/own_loop.py`` is a whole
example. Decisions (a refusal is one :class:`SeriesError`, a ``ValueError``, and writes
nothing):

- ``tokenizer`` is a sequence of words (the built-in word tokenizer: one word per row of
  ``wte``, so exactly ``config.vocab_size`` of them, ``UNKNOWN`` and ``PADDING`` among them;
  they are not added for you, since that would change the vocabulary's size), a
  ``training.tokenizer.Tokenizer``, or the path of a Hugging Face ``tokenizer.json`` (a ``str``
  is always a path), copied into the run folder.
- ``params`` must have exactly the names and shapes of ``training.model.params`` for the
  config; they are stored as float32, as ``interp-train`` stores them.
- Steps must increase: a step at or below the last saved one is refused (the metrics log
  only appends); ``overwrite=True`` starts the run again.
- Reopening a run with the same config and tokenizer resumes it: a save interrupted by a
  kill is tidied, and metrics records after the last saved step are dropped. Another config
  or tokenizer is refused, naming what differs, unless ``overwrite=True``.
- ``metrics`` may hold ``train_loss`` (or ``loss``) and ``valid_loss``, each one number: the
  loss curve shows them at ``step``. Other keys are refused, so a typo is not lost. A NaN
  or infinite loss (a diverged step) is logged as no value, with a warning, as
  ``interp-import`` drops them from a ``trainer_state.json``: the step's weights are still
  saved, and JSON has no NaN.
- Parameters must be real and finite: a complex array, a NaN or an infinity is refused,
  naming the parameter and the step (every view of the step would be NaN).

One writer per run at a time. Parameters are checked with JAX (``training.model``), but
the loop need not use JAX: numpy arrays are parameters too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from training import checkpoint as ckpt
from training.atomic import write_atomic
from training.hf_tokenizer import max_id
from training.model.config import ModelConfig
from training.model.params import abstract_model
from training.run_meta import TOKENIZER_FILE, external_metadata
from training.series_checks import (
    SeriesError,
    check_step,
    checked_params,
    metrics_record,
)
from training.tokenizer import PADDING, UNKNOWN, Tokenizer

__all__ = ["SeriesError", "SeriesWriter"]

HF_TOKENIZER = {"kind": "huggingface", "file": TOKENIZER_FILE}


@dataclasses.dataclass(frozen=True)
class _Tok:
    """A tokenizer as run.json names it, and the Hugging Face file's text if it is one."""

    meta: dict[str, Any]
    text: str | None = None


def _word_tokenizer(words: Sequence[str] | Tokenizer, config: ModelConfig) -> _Tok:
    vocab = words.vocab if isinstance(words, Tokenizer) else tuple(words)
    if not all(isinstance(w, str) for w in vocab):
        raise SeriesError("a vocabulary is a sequence of words (str)")
    missing = [w for w in (UNKNOWN, PADDING) if w not in vocab]
    if missing:
        raise SeriesError(
            f"the vocabulary lacks {missing} (training.tokenizer: unknown words read as UNKNOWN, "
            "prompts are padded with PADDING); add them yourself, each is a row of wte"
        )
    bad = next((i for i, w in enumerate(vocab) if not w or any(c.isspace() for c in w)), None)
    if bad is not None:
        raise SeriesError(
            f"word {bad} of the vocabulary is {vocab[bad]!r}: the word tokenizer splits text "
            "on spaces, so an empty word or one with whitespace could never be typed"
        )
    if len(set(vocab)) != len(vocab):
        raise SeriesError("the vocabulary has duplicate words")
    if len(vocab) != config.vocab_size:
        raise SeriesError(
            f"the vocabulary has {len(vocab)} words but config.vocab_size is "
            f"{config.vocab_size}: one word per row of wte"
        )
    return _Tok({"vocab": list(vocab)})


def _read_text(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


def _hf_tokenizer(path: Path, config: ModelConfig) -> _Tok:
    from tokenizers import Tokenizer as HFTokenizer

    try:
        text = _read_text(path)
        top = max_id(HFTokenizer.from_str(text))
    except OSError as err:
        raise SeriesError(f"cannot read tokenizer {path}: {err.strerror or err}") from None
    except Exception as err:  # tokenizers raises its own exception type
        raise SeriesError(f"{path} is not a Hugging Face tokenizer.json: {err}") from None
    if top >= config.vocab_size:
        raise SeriesError(
            f"tokenizer {path} has token id {top} but config.vocab_size is {config.vocab_size} "
            f"(ids 0..{config.vocab_size - 1})"
        )
    return _Tok({"tokenizer": dict(HF_TOKENIZER)}, text)


def _tokenizer(tokenizer: Any, config: ModelConfig) -> _Tok:
    if isinstance(tokenizer, str | os.PathLike):
        return _hf_tokenizer(Path(tokenizer), config)
    if isinstance(tokenizer, Tokenizer | Sequence):
        return _word_tokenizer(tokenizer, config)
    raise SeriesError(
        "tokenizer is a sequence of words, a training.tokenizer.Tokenizer or the path of a "
        f"Hugging Face tokenizer.json, not {type(tokenizer).__name__}"
    )


def _check_config(config: Any) -> ModelConfig:
    if not isinstance(config, ModelConfig):
        raise SeriesError(f"config must be a ModelConfig, not {type(config).__name__}")
    try:
        abstract_model(config)  # the parameter schema every save is checked against
    except (ValueError, TypeError) as err:
        raise SeriesError(f"config cannot build a model: {err}") from None
    return config


def _kind(meta: Mapping[str, Any]) -> str:
    if "vocab" in meta:
        return f"a vocabulary of {len(meta['vocab'])} words"
    tokenizer = meta.get("tokenizer")
    return f"a {tokenizer.get('kind') if isinstance(tokenizer, dict) else tokenizer} tokenizer"


def _tokenizer_difference(path: Path, stored: Mapping[str, Any], tok: _Tok) -> str | None:
    if "vocab" in tok.meta and isinstance(stored.get("vocab"), list):
        old, new = stored["vocab"], tok.meta["vocab"]
        if old == new:
            return None
        pairs = enumerate(zip(old, new, strict=False))
        at = next((f"; id {i}: {a!r} vs {b!r}" for i, (a, b) in pairs if a != b), "")
        return f"vocabulary (stored {len(old)} words, given {len(new)}{at})"
    if tok.text is not None and stored.get("tokenizer") == HF_TOKENIZER:
        try:
            same = json.loads(_read_text(path / TOKENIZER_FILE)) == json.loads(tok.text)
        except (OSError, ValueError):
            same = False
        return None if same else f"{TOKENIZER_FILE} (the stored file differs from the given one)"
    return f"tokenizer (stored: {_kind(stored)}, given: {_kind(tok.meta)})"


def _differences(path: Path, meta: Mapping[str, Any], config: ModelConfig, tok: _Tok) -> list[str]:
    """What the stored run.json has that the writer was not given, one phrase each."""
    try:
        stored = ModelConfig.from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as err:
        return [f"model config (unreadable: {err})"]
    out = [
        f"{f.name} (stored {getattr(stored, f.name)!r}, given {getattr(config, f.name)!r})"
        for f in dataclasses.fields(config)
        if getattr(stored, f.name) != getattr(config, f.name)
    ]
    return out + [d for d in [_tokenizer_difference(path, meta, tok)] if d]


def _stored_meta(path: Path, name: str) -> dict[str, Any]:
    try:
        meta = json.loads((path / ckpt.RUN_FILE).read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        raise SeriesError(
            f"run {name!r} has an unreadable {ckpt.RUN_FILE} ({err}); pass overwrite=True to "
            "replace the run"
        ) from None
    if meta.get("train") is not None:
        raise SeriesError(f"run {name!r} was made by interp-train: pick another name")
    return meta


def _trim_metrics(path: Path, last: int) -> None:
    """Keep one record per step up to the last saved step, as ``resume.trim_metrics``."""
    read = ckpt.read_metrics_checked(path, upto=last)
    if read.skipped:
        notice = read.notice(str(path / ckpt.METRICS_FILE))
        warnings.warn(f"{notice}; they are dropped", stacklevel=3)
    if read.skipped or (path / ckpt.METRICS_FILE).exists():
        ckpt.rewrite_metrics(path, ckpt.increasing(read.records))


@contextlib.contextmanager
def _writing(name: str, what: str, kept: bool = True) -> Iterator[None]:
    """A failed write (a full disk, a read-only folder) is one line for the user; ``kept``:
    there may be steps saved before, and they are kept."""
    try:
        yield
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        after = "; the steps saved before are kept" if kept else ""
        raise SeriesError(
            f"cannot write {what} of run {name!r}: {err.strerror or err}{where}{after}"
        ) from None


def _create(path: Path, meta: dict[str, Any], tok: _Tok, overwrite: bool) -> None:
    """A new run folder: the tokenizer file first, run.json last (a run is listed once its
    run.json exists)."""
    if overwrite and path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    if tok.text is not None:
        write_atomic(path / TOKENIZER_FILE, [tok.text])
    ckpt.write_json_atomic(path / ckpt.RUN_FILE, meta)


class SeriesWriter:
    """Saves the steps of one run; make it with :meth:`open`."""

    def __init__(self, path: Path, config: ModelConfig, steps: Sequence[int]):
        self.path = path
        self.name = path.name
        self.config = config
        self._steps = list(steps)
        self._closed = False

    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str],
        name: str,
        config: ModelConfig,
        tokenizer: Sequence[str] | Tokenizer | str | os.PathLike[str],
        *,
        source: str = "writer",
        overwrite: bool = False,
    ) -> Self:
        """A new run ``root/name``, or the existing one resumed (same config and tokenizer).

        ``source`` is stored as run.json's ``source.kind`` (what made the weights);
        ``overwrite=True`` replaces an existing run of that name, whatever it holds."""
        try:
            path = ckpt.run_dir(Path(root), name)
        except ckpt.CheckpointError as err:
            raise SeriesError(str(err)) from None
        if path.parent.exists() and not path.parent.is_dir():
            raise SeriesError(f"root {root} is not a folder")
        config = _check_config(config)
        tok = _tokenizer(tokenizer, config)
        if not isinstance(source, str) or not source:
            raise SeriesError(f"source is a short label such as 'writer', not {source!r}")
        exists = (path / ckpt.RUN_FILE).exists()
        if exists and not overwrite:
            return cls._resume(path, config, tok)
        if not exists and not overwrite and path.is_dir() and any(path.iterdir()):
            raise SeriesError(
                f"{path} exists and is not a run (no {ckpt.RUN_FILE}); pick another name, or "
                "pass overwrite=True to replace it"
            )
        meta = external_metadata(config, tok.meta, {"kind": source})
        with _writing(name, ckpt.RUN_FILE, kept=exists):
            _create(path, meta, tok, overwrite)
        return cls(path, config, [])

    @classmethod
    def _resume(cls, path: Path, config: ModelConfig, tok: _Tok) -> Self:
        """The run as its last whole step left it: a kill's leftovers tidied, later metrics
        records dropped."""
        differences = _differences(path, _stored_meta(path, path.name), config, tok)
        if differences:
            raise SeriesError(
                f"run {path.name!r} exists with another {'; '.join(differences)}: open it with "
                "the same config and tokenizer, or pass overwrite=True to replace it"
            )
        with _writing(path.name, "the tidying"):
            ckpt.clean_partial(path)
            steps = ckpt.list_steps(path)
            _trim_metrics(path, steps[-1] if steps else -1)
        return cls(path, config, steps)

    @property
    def steps(self) -> list[int]:
        """The steps saved in the run, oldest first (those of earlier sessions included)."""
        return list(self._steps)

    def save(self, step: int, params: Any, metrics: Mapping[str, float] | None = None) -> None:
        """Write one step atomically (whole or not at all), its metrics record first.

        ``params``: a mapping of checkpoint names to arrays (flat, ``blocks.0.attn.w_qkv``, or
        nested), an ``nnx.State`` or a ``GPT``. Everything is checked before anything is
        written; a failed write keeps the steps saved before and the log consistent."""
        if self._closed:
            raise SeriesError(f"the writer of run {self.name!r} is closed")
        step = check_step(step, self._steps, self.name)
        what = f"step {step} of run {self.name!r}"
        arrays = checked_params(self.config, params, what)
        record = metrics_record(step, metrics)
        sidecar = {"step": step, "valid_loss": record and record["valid_loss"], "time": time.time()}
        with _writing(self.name, f"step {step}"):
            if record is not None:
                ckpt.append_metrics(self.path, record)
            try:
                ckpt.save_step(self.path, step, arrays, sidecar)
            except BaseException:
                if record is not None:
                    with contextlib.suppress(OSError):  # else reopening trims it
                        _trim_metrics(self.path, self._steps[-1] if self._steps else -1)
                raise
        self._steps.append(step)

    def close(self) -> None:
        """Nothing is held open between saves; closing only refuses later saves."""
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
