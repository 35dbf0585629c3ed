"""A prompt and its corrupted twin, checked once for every API that takes a pair
(:meth:`Run.patch <interp_app.core.api.Run.patch>` and :meth:`Run.circuits
<interp_app.core.api.Run.circuits>`): the same number of tokens, the predicting position, the
target (defaulting to a step's most likely word) and an answer other than the target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from interp_app.core.prompt import Prompt

if TYPE_CHECKING:
    from interp_app.core.checks import CheckedRun


@dataclass(frozen=True)
class PromptPair:
    clean: Prompt
    corrupt: Prompt
    pos: int
    target: str
    target_id: int
    answer_id: int | None  # None: the caller picks the answer


def check_pair(
    run: CheckedRun,
    step: int,
    clean: str | Prompt,
    corrupt: str | Prompt,
    *,
    target: str | None,
    answer: str | None,
    pos: int | None,
    needs: str,
) -> PromptPair:
    """The pair checked, or a ValueError of one line (``needs``: who needs the same length,
    "patching needs" or "circuits need"). ``target`` defaults to ``step``'s most likely
    word at ``pos``."""
    c, k = run.encode(clean), run.encode(corrupt, "corrupted prompt")
    if c.length != k.length:
        raise ValueError(
            f"the corrupted prompt has {k.length} tokens and the prompt {c.length}: "
            f"{needs} the same number of tokens"
        )
    pos = run.check_pos(c, pos)
    target = run.default_target(step, c, pos) if target is None else target
    t = run.check_target(target)
    a = None if answer is None else run.check_target(answer, "answer")
    if a == t:
        raise ValueError("the answer must be another word than the target")
    return PromptPair(c, k, pos, target, t, a)
