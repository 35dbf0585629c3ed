"""The induction lab's pieces on hand-made arrays: the data's layout, each attention score
on patterns built to score 1 or 0, losses by position, crossings, and composition scores on
weights built to compose (or not). All numpy; nothing trains, nothing compiles but the
sampler."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from interp_app.core import induction as m
from training.induction.cli import induction_config, parse_seeds
from training.induction.config import InductionConfig
from training.induction.data import repeated_mask, sample


def _one_hot_pattern(targets: np.ndarray, heads: int = 1) -> np.ndarray:
    """[B, H, T, T]: each counted query attends only to its target, others to key 0."""
    b, t = targets.shape
    pattern = np.zeros((b, heads, t, t))
    for i in range(b):
        for q in range(t):
            pattern[i, :, q, max(targets[i, q], 0)] = 1.0
    return pattern


def test_sequences_repeat_their_segment_at_a_varying_offset():
    cfg = InductionConfig(vocab=5, context=12, min_segment=2, max_segment=6)
    draw = jax.jit(sample, static_argnums=(1, 2))  # one small compilation, not op by op
    tokens, lengths, offsets = (np.asarray(a) for a in draw(jax.random.key(0), cfg, 200))
    n = cfg.context + 1
    assert tokens.shape == (200, n) and tokens.min() >= 0 and tokens.max() < cfg.vocab
    assert set(lengths.tolist()) == set(range(2, 7))  # every length occurs
    assert np.all(offsets >= lengths) and np.all(offsets <= n - lengths)
    assert len(set(offsets[lengths == 3].tolist())) > 3  # the offset is not fixed by L
    for row, length, d in zip(tokens, lengths, offsets, strict=True):
        np.testing.assert_array_equal(row[n - length :], row[n - length - d : n - d])
    mask = repeated_mask(lengths, cfg.context)
    np.testing.assert_array_equal(mask.sum(1), lengths - 1)
    for row, d, rep in zip(tokens, offsets, mask, strict=True):
        q = np.flatnonzero(rep)
        np.testing.assert_array_equal(row[q + 1], row[q - d + 1])  # next = after previous


def test_the_schedule_is_dense_through_the_transition():
    cfg = InductionConfig()
    steps = cfg.schedule()
    assert steps[:5] == [0, 1, 2, 5, 10] and steps[-1] == cfg.steps == 800
    assert set(range(10, 601, 10)) <= set(steps) and 650 in steps and 640 not in steps


def test_configs_refuse_what_cannot_form_an_induction_head():
    with pytest.raises(ValueError, match="must fit"):
        InductionConfig(context=16, max_segment=9)
    with pytest.raises(ValueError, match="min_segment"):
        InductionConfig(min_segment=1)
    assert InductionConfig().model().mlp is False and InductionConfig().model().vocab_size == 66
    with pytest.raises(ValueError, match="--corpus does not apply"):
        induction_config({"corpus": "x.txt"})
    assert induction_config({"steps": 20, "heads": 4}) == InductionConfig(steps=20, n_heads=4)
    assert parse_seeds({"seeds": "0,1,2"}) == [0, 1, 2] and parse_seeds({}) == [0]
    with pytest.raises(ValueError, match="distinct"):
        parse_seeds({"seeds": "1,1"})


def test_scores_are_one_on_their_own_pattern_and_low_on_the_others():
    lengths, offsets = np.array([3, 4]), np.array([5, 4])
    mask = repeated_mask(lengths, 10)
    duplicate, induction = m.repeat_targets(offsets, mask)
    previous = m.previous_targets(*mask.shape)
    for targets in (duplicate, induction, previous):
        pattern = _one_hot_pattern(targets, heads=2)
        assert m.attention_score(pattern, targets) == pytest.approx([1.0, 1.0])
    ind_pattern = _one_hot_pattern(induction)
    assert m.attention_score(ind_pattern, duplicate) == pytest.approx([0.0])
    assert m.attention_score(ind_pattern, previous) < 0.5


def test_a_uniform_pattern_scores_the_mean_of_one_over_the_keys_seen():
    lengths, context = np.array([2]), 6
    mask = repeated_mask(lengths, context)  # one repeated query: position 5
    t = np.arange(context)
    pattern = np.tril(np.ones((context, context))) / (t + 1)[:, None]
    _, induction = m.repeat_targets(lengths, mask)  # offset d = L = 2
    assert m.attention_score(pattern[None, None], induction) == pytest.approx([1 / 6])
    # leading axes (layers, steps) pass through
    stacked = np.stack([pattern[None, None]] * 3)
    assert m.attention_score(stacked, induction).shape == (3, 1)
    none = np.full_like(induction, -1)
    assert np.isnan(m.attention_score(pattern[None, None], none)).all()


def test_occurrence_targets_take_the_most_recent_earlier_token():
    tokens = np.array([[7, 1, 7, 2, 7, 1]])
    duplicate, induction = m.occurrence_targets(tokens)
    np.testing.assert_array_equal(duplicate, [[-1, -1, 0, -1, 2, 1]])
    np.testing.assert_array_equal(induction, [[-1, -1, 1, -1, 3, 2]])


def test_losses_by_position_and_the_icl_score():
    logits = np.log(np.array([[[0.5, 0.5], [0.9, 0.1], [0.1, 0.9]]]))  # [B=1, T=3, V=2]
    losses = m.token_losses(logits, np.array([[0, 0, 1]]))
    np.testing.assert_allclose(losses, -np.log([[0.5, 0.9, 0.9]]))
    stacked = np.concatenate([losses, 2 * losses])  # [B=2, T]
    np.testing.assert_allclose(m.loss_by_position(stacked), 1.5 * losses[0])
    masked = m.loss_by_position(stacked, np.array([[1, 0, 1], [0, 0, 1]]))
    assert masked[0] == pytest.approx(losses[0, 0]) and np.isnan(masked[1])
    assert m.icl_score(losses[0], early=0) == pytest.approx(np.log(0.5) - np.log(0.9))


def test_crossing_steps_of_a_fall_and_a_rise():
    steps = np.array([0, 10, 20, 30, 40])
    loss = np.array([4.0, 3.9, 2.0, 0.2, 0.0])
    assert m.crossing_step(steps, loss, 0.1) == 20 and m.crossing_step(steps, loss, 0.9) == 30
    assert m.crossing_step(steps, 1 - loss, 0.5) == 20  # a rise alike
    assert m.crossing_step(steps, np.ones(5), 0.5) is None


#: Orthonormal directions of a 4-wide residual, each orthogonal to (1, 1, 1, 1): the
#: LayerNorm's centering leaves them as they are.
U1 = np.array([1.0, -1.0, 0.0, 0.0]) / np.sqrt(2)
U2 = np.array([0.0, 0.0, 1.0, -1.0]) / np.sqrt(2)
U3 = np.array([1.0, 1.0, -1.0, -1.0]) / 2


def _head(reads_q, reads_k, reads_v, writes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One layer of one head of size 1: (w_qkv [4, 3, 1, 1], w_o [1, 1, 4], LN scale)."""
    w_qkv = np.stack([reads_q, reads_k, reads_v], 1)[:, :, None, None]
    return w_qkv, writes[None, None, :], np.ones(4)


