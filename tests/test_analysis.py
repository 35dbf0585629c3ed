"""The app's numbers against an independent numpy forward pass from the checkpoint."""

import numpy as np

from interp_app.runs import RunStore
from interp_app.selection import Selection
from interp_app.view import compute_view, resolve
from tests.numpy_reference import forward, head_token_attributions


def _setup(default_root, prompt="i like spicy so i like"):
    root, _ = default_root
    store = RunStore(root)
    sel, notes = resolve(store, {"prompt": prompt})
    assert notes == []
    info = store.info(sel.run)
    ids = info.tokenizer.encode(prompt)
    ref = forward(store.params(sel.run, sel.step), ids, info.model.n_layers, info.model.n_heads)
    return store, sel, info, ref


def test_defaults_and_logits_match_numpy(default_root):
    store, sel, info, ref = _setup(default_root)
    assert (sel.run, sel.step, sel.pos, sel.target, sel.head_name) == (
        "fruits",
        10_000,
        5,
        "chili",
        "L1H0",
    )
    view = compute_view(store, sel)
    target = info.tokenizer.vocab.index("chili")
    assert abs(view.logit - ref["logits"][5, target]) < 1e-4
    assert abs(view.comp_attr.sum() - view.logit) < 1e-4 * max(1, abs(view.logit))


def test_token_attributions_sum_to_head_bar_and_match_numpy(default_root):
    store, sel, info, ref = _setup(default_root)
    for layer in range(info.model.n_layers):
        for head in range(info.model.n_heads):
            for pos in (2, 5):
                for target in ("chili", "apple"):
                    s = Selection(sel.run, sel.step, sel.prompt, pos, target, layer, head)
                    view = compute_view(store, s)
                    t = info.tokenizer.vocab.index(target)
                    expected = head_token_attributions(ref, layer, head, pos, t)
                    np.testing.assert_allclose(
                        view.source_attr, expected[: pos + 1].tolist() + [0] * (5 - pos), atol=2e-5
                    )
                    bar = view.comp_attr[view.comp_names.index(f"L{layer}H{head}")]
                    assert abs(view.source_attr.sum() - bar) < 1e-5 * max(1, abs(bar))
                    np.testing.assert_allclose(
                        view.patterns[layer, head, pos, : pos + 1],
                        ref["heads"][(layer, head)][0][pos, : pos + 1],
                        atol=1e-5,
                    )


def test_logit_lens_ends_in_chili(default_root):
    store, sel, info, _ = _setup(default_root)
    view = compute_view(store, sel)
    assert info.tokenizer.vocab[view.lens_top[-1, 5]] == "chili"
    assert view.lens_top.shape == (info.model.n_layers + 1, 6)


def test_any_prompt_length_uses_one_compiled_shape(default_root):
    from training.model import capture

    store, sel, _, _ = _setup(default_root)
    compute_view(store, sel)
    before = capture._cache_size()
    for text in ("i", "apple is so sweet", "i like the sour taste of lemon and i like"):
        s, _ = resolve(store, {"prompt": text})
        compute_view(store, s)
    assert capture._cache_size() == before
