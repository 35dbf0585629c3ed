"""Circuits over training: the graph, the edge-patched forward, exact path patching, EAP and
EAP-IG, on hand-built and random models (fast tier) and on the default run (slow tier:
issue #17's acceptance figures, measured and printed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp_app.core import api
from interp_app.core.circuits import LogitDiff, RepeatLoss, metric, step_scores
from interp_app.core.circuits_forward import Dials, embed, forward, logits, plain_dials
from interp_app.core.circuits_graph import Graph
from interp_app.core.circuits_record import rank_correlation
from interp_app.core.circuits_run import induction_pair
from interp_app.core.induction import token_losses
from interp_app.server import capture_cli
from training.induction.config import InductionConfig
from training.model.config import ModelConfig
from training.model.gpt import init_params
from training.model.interp import Intervention, capture
from training.model.params import flat_params, unflatten_params

PROMPT, CORRUPT = "i like spicy so i like", "i like sweet so i like"
scores_jit = jax.jit(step_scores, static_argnums=(1, 5))


# -- the graph ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg, edges",
    [
        # L0 heads' q,k,v read embed (6); L0 MLP: embed + L0 heads (3); L1 heads' q,k,v:
        # embed, L0 heads, L0 MLP (6 x 4 = 24); L1 MLP: 6 senders; logits: all 7
        (ModelConfig(), 6 + 3 + 24 + 6 + 7),
        (ModelConfig(parallel=True), 6 + 1 + 24 + 4 + 7),  # an MLP reads what its heads read
        (ModelConfig(mlp=False), 6 + 6 * 3 + 5),  # the induction lab's shape
        (ModelConfig(n_layers=1, n_heads=1, d_model=4, mlp=False), 3 + 2),
    ],
    ids=["sequential", "parallel", "attention-only", "one-head"],
)
def test_the_graph_of_each_architecture(cfg, edges):
    g = Graph.of(cfg)
    assert g.n_edges == len(g.edges) == edges
    assert len(set(g.edges)) == edges
    receiver, sender = g.edge_index
    # every edge runs forward: a sender computed before its receiver reads
    for r, s in zip(receiver, sender, strict=True):
        name = g.receivers[r]
        sender_layer = -1 if s == 0 else (s - 1) // g.per_layer_senders
        layer = cfg.n_layers if name == "logits" else int(name[1])
        own_layer_ok = (
            name.endswith("MLP") and not cfg.parallel and not g.senders[s].endswith("MLP")
        )
        assert sender_layer < layer or (sender_layer == layer and own_layer_ok), g.edges[r]
    assert g.edges[g.edge("embed -> logits")] == "embed -> logits"
    with pytest.raises(ValueError, match="no edge 'L9H9 -> logits'"):
        g.edge("L9H9 -> logits")


def test_default_graph_names():
    g = Graph.of(ModelConfig())
    assert g.senders == ("embed", "L0H0", "L0H1", "L0 MLP", "L1H0", "L1H1", "L1 MLP")
    assert g.receivers[:6] == ("L0H0.q", "L0H1.q", "L0H0.k", "L0H1.k", "L0H0.v", "L0H1.v")
    assert g.receivers[-2:] == ("L1 MLP", "logits")
    assert "L0H1 -> L1H1.v" in g.edges and "L0H1 -> L1H1.k" in g.edges
    assert "L1H0 -> L1H1.v" not in g.edges  # same layer: no edge between heads


# -- the forward with every dial open is the model ---------------------------------------

EXOTIC = ModelConfig(
    vocab_size=11,
    n_layers=2,
    n_heads=2,
    d_model=8,
    d_mlp=12,
    context=6,
    init_std=0.4,
    positions="rotary",
    rotary_dims=4,
    parallel=True,
    activation="gelu",
    qkv_bias=True,
    tied=False,
    unembed_bias=True,
)


def _random(cfg: ModelConfig, seed: int = 0):
    graphdef, state = init_params(cfg, seed)
    flat = flat_params(state)
    rng = np.random.default_rng(seed)
    for name in flat:  # biases and LayerNorm parameters away from their 0/1 initial values
        if name.endswith(("bias", "b_qkv", "b_o", "b_in", "b_out", "b_u", "scale")):
            flat[name] = flat[name] + rng.normal(0, 0.3, flat[name].shape).astype(np.float32)
    return (graphdef, *unflatten_params(cfg, flat)[1:], flat)


def test_the_forward_with_every_edge_kept_is_the_model():
    """Rotary, parallel, GELU, qkv bias, untied unembedding with bias (the attention-only
    shape: ``test_the_repeat_loss_is_the_induction_labs``; the default: the slow tier)."""
    cfg = EXOTIC
    graphdef, state, flat = _random(cfg)
    tokens = jnp.asarray([[3, 1, 4, 1, 5, 9]])
    g = Graph.of(cfg)
    emb = embed(flat, cfg, tokens)
    outs, final = jax.jit(lambda p: forward(p, cfg, g, emb, plain_dials(g, emb.shape)))(flat)
    cap = capture(graphdef, state, tokens)
    np.testing.assert_allclose(logits(flat, cfg, final), cap.logits, rtol=1e-5, atol=1e-5)
    heads = outs[1:].reshape(cfg.n_layers, -1, 1, 6, cfg.d_model)[:, : cfg.n_heads, 0]
    np.testing.assert_allclose(heads, cap.head_out[0], rtol=1e-5, atol=1e-6)


# -- a hand-built model whose scores are known in closed form -----------------------------

# One layer, one head, attention only. q and k weights are zero, so every query attends
# uniformly to its prefix; the LayerNorms have eps 1e6 and scale 1000, so each is centring
# times ~1 (to 5e-7): the model is linear. Clean and corrupted tokens differ at position 0
# only, so the one path carrying signal to the last position is embed -> L0H0.v -> L0H0 ->
# logits: the direct edge embed -> logits carries nothing there, q and k nothing at all.
LINEAR = ModelConfig(vocab_size=4, n_layers=1, n_heads=1, d_model=4, context=3, mlp=False)
LINEAR = ModelConfig(**{**LINEAR.to_dict(), "ln_eps": 1e6})
WTE = np.array([[2, 0, -1, 0], [0, 1, 0, -1], [1, -1, 1, -1], [-1, 2, 0, 1]], np.float32)
CLEAN, CORRUPTED, TARGET, ANSWER = [0, 1, 2], [3, 1, 2], 0, 3


def _linear_params() -> dict[str, np.ndarray]:
    flat = flat_params(init_params(LINEAR, 0)[1])
    flat = {k: np.zeros_like(v) for k, v in flat.items()}
    flat["wte"] = WTE
    flat["blocks.0.ln1.scale"] = flat["ln_f.scale"] = np.full(4, 1000, np.float32)
    w_qkv = np.zeros((4, 3, 1, 4), np.float32)
    w_qkv[:, 2, 0] = np.eye(4)  # v = the normalised input; q = k = 0
    flat["blocks.0.attn.w_qkv"] = w_qkv
    flat["blocks.0.attn.w_o"] = 2 * np.eye(4, dtype=np.float32)[None]
    return flat


def _closed_form(direct: np.ndarray, values: np.ndarray) -> float:
    """M at position 2 when the logits read embeddings ``direct`` and the head's values
    read ``values`` (float64 numpy, the LayerNorms as defined)."""

    def ln(x):
        c = x - x.mean(-1, keepdims=True)
        return 1000 * c / np.sqrt((c * c).mean(-1, keepdims=True) + 1e6)

    head = 2 * ln(values).mean(0)  # uniform attention of position 2 over 0, 1, 2
    return float(ln(direct[2] + head) @ (WTE[TARGET] - WTE[ANSWER]).astype(np.float64))


def test_a_linear_model_scores_as_its_closed_form():
    flat = _linear_params()
    query = LogitDiff(jnp.int32(2), jnp.int32(TARGET), jnp.int32(ANSWER))
    out = jax.device_get(
        scores_jit(flat, LINEAR, jnp.asarray([CLEAN]), jnp.asarray([CORRUPTED]), query, 5)
    )
    x, x_bad = WTE[CLEAN].astype(np.float64), WTE[CORRUPTED].astype(np.float64)
    m_clean, m_bad = _closed_form(x, x), _closed_form(x_bad, x_bad)
    through_head = _closed_form(x, x_bad) - m_clean
    assert abs(m_clean - m_bad) > 1.0  # a real signal
    np.testing.assert_allclose([out["clean"], out["corrupt"]], [m_clean, m_bad], rtol=1e-5)
    g = Graph.of(LINEAR)
    expected = {
        "embed -> L0H0.q": 0.0,
        "embed -> L0H0.k": 0.0,
        "embed -> L0H0.v": through_head,
        "embed -> logits": 0.0,
        "L0H0 -> logits": through_head,
    }
    assert set(g.edges) == set(expected)
    want = np.array([expected[e] for e in g.edges])
    np.testing.assert_allclose(through_head, m_bad - m_clean, rtol=1e-6)  # the one path
    np.testing.assert_allclose(out["exact"], want, rtol=1e-5, atol=1e-5)
    # linear: the first-order estimate is the exact answer, and so is the integral
    np.testing.assert_allclose(out["eap"], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["eap_ig"], want, rtol=1e-4, atol=1e-4)
    # keeping one of the path's two edges restores nothing; both, everything
    np.testing.assert_allclose(out["faith_exact"], [m_bad, m_bad] + [m_clean] * 4, rtol=1e-5)
    np.testing.assert_allclose(out["faith_ig"], [m_bad, m_bad] + [m_clean] * 4, rtol=1e-5)


# -- the repeated-part loss --------------------------------------------------------------


def test_the_repeat_loss_is_the_induction_labs():
    task = InductionConfig(vocab=9, context=12, min_segment=2, max_segment=4, valid_sequences=8)
    clean, corrupt, targets, mask = induction_pair(task.to_dict(), 8)
    n = task.context + 1
    for b in range(8):
        length = int(mask[b].sum()) + 1
        changed = np.flatnonzero(clean[b] != corrupt[b])
        assert 0 < changed.size <= length and changed.max() < n - length  # the first copy
        np.testing.assert_array_equal(clean[b, n - length :], corrupt[b, n - length :])
    np.testing.assert_array_equal(clean[:, 1:], targets[:, :-1])
    cfg = ModelConfig(vocab_size=11, n_heads=2, d_model=8, context=12, init_std=0.4, mlp=False)
    graphdef, state = init_params(cfg, 1)
    flat = flat_params(state)
    g = Graph.of(cfg)

    @jax.jit
    def repeat_loss(flat, tokens, query):
        emb = embed(flat, cfg, tokens)
        _, final = forward(flat, cfg, g, emb, plain_dials(g, emb.shape))
        return metric(flat, cfg, final, query)

    got = repeat_loss(flat, clean, RepeatLoss(jnp.asarray(targets), jnp.asarray(mask)))
    losses = token_losses(np.asarray(capture(graphdef, state, clean).logits), targets)
    np.testing.assert_allclose(got, (losses * mask).sum() / mask.sum(), rtol=1e-5)


def test_rank_correlation_is_spearmans():
    a = np.array([[1.0, 2, 2, 5, 3], [0, 0, 0, 0, 0]])
    b = np.array([[10.0, 20, 30, 50, 40], [1, 2, 3, 4, 5]])
    # ranks of a: 1, 2.5, 2.5, 5, 4; of b: 1..5 -> Pearson of the ranks
    ra, rb = np.array([1, 2.5, 2.5, 5, 4]), np.arange(1, 6) + np.array([0, 0, 0, 1, -1])
    expected = np.corrcoef(ra, rb)[0, 1]
    got = rank_correlation(a, b)
    np.testing.assert_allclose(got[0], expected, rtol=1e-12)
    assert np.isnan(got[1])  # a constant row has no ranking
    np.testing.assert_allclose(rank_correlation(-a[:1], b[:1], absolute=True), got[:1])


# -- bad input ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run(small_root):
    return api.open_run(small_root[0], "small")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"corrupt": "i like sweet"}, "same number of tokens"),
        ({"ig_steps": 0}, "ig_steps must be between 1 and 64"),
        ({"ig_steps": "5"}, "ig_steps must be an integer"),
        ({"metric": "kl"}, "metric 'kl' is not"),
        ({"metric": "repeat_loss"}, "was not trained with --task induction"),
        ({"target": "kiwi"}, "'kiwi' is not in"),
        ({"target": "chili", "answer": "chili"}, "another word"),
        ({"pos": 9}, "position 9 is outside"),
    ],
)
def test_bad_input_is_one_plain_line(small_run, kwargs, words):
    with pytest.raises(ValueError) as caught:
        small_run.circuits(PROMPT, kwargs.pop("corrupt", CORRUPT), **kwargs)
    assert words in str(caught.value) and "\n" not in str(caught.value)


# -- the default run (slow tier): exact against single runs, and issue #17's acceptance ---


@pytest.fixture(scope="module")
def fruits(default_root):
    return api.open_run(default_root[0], "fruits")


@pytest.fixture(scope="module")
def found(fruits):
    return fruits.circuits(PROMPT, CORRUPT, target="chili")


def _pair(fruits):
    clean, corrupt = fruits.encode(PROMPT), fruits.encode(CORRUPT)
    return np.asarray([clean.padded], np.int32), np.asarray([corrupt.padded], np.int32)


@pytest.mark.parametrize("step", [5_000, 10_000])
def test_exact_path_patching_is_a_loop_of_single_patched_runs(fruits, found, step):
    """Every edge patched alone, one pass at a time, equals the batched scores; corrupting
    all of a head's outgoing edges is the model's own head patching, and an edge into the
    logits is the model's own residual patching (``training.model.interp.Intervention``)."""
    cfg, g = fruits.config, Graph.of(fruits.config)
    flat = fruits.params(step)
    clean, corrupt = _pair(fruits)
    vocab = fruits.tokenizer.index
    query = LogitDiff(jnp.int32(5), jnp.int32(vocab["chili"]), jnp.int32(vocab["apple"]))
    assert found.answer == "apple"
    emb_c, emb_x = embed(flat, cfg, clean), embed(flat, cfg, corrupt)
    plain = plain_dials(g, emb_c.shape)
    outs_x, _ = forward(flat, cfg, g, emb_x, plain)
    outs_c, _ = forward(flat, cfg, g, emb_c, plain)

    @jax.jit
    def single(keep):
        _, final = forward(flat, cfg, g, emb_c, Dials(keep, outs_x, plain.delta))
        return metric(flat, cfg, final, query)

    receiver, sender = g.edge_index
    m_clean = float(single(plain.keep))
    i = found.index(step)
    assert m_clean == pytest.approx(found.clean_metric[i], rel=1e-5)
    for e in range(g.n_edges):
        keep = np.ones(g.adjacency.shape, np.float32)
        keep[receiver[e], sender[e]] = 0.0
        assert float(single(keep)) - m_clean == pytest.approx(
            found.exact[i, e], rel=1e-4, abs=1e-4
        ), g.edges[e]
    graphdef, state = unflatten_params(cfg, flat)
    corrupted = capture(graphdef, state, corrupt)
    clean_cap = capture(graphdef, state, clean)
    t, a = vocab["chili"], vocab["apple"]

    def diff(iv):
        return float(
            (lambda z: z[0, 5, t] - z[0, 5, a])(capture(graphdef, state, clean, iv).logits)
        )

    none = Intervention(
        head_keep=jnp.ones((2, 2)),
        head_value=corrupted.head_out,
        resid_keep=jnp.ones((3, 12)),
        resid_value=clean_cap.resid,
    )
    for layer in range(2):
        for h in range(2):
            s = g.head_sender(layer, h)
            keep = np.ones(g.adjacency.shape, np.float32)
            keep[:, s] = 0.0  # every edge out of the head
            head_keep = np.ones((2, 2), np.float32)
            head_keep[layer, h] = 0.0
            node = diff(none.replace(head_keep=jnp.asarray(head_keep)))
            assert float(single(keep)) == pytest.approx(node, rel=1e-4, abs=1e-4)
    for e in np.flatnonzero(receiver == g.logits_receiver):
        final = clean_cap.resid[:, 2] - outs_c[sender[e]] + outs_x[sender[e]]
        resid_keep = np.ones((3, 12), np.float32)
        resid_keep[2] = 0.0
        iv = none.replace(
            resid_keep=jnp.asarray(resid_keep), resid_value=clean_cap.resid.at[:, 2].set(final)
        )
        assert diff(iv) - m_clean == pytest.approx(found.exact[i, e], rel=1e-4, abs=1e-4)


