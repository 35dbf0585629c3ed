"""Runs that interp-train did not make (a Hugging Face tokenizer, byte-level ids, no corpus,
no training config) open in the app, the public API and interp-capture's export."""

from __future__ import annotations

import dataclasses
import json

import pytest

from interp_app.core import api
from interp_app.core.heads import ROTARY_POSITION
from interp_app.core.selection import GENERIC_PROMPT
from interp_app.panels import REGISTRY
from interp_app.server.app import create_app
from tests.dash_client import DashClient
from tests.external_runs import CONFIG, PROMPT, STEPS, train_tokenizer, write_run
from training.hf_tokenizer import PART

PANELS = tuple(p.figure[0] for p in REGISTRY if p.outputs and p.figure[1] == "figure")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("external")
    write_run(root, "bpe", "huggingface", corrupt="the dog sat on 🙂")
    write_run(root, "bytes", "bytes")
    return root


@pytest.fixture(scope="module")
def client(root):
    return DashClient(create_app(root))


def _open(client, run: str, **query: str):
    search = "?" + "&".join(f"{k}={v}" for k, v in {"run": run, **query}.items())
    r = client.select(None, search=search)
    return r, r["selection"]["data"]


def _titles(r) -> dict[str, str]:
    """Each panel's figure title (a message figure's text too): what the page says."""
    out = {}
    for name in PANELS:
        fig = r.get(name, {}).get("figure")
        if fig:
            layout = fig.get("layout", {})
            notes = " ".join(a.get("text", "") for a in layout.get("annotations", []))
            out[name] = str(layout.get("title", {}).get("text", "")) + notes
    return out


def test_a_bpe_run_opens_with_the_tokenizers_pieces(client, root):
    r, sel = _open(client, "bpe", prompt=PROMPT)
    assert sel["run"] == "bpe" and sel["step"] == STEPS[-1]
    library = train_tokenizer(root / "again.json")  # the same training: the same merges
    enc = library.encode(PROMPT, add_special_tokens=False)
    chips = r["token-chips"]["children"][1:]
    labels = [c["props"]["children"].split(":", 1)[1] for c in chips]
    assert [w.split(PART)[0] for w in labels] == [PROMPT[a:b] for a, b in enc.offsets]
    assert any(PART in w for w in labels)  # "→": three byte tokens
    notes = str(r["notices"]["children"])
    assert "split over several tokens" in notes and "UNKNOWN" not in notes
    assert set(_titles(r)) == set(PANELS)  # every panel drew a figure
    assert not any("cannot" in t.lower() for t in _titles(r).values())


def test_defaults_without_a_corpus(client):
    _, sel = _open(client, "bytes")
    assert sel["prompt"] == GENERIC_PROMPT
    assert sel["target"] in client.app.server.config["ANALYZER"].store.info("bytes").tokenizer.index
    assert not sel["target"].startswith("<id ")  # an id without a token is no default
    _, bpe = _open(client, "bpe")
    assert bpe["corrupt"] == "the dog sat on 🙂"  # run.json's own corrupted prompt


def test_a_target_by_label_and_the_causal_tools(client):
    r, sel = _open(client, "bpe", prompt="the cat sat", target="%20sat")
    assert sel["target"] == " sat"  # a BPE token with its leading space
    r, sel = _open(client, "bpe", prompt="the cat sat", ablate="L0H0", ablate_mode="valid-mean")
    assert sel["mode"] == "mean" and sel["ablate"] == ["L0H0"]
    assert "no reference text" in str(r["notices"]["children"])
    r, sel = _open(client, "bpe", prompt="the cat sat", ablate="L1H1", ablate_mode="zero")
    assert sel["mode"] == "zero" and set(_titles(r)) == set(PANELS)
    titles = _titles(r)
    assert "patching needs the same number of tokens" in titles["patching"]  # the default pair
    r, sel = _open(client, "bpe", prompt="the cat sat on", corrupt="the dog sat on")
    assert "Activation patching" in _titles(r)["patching"] or "too close" in _titles(r)["patching"]


def test_the_api_and_the_export(root):
    run = api.open_run(root, "bpe")
    assert run.train_config is None and run.tokenizer.kind == "huggingface"
    m = run.metrics(None, PROMPT, target=" sat")
    assert m.words == tuple(run.tokenizer.pieces(PROMPT).labels)
    assert abs(m.dla.sum() - m.logit) < 1e-4
    with pytest.raises(ValueError, match="no reference text"):
        run.ablate(None, PROMPT, ["L0H0"], mode="valid-mean")
    assert run.ablate(None, PROMPT, ["L0H0"], mode="mean").effects.shape == (2, 2)
    out = run.export(None, PROMPT, target=" sat")
    assert out.header["train"] is None and out.header["tokenizer"] == "huggingface"
    assert out.header["words"] == list(m.words)
    json.dumps(out.header)  # the header is JSON, whatever the labels hold
    byte_run = api.open_run(root, "bytes")
    assert byte_run.capture(None, "hé").words == ("h", f"é{PART}1/2", f"é{PART}2/2")


VARIANT = dataclasses.replace(
    CONFIG,
    positions="rotary",
    rotary_dims=4,
    parallel=True,
    mlp=False,
    tied=False,
    unembed_bias=True,
    activation="gelu",
    qkv_bias=True,
)


def test_views_that_cannot_apply_say_so(tmp_path):
    """Rotary positions, parallel blocks, no MLPs, an untied unembedding: the components
    keep their count and say what writes nothing; the page and the export say why."""
    write_run(tmp_path, "neox", "bytes", VARIANT)
    run = api.open_run(tmp_path, "neox")
    m = run.metrics(None, "abc", target="d")
    assert m.components[1] == ROTARY_POSITION and m.components[5] == "L0 MLP (none)"
    assert abs(m.dla.sum() - m.logit) < 1e-4  # still exact with w_u and b_u
    assert m.dla[1] == 0.0 and m.dla[5] == 0.0
    notes = " ".join(run.export(None, "abc", target="d").header["notes"])
    assert "rotary" in notes and "parallel" in notes and "attention-only" in notes
    r = DashClient(create_app(tmp_path)).select(None, search="?run=neox&prompt=abc")
    said = str(r["notices"]["children"])
    assert "rotary positions" in said and "resid_mid" in said and "no MLPs" in said
    assert set(_titles(r)) == set(PANELS)
