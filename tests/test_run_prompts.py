"""Which prompt a run opens on: its own when run.json names one (the induction lab's
held-out sequence with a repeat), else the article's for word runs, else a generic pair."""

from __future__ import annotations

from interp_app.core.selection import (
    DEFAULT_CORRUPT,
    DEFAULT_PROMPT,
    GENERIC_CORRUPT,
    GENERIC_PROMPT,
    run_prompts,
)


def test_a_word_run_without_a_prompt_opens_on_the_articles():
    assert run_prompts({"train": {"steps": 10}, "vocab": ["a"]}) == (
        DEFAULT_PROMPT,
        DEFAULT_CORRUPT,
    )


def test_a_runs_own_prompt_wins_even_with_a_word_vocabulary():
    meta = {"train": None, "vocab": ["t0", "t1"], "prompt": "t1 t0 t1", "corrupt": "t0 t0 t1"}
    assert run_prompts(meta) == ("t1 t0 t1", "t0 t0 t1")


def test_a_prompt_without_its_corrupt_twin_keeps_the_default_twin():
    assert run_prompts({"vocab": ["t0"], "prompt": "t0 t0"}) == ("t0 t0", DEFAULT_CORRUPT)
    assert run_prompts({"train": None, "prompt": "hello"}) == ("hello", GENERIC_CORRUPT)


def test_a_corrupt_twin_alone_is_used_by_a_run_without_words():
    assert run_prompts({"train": None, "corrupt": "the dog"}) == (GENERIC_PROMPT, "the dog")


def test_blank_or_oversized_prompts_are_ignored():
    assert run_prompts({"train": None, "prompt": "  "}) == (GENERIC_PROMPT, GENERIC_CORRUPT)
    assert run_prompts({"train": None, "prompt": "x" * 100_000})[0] == GENERIC_PROMPT
    assert run_prompts({"train": None, "prompt": 5})[0] == GENERIC_PROMPT
