"""What one all-checkpoint timeline is of: a run, a prompt and a query. The analyzer keeps
its steps in memory under :meth:`Query.memory_key`; background jobs key the shared result
cache by it (``core.jobs``)."""

from __future__ import annotations

from dataclasses import dataclass

from interp_app.core.prompt import Prompt


@dataclass(frozen=True)
class Query:
    """Every step of ``run`` for this prompt and query (and ablation)."""

    run: str
    prompt: Prompt
    pos: int
    target: int
    src: int = 0
    ablate: tuple[str, ...] = ()
    mode: str = "zero"

    def memory_key(self, generation: tuple) -> tuple:
        """The key :meth:`Analyzer.timeline_of` keeps this query's steps under."""
        return (
            generation,
            self.prompt.padded,
            self.pos,
            self.target,
            self.src,
            self.ablate,
            self.mode,
        )
