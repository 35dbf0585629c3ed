"""The public Python API: a run's internals and every metric the panels show, as numpy arrays.

For notebooks and scripts; the same numbers as the app, because the app computes through it
(``view`` builds every panel's numbers from :meth:`Run.metrics`, :meth:`Run.patch` and the
analyzer's timeline; ``analyzer`` runs the cached forward passes, ``metrics`` the exact
splits, ``causal`` ablation and patching)::

    from interp_app.core import api

    run = api.open_run("checkpoints", "fruits")        # .name .steps .config .vocab
    cap = run.capture(10_000, "i like spicy so i like")  # .tokens .words .logits .resid ...
    cap.resid.shape                                      # (L+1, T, D)
    m = run.metrics(10_000, "i like spicy so i like", target="chili", head="L1H0")
    dict(zip(m.components, m.dla))                       # direct logit attribution [C]
    m.dla.sum(), m.logit                                 # the split is exact
    m.token_attr                                         # [T] through head L1H0
    m.heads["entropy"]                                   # [L, H], every head metric by name
    m.lens_top, m.lens_prob                              # logit lens [L+1, T]
    run.ablate(10_000, "i like spicy so i like", ["L1H0"], target="chili").target_prob
    run.patch(10_000, "i like spicy so i like", "i like sweet so i like", target="chili").heads
    run.timeline("i like spicy so i like", target="chili").heads["dla"]  # [S, L, H] over steps
    c = run.circuits("i like spicy so i like", "i like sweet so i like", target="chili")
    c.edges, c.exact, c.eap_ig                  # edge names [E]; scores [S, E] over steps
    c.spearman("eap_ig"), c.recovered("exact")  # [S]; [S, E+1] faithfulness

Conventions: ``T`` is the prompt's real tokens (padding is never shown: attention is causal,
so no real position sees it), ``pos`` the predicting position (default: the last), ``L``
layers, ``H`` heads, ``D`` the width, ``K`` a head's width, ``V`` the vocabulary, ``C`` the
components of the residual stream at ``pos`` (names in ``Metrics.components``). A prompt
longer than the window (the context, at most ``prompt.MAX_PROMPT_TOKENS``) keeps its last
tokens, and a word outside a word vocabulary reads as ``UNKNOWN``, as in the app
(``Prompt.dropped``, ``Prompt.unknown``). ``run.vocab`` is one label per id, whatever the
run's tokenizer (``run.tokenizer``: words, a Hugging Face file or bytes); a target is a
label (`` cat`` with its space, for a byte-level BPE token).

Bad input raises one plain line: :class:`~training.checkpoint.CheckpointError` (a
``ValueError``) for an unknown or unreadable run or step, ``ValueError`` for anything else
(an empty prompt, a target outside the vocabulary, a head or position that does not exist).
Every array returned is the caller's own copy. ``interp-capture`` (``capture_cli``) writes
:meth:`Run.export` to one safetensors file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from interp_app.core import causal
from interp_app.core.analyzer import Analyzer
from interp_app.core.checks import CheckedRun
from interp_app.core.circuits import IG_STEPS
from interp_app.core.circuits_record import Circuits
from interp_app.core.export import FORMAT, TENSORS, Export, export, export_header, tensor_table
from interp_app.core.heads import METRICS, head_name, model_components
from interp_app.core.prompt import Prompt, display_words
from interp_app.core.prompt_pair import check_pair
from interp_app.core.records import Ablation, Metrics, Patching, Query, StepCapture, Timeline
from interp_app.core.store import RunStore
from training import checkpoint as ckpt
from training import runtime
from training.checkpoint import CheckpointError

__all__ = [
    "FORMAT",
    "METRICS",
    "TENSORS",
    "Ablation",
    "CheckpointError",
    "Circuits",
    "Export",
    "Metrics",
    "Patching",
    "Prompt",
    "Run",
    "StepCapture",
    "Timeline",
    "export_header",
    "list_runs",
    "open_run",
    "tensor_table",
]

Heads = Iterable[str | tuple[int, int]]


def _copy(value: Any) -> np.ndarray:
    return np.array(value, copy=True)


def list_runs(root: str | Path) -> list[str]:
    """The runs under ``root`` (none if it does not exist)."""
    return ckpt.list_runs(root)


def open_run(root: str | Path, name: str) -> Run:
    """Open run ``name`` under the checkpoint root ``root``.

    Sets XLA's CPU flags for this process first (``training.runtime.configure``: a no-op
    once JAX computes, and flags already in ``XLA_FLAGS`` win), as every entry point does.
    """
    runtime.configure()
    return Run(Analyzer(RunStore(root)), name)


class Run(CheckedRun):
    """One run: its steps, and every number the panels show, as numpy arrays (the caller's
    own copies). ``Run(analyzer, name)`` shares an app's caches; :func:`open_run` makes its
    own."""

    def capture(
        self, step: int | None, prompt: str | Prompt, *, ablate: Heads = (), mode: str = "zero"
    ) -> StepCapture:
        """One forward pass (``ablate``: heads replaced as in ``causal.ablation``)."""
        step = self.check_step(step)
        p = self.encode(prompt)
        heads, mode = self.check_ablation(ablate, mode)
        cap = self.analyzer.capture(self.name, step, p, heads, mode)
        n = p.length
        return StepCapture(
            run=self.name,
            step=step,
            prompt=p,
            words=tuple(display_words(p, self.vocab)),
            ablate=heads,
            mode=mode,
            tokens=np.asarray(p.ids, np.int32),
            logits=_copy(cap.logits[0, :n]),
            tok_emb=_copy(cap.tok_emb[0, :n]),
            pos_emb=_copy(cap.pos_emb[:n]),
            resid=_copy(cap.resid[0, :, :n]),
            resid_mid=_copy(cap.resid_mid[0, :, :n]),
            patterns=_copy(cap.patterns[0, :, :, :n, :n]),
            values=_copy(cap.values[0, :, :, :n]),
            head_out=_copy(cap.head_out[0, :, :, :n]),
            attn_bias=_copy(cap.attn_bias),
            attn_out=_copy(cap.attn_out[0, :, :n]),
            mlp_out=_copy(cap.mlp_out[0, :, :n]),
            final=_copy(cap.final[0, :n]),
            final_inv_std=_copy(cap.final_inv_std[0, :n]),
        )

    def metrics(
        self,
        step: int | None,
        prompt: str | Prompt,
        *,
        target: str | None = None,
        pos: int | None = None,
        head: str | tuple[int, int] | None = None,
        src: int = 0,
        ablate: Heads = (),
        mode: str = "zero",
    ) -> Metrics:
        """Every number the panels show for this selection: DLA per component, ``head``'s
        per-token attribution, every head metric, the logit lens, the prediction. Defaults
        are the app's: the last position, the clean model's most likely word, head L1H0."""
        step = self.check_step(step)
        p = self.encode(prompt)
        pos = self.check_pos(p, pos)
        layer, h = self.check_head(head)
        src = self.check_src(src, pos)
        heads, mode = self.check_ablation(ablate, mode)
        target = self.default_target(step, p, pos) if target is None else target
        t = self.check_target(target)
        out = self.analyzer.step_metrics(
            self.name, step, p, pos=pos, target=t, head=(layer, h), src=src, ablate=heads, mode=mode
        )
        n, name = p.length, head_name(layer, h)
        names, kinds = model_components(self.config)
        return Metrics(
            **Query(self.name, step, target, t, pos).query(),
            words=tuple(display_words(p, self.vocab)),
            head=name,
            src=src,
            ablate=heads,
            mode=mode,
            logit=out["logit"],
            target_prob=float(out["probs"][t]),
            probs=out["probs"],
            clean_probs=out["clean_probs"],
            components=(
                *names,
                "final LN bias" + (" + unembed bias" if self.config.unembed_bias else ""),
            ),
            component_kinds=(*kinds, "ln"),
            dla=np.append(out["attr"], out["ln_bias"]),
            # an ablated head's output is a constant, not a mix of sources: nothing to split
            token_attr=np.zeros(n) if name in heads else out["token_attr"][:n],
            heads=out["heads"],
            lens_top=out["lens_top"][:, :n],
            lens_prob=out["lens_prob"][:, :n],
        )

    def ablate(
        self,
        step: int | None,
        prompt: str | Prompt,
        heads: Heads,
        *,
        mode: str = "zero",
        target: str | None = None,
        pos: int | None = None,
    ) -> Ablation:
        """Ablate ``heads`` (``zero``, ``mean`` over this prompt or ``valid-mean`` over the
        run's validation lines): the prediction before and after, and each head's further
        effect on log P(target)."""
        p = self.encode(prompt)
        names, mode = self.check_ablation(heads, mode)
        m = self.metrics(step, p, target=target, pos=pos, ablate=names, mode=mode)
        cap = self.analyzer.capture(self.name, m.step, p, names, mode)
        return Ablation(
            **m.query(),
            heads=names,
            mode=mode,
            logits=_copy(cap.logits[0, : p.length]),
            probs=m.probs,
            clean_probs=m.probs if m.clean_probs is None else m.clean_probs,
            effects=m.heads["ablation"],
        )

    def patch(
        self,
        step: int | None,
        clean: str | Prompt,
        corrupt: str | Prompt,
        *,
        target: str | None = None,
        answer: str | None = None,
        pos: int | None = None,
    ) -> Patching:
        """Patch the clean prompt's activations into the corrupted one, one head output or
        residual vector at a time. ``answer`` defaults to the app's: the corrupted prompt's
        most likely word other than the target. A ValueError when the prompts differ in
        length, or when their logit differences are too close to normalise by."""
        step = self.check_step(step)
        pair = check_pair(
            self,
            step,
            clean,
            corrupt,
            target=target,
            answer=answer,
            pos=pos,
            needs="patching needs",
        )
        c, k, pos, target = pair.clean, pair.corrupt, pair.pos, pair.target
        result = self.analyzer.patching(self.name, step, c, k, pos, pair.target_id, pair.answer_id)
        m_clean, m_corrupt = float(result["clean"]), float(result["corrupt"])
        if not bool(result["normalised"]):
            raise ValueError(
                f"the prompts give almost the same logit difference {target!r} - "
                f"{self.vocab[result['answer']]!r} ({m_clean:+.4f} and {m_corrupt:+.4f}), too "
                f"close to normalise (at most {causal.PATCH_MIN_GAP:.1%} of the logit scale "
                "apart)"
            )
        return Patching(
            run=self.name,
            step=step,
            clean=tuple(display_words(c, self.vocab)),
            corrupt=tuple(display_words(k, self.vocab)),
            target=target,
            answer=self.vocab[result["answer"]],
            pos=pos,
            heads=result["heads"],
            resid=result["resid"],
            clean_diff=m_clean,
            corrupt_diff=m_corrupt,
        )

    def timeline(
        self,
        prompt: str | Prompt,
        *,
        target: str | None = None,
        pos: int | None = None,
        src: int = 0,
        ablate: Heads = (),
        mode: str = "zero",
    ) -> Timeline:
        """Every head metric and the prediction at every step, in the timeline panels' one
        vectorised pass (float32: equal to :meth:`metrics` at each step up to rounding).
        ``target`` defaults to the latest step's most likely word."""
        latest = self.check_step(None)
        p = self.encode(prompt)
        pos = self.check_pos(p, pos)
        src = self.check_src(src, pos)
        heads, mode = self.check_ablation(ablate, mode)
        target = self.default_target(latest, p, pos) if target is None else target
        t = self.check_target(target)
        steps, values, bad = self.analyzer.timeline(self.name, p, pos, t, src, heads, mode)
        if not steps:
            raise CheckpointError(f"no step of run {self.name!r} can be read")
        return Timeline(
            run=self.name,
            steps=list(steps),
            unreadable=list(bad),
            target=target,
            target_id=t,
            heads={k: _copy(values[k]) for k in METRICS},
            probs=_copy(values["probs"]),
            pos=pos,
            src=src,
            ablate=heads,
            mode=mode,
        )

    def circuits(
        self,
        prompt: str | Prompt | None = None,
        corrupt: str | Prompt | None = None,
        *,
        target: str | None = None,
        answer: str | None = None,
        pos: int | None = None,
        metric: str | None = None,
        sequences: int = 32,
        ig_steps: int = IG_STEPS,
    ) -> Circuits:
        """Edge scores of the circuit graph at every step (``circuits_graph``: embeddings,
        heads with q/k/v inputs apart, MLPs, logits): exact path patching, EAP and EAP-IG
        (``ig_steps`` points), and the faithfulness curves, in one vectorised pass.

        ``metric`` ``logit_diff`` (the default; prompts default to the run's, as the
        patching panel's pair; ``target``/``answer`` as :meth:`patch`, but both fixed at
        the latest step) or ``repeat_loss`` (the default for an induction run: the loss on
        the repeated part of its first ``sequences`` held-out sequences)."""
        from interp_app.core import circuits_run
        from interp_app.core.selection import run_prompts

        induction = isinstance(self.info.meta.get("induction"), dict)
        metric = metric or ("repeat_loss" if induction and prompt is None else "logit_diff")
        if metric == "repeat_loss":
            return circuits_run.induction_circuits(self, sequences, ig_steps)
        if metric != "logit_diff":
            raise ValueError(f"metric {metric!r} is not 'logit_diff' or 'repeat_loss'")
        default, default_corrupt = run_prompts(self.info.meta)
        return circuits_run.logit_diff_circuits(
            self,
            default if prompt is None else prompt,
            default_corrupt if corrupt is None else corrupt,
            target=target,
            answer=answer,
            pos=pos,
            ig_steps=ig_steps,
        )

    def export(
        self, step: int | None, prompt: str | Prompt, *, corrupt: str | None = None, **options: Any
    ) -> Export:
        """The capture, its metrics and (with ``corrupt``, a corrupted prompt) patching, as
        the tensors of :data:`TENSORS` and a header (``interp-capture``'s file); ``options``
        are :meth:`metrics`' keywords (target, pos, head, src, ablate, mode)."""
        return export(self, prompt, self.metrics(step, prompt, **options), corrupt)