def test_composition_scores_on_weights_built_to_compose():
    first = _head(U3, U3, U1, U2)  # reads U1, writes U2
    keys = _head(U3, U2, U3, U1)  # its keys read U2: K-composition only
    np.testing.assert_allclose(m.composition_scores(first, keys)[:, 0, 0], [0, 1, 0], atol=1e-12)
    queries = _head(U2, U3, U3, U1)
    np.testing.assert_allclose(m.composition_scores(first, queries)[:, 0, 0], [1, 0, 0], atol=1e-12)
    values = _head(U3, U3, U2, U1)
    np.testing.assert_allclose(m.composition_scores(first, values)[:, 0, 0], [0, 0, 1], atol=1e-12)
    # two heads each side: [3, H0, H1], each pair scored on its own
    w_qkv = np.concatenate([first[0], _head(U3, U3, U1, U3)[0]], axis=2)
    w_o = np.concatenate([first[1], _head(U3, U3, U1, U3)[1]], axis=0)
    scores = m.composition_scores((w_qkv, w_o, np.ones(4)), keys)
    assert scores.shape == (3, 2, 1)
    np.testing.assert_allclose(scores[1, :, 0], [1, 0], atol=1e-12)  # only head 0 writes U2


def test_head_circuits_fold_the_layer_norm_scale():
    rng = np.random.default_rng(0)
    w_qkv, w_o = rng.normal(size=(6, 3, 2, 3)), rng.normal(size=(2, 3, 6))
    scale = rng.normal(size=6)
    qk, ov = m.head_circuits(w_qkv, w_o, scale)
    x = rng.normal(size=6)
    ln_x = (x - x.mean()) * scale  # LayerNorm without 1/sigma and bias
    np.testing.assert_allclose(x @ ov[1], ln_x @ w_qkv[:, 2, 1] @ w_o[1])
    np.testing.assert_allclose(x @ qk[0] @ x, (ln_x @ w_qkv[:, 0, 0]) @ (ln_x @ w_qkv[:, 1, 0]))