def test_faithfulness_runs_from_corrupted_to_clean(found):
    np.testing.assert_allclose(found.faith_exact[:, 0], found.corrupt_metric, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(found.faith_exact[:, -1], found.clean_metric, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(found.faith_ig[:, 0], found.corrupt_metric, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(found.faith_ig[:, -1], found.clean_metric, rtol=1e-5, atol=1e-5)
    rec = found.recovered("exact")
    ok = found.normalisable()
    assert ok[-1] and not ok.all()  # a wide gap trained; none around step 1,600
    # float32 puts ~2e-7 of the logit scale on each metric, and a normalisable gap is at
    # least 1e-3 of it (causal.PATCH_MIN_GAP): each fraction is good to 4e-4
    np.testing.assert_allclose(rec[ok][:, [0, -1]], [[0.0, 1.0]] * int(ok.sum()), atol=4e-4)
    assert np.isnan(rec[~ok]).all()


def _curve(found) -> str:
    rho, rho_abs = found.spearman("eap_ig"), found.spearman("eap_ig", absolute=True)
    rho_eap = found.spearman("eap")
    rows = [
        f"{int(s):>6} {r:+.3f} {ra:+.3f} {re:+.3f}"
        for s, r, ra, re in zip(found.steps, rho, rho_abs, rho_eap, strict=True)
    ]
    return "step  rho(EAP-IG) rho(|EAP-IG|) rho(EAP)\n" + "\n".join(rows)


@pytest.mark.xfail(
    strict=True,
    reason="measured on the default run: EAP-IG's rank correlation with exact path "
    "patching (each edge corrupted alone in the clean run, as EAP-IG's reference code "
    "scores 'exact') is >= 0.9 at 74 of the 90 checkpoints after step 1,000 at 5 points "
    "(82%; median 0.951, min 0.838, 10th percentile 0.892): 0.93-1.00 up to step 6,700, "
    "0.84-0.93 from 6,800 on. With 30 or 64 points (converged: the same figures) 77 of 90 "
    "(86%; median 0.946, min 0.834). It integrates from the corrupted input to the clean "
    "one, so it sits between the two directions of patching: against the mean of noising "
    "and denoising it is >= 0.9 at every checkpoint "
    "(test_eap_ig_ranks_edges_as_the_mean_of_both_patching_directions)",
)
def test_eap_ig_ranks_edges_as_exact_path_patching_does(found):
    print(_curve(found))  # the whole curve, in the test's output
    late = found.steps > 1_000
    rho = found.spearman("eap_ig")[late]
    assert np.mean(rho >= 0.9) >= 0.9


def _denoising(fruits, found) -> np.ndarray:
    """[S, E] each edge restored alone in the corrupted run (it carries the sender's output
    on the clean prompt): M(corrupted, edge clean) - M(corrupted), at every step."""
    cfg, g = fruits.config, Graph.of(fruits.config)
    clean, corrupt = _pair(fruits)
    vocab = fruits.tokenizer.index
    query = LogitDiff(jnp.int32(5), jnp.int32(vocab["chili"]), jnp.int32(vocab[found.answer]))
    receiver, sender = g.edge_index
    keeps = np.ones((g.n_edges, *g.adjacency.shape), np.float32)
    keeps[np.arange(g.n_edges), receiver, sender] = 0.0

    def one(flat):
        emb_c, emb_x = embed(flat, cfg, clean), embed(flat, cfg, corrupt)
        plain = plain_dials(g, emb_c.shape)
        outs_c, _ = forward(flat, cfg, g, emb_c, plain)

        def m(keep):
            _, final = forward(flat, cfg, g, emb_x, Dials(keep, outs_c, plain.delta))
            return metric(flat, cfg, final, query)

        return jax.vmap(m)(jnp.asarray(keeps)) - m(plain.keep)

    steps, chunks, _ = fruits.store.stacked(fruits.name, fruits.steps)
    mapped = jax.jit(jax.vmap(one))
    return np.concatenate([jax.device_get(mapped(c)) for c in chunks])[: len(steps)]


def test_eap_ig_ranks_edges_as_the_mean_of_both_patching_directions(fruits, found):
    """Why EAP-IG misses the 90% of the issue against exact (noising) path patching on this
    model: its gradients are averaged from the corrupted input to the clean one, so it
    estimates the mean of corrupting an edge in the clean run (``exact``) and restoring it
    in the corrupted run (the first-order terms agree; interactions between edges split).
    Measured: against that mean rho >= 0.9 at all 90 checkpoints after step 1,000 (min
    0.922), against denoising alone at 32%, against noising alone at 82%."""
    denoising = _denoising(fruits, found)
    i = found.index(10_000)
    g = Graph.of(fruits.config)
    # a restored edge and a corrupted one move the metric in opposite directions
    assert denoising[i, g.edge("embed -> L1H1.k")] == pytest.approx(1.450, abs=2e-3)
    assert found.exact[i, g.edge("embed -> L1H1.k")] == pytest.approx(-4.261, abs=2e-3)
    late = found.steps > 1_000
    both = rank_correlation(found.eap_ig, (found.exact - denoising) / 2)[late]
    assert both.min() > 0.9
    alone = rank_correlation(found.eap_ig, -denoising)[late]
    assert np.mean(alone >= 0.9) < 0.5 and np.mean(found.spearman("eap_ig")[late] >= 0.9) < 0.9


@pytest.mark.xfail(
    strict=True,
    reason="measured at step 10,000: L1H1 at the final 'like' attends 99.4% to 'spicy' "
    "itself and reads it from the embeddings there (embed -> L1H1.k -4.26, 3rd of 46; "
    "embed -> L1H1.v -1.39, 11th) and from the L0 MLP (L0 MLP -> L1H1.v -2.26, 9th), not "
    "from a layer-0 head: L0H1 -> L1H1.v -0.06 (33rd), L0H1 -> L1H1.k +0.002 (42nd), "
    "L0H1 -> L1H0.k -0.17 (27th), all outside the 16-edge circuit; restoring them alone in "
    "the corrupted run moves the logit difference by at most 0.09. L0H1's 'spicy' reaches "
    "the answer through the L1 MLP (L0H1 -> L1 MLP -2.86, 4th) and directly (-0.99)",
)
def test_the_circuit_holds_l0h1_into_a_layer_1_head(found):
    circuit = found.circuit(10_000)
    assert circuit, "no circuit recovers 80% at step 10,000"
    wanted = {f"L0H1 -> L1H{h}.{x}" for h in range(2) for x in "kv"}
    assert wanted & set(circuit)


def test_the_circuit_at_step_10000(found):
    """What holds at step 10,000 (pinned: a change of the model or the scores shows)."""
    i = found.index(10_000)
    rec = found.recovered("exact")[i]
    assert len(found.circuit(10_000)) == int(np.argmax(rec >= 0.8)) == 16
    top = [found.edges[e] for e in np.argsort(-np.abs(found.exact[i]), kind="stable")[:3]]
    assert top == ["L1 MLP -> logits", "embed -> L0H1.v", "embed -> L1H1.k"]
    assert found.strongest_into(10_000, "L1H1.") == "embed -> L1H1.k"


@pytest.mark.xfail(
    strict=True,
    reason="measured at step 10,000: the top 9 edges (20% of 46) by |exact| recover 11% of "
    "the logit difference (8 edges 15%, 12 51%, 16 85%). Ranked by signed exact score the "
    "curve is the same (the top 16 all lower the metric when corrupted); by |EAP-IG| 34% "
    "at 9. No 9-edge set found reaches 80%: greedy forward selection gives 12% at 9, "
    "backward elimination from all 46 edges 47% at 9 and 80% first at 15. 'spicy' reaches "
    "the answer over several paths that each need all their edges (a kept edge into a node "
    "whose inputs are corrupted carries the corrupted value)",
)
def test_a_fifth_of_the_edges_recovers_most_of_the_difference(found):
    rec = found.recovered("exact")[found.index(10_000)]
    k = int(0.2 * len(found.edges))
    assert rec[k] >= 0.8


def test_interp_capture_writes_the_circuits(default_root, found, tmp_path, capsys):
    from safetensors.numpy import load_file

    out = tmp_path / "c.safetensors"
    argv = ["--root", str(default_root[0]), "--run", "fruits", "--prompt", PROMPT]
    argv += ["--target", "chili", "--corrupt", CORRUPT, "--circuits", "--out", str(out)]
    assert capture_cli.main(argv) == 0
    tensors = load_file(str(out))
    for name, value in found.arrays().items():
        np.testing.assert_array_equal(tensors[name], value, err_msg=name)
    assert set(capture_cli.CIRCUIT_TENSORS) == set(found.arrays())
