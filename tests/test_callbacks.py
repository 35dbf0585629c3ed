"""Every link of the selection, and every kind of bad input, through Dash's callback endpoint."""

import shutil

import pytest

from interp_app.app import create_app
from tests.dash_client import DashClient

DEFAULT_QUERY = "?run=fruits&step=10000&prompt=i+like+spicy+so+i+like&pos=5&target=chili&head=L1H0"


@pytest.fixture(scope="module")
def client(default_root):
    root, _ = default_root
    return DashClient(create_app(root))


@pytest.fixture(scope="module")
def start(client):
    r = client.select(None, search="")
    return r["selection"]["data"]


def _notices(r) -> str:
    return str(r.get("notices", {}).get("children", ""))


def test_page_opens_on_the_default_view(client, start):
    assert start == {
        "run": "fruits",
        "step": 10000,
        "prompt": "i like spicy so i like",
        "pos": 5,
        "target": "chili",
        "layer": 1,
        "head": 0,
        "ablate": [],
        "mode": "zero",
        "corrupt": "i like sweet so i like",
    }
    assert client.select(None, search="")["url"]["search"] == DEFAULT_QUERY


@pytest.mark.parametrize(
    "source, value, field, expected",
    [
        ("grid-click.data", {"head": "L0H1", "shift": False}, "head", 1),
        ("head-multiples.clickData", {"points": [{"customdata": "L0H0"}]}, "layer", 0),
        ("residual-contributions.clickData", {"points": [{"customdata": "L1H1"}]}, "head", 1),
        ("prediction.clickData", {"points": [{"customdata": "orange"}]}, "target", "orange"),
        ("step-slider.value", 13, "step", 100),
        ("loss-curve.clickData", {"points": [{"x": 4420}]}, "step", 4400),
    ],
)
def test_each_click_writes_the_selection(client, start, source, value, field, expected):
    r = client.select(source, value, start, DEFAULT_QUERY)
    sel = r["selection"]["data"]
    assert sel[field] == expected
    # everything else is kept: scrubbing time keeps prompt, position, target and head
    for key in ("prompt", "pos"):
        assert sel[key] == start[key]
    assert "?" in r["url"]["search"]


def test_chip_click_writes_the_position(client, start):
    chip = '{"index":2,"type":"chip"}.n_clicks'
    values = {
        "url.search": DEFAULT_QUERY,
        '{"index":["ALL"],"type":"chip"}.n_clicks': [
            {"id": {"type": "chip", "index": i}, "property": "n_clicks", "value": int(i == 2)}
            for i in range(6)
        ],
    }
    r = client.call("selection.data", values, [chip], {"selection.data": start})
    assert r["selection"]["data"]["pos"] == 2
    assert "pos=2" in r["url"]["search"]


def test_non_head_bar_changes_nothing(client, start):
    r = client.select(
        "residual-contributions.clickData", {"points": [{"customdata": "L0 MLP"}]}, start
    )
    assert r == {}


def test_new_prompt_resets_position_and_target(client, start):
    r = client.select("prompt-input.value", "i like sweet so i like", start)
    sel = r["selection"]["data"]
    assert sel["pos"] == 5 and sel["target"] == "apple"
    assert sel["layer"] == start["layer"] and sel["head"] == start["head"]


def test_deep_link_restores_the_view(client):
    q = "?run=fruits&step=500&prompt=lemon+tastes+sour&pos=1&target=sour&head=L0H1"
    sel = client.select(None, search=q)["selection"]["data"]
    assert {k: sel[k] for k in ("run", "step", "prompt", "pos", "target", "layer", "head")} == {
        "run": "fruits",
        "step": 500,
        "prompt": "lemon tastes sour",
        "pos": 1,
        "target": "sour",
        "layer": 0,
        "head": 1,
    }


@pytest.mark.parametrize(
    "query, field, expected, notice",
    [
        ("?run=../etc&head=L0H1", "run", "fruits", "does not exist"),
        ("?run=%2Fetc%2Fpasswd", "run", "fruits", "does not exist"),
        ("?step=123", "step", 10000, "step 123 does not exist"),
        ("?step=abc", "step", 10000, "not a number"),
        ("?head=L7H3", "head", 0, "head 'L7H3' does not exist"),
        ("?target=durian", "target", "chili", "target 'durian'"),
        ("?pos=40", "pos", 5, "outside the prompt"),
        ("?prompt=", "prompt", "i like spicy so i like", "empty"),
        ("?prompt=i+like+durian", "prompt", "i like durian", "UNKNOWN: 'durian'"),
    ],
)
def test_bad_url_values_fall_back_with_a_notice(client, query, field, expected, notice):
    r = client.select(None, search=query)
    assert r["selection"]["data"][field] == expected
    assert notice in _notices(r)


def test_over_long_prompt_is_cut_to_the_context(client, start):
    text = " ".join(["i like spicy so i like"] * 3)
    r = client.select("prompt-input.value", text, start)
    sel = r["selection"]["data"]
    assert "more than the context (12); analysing the last 12" in _notices(r)
    assert sel["pos"] == 11
    view = client.render(sel)
    chips = view["token-chips"]["children"]
    assert len(chips) == 1 + 12


def test_head_click_updates_every_head_panel_in_one_response(client, start):
    first = client.render(start)
    rendered = first["rendered"]["data"]
    moved = {**start, "layer": 0, "head": 1}
    r = client.render(moved, rendered=rendered)
    assert client.last_bytes < 200_000
    for panel in ("attention-pattern", "token-attributions", "residual-contributions", "head-grid"):
        assert "L0H1" in r[panel]["figure"]["layout"]["title"]["text"], panel
    # panels that do not depend on the head are not resent
    assert "loss-curve" not in r and "prediction" not in r and "logit-lens" not in r
    bars = r["residual-contributions"]["figure"]["data"][0]
    highlighted = [
        n for n, c in zip(bars["x"], bars["marker"]["color"], strict=True) if c == "#e8590c"
    ]
    assert highlighted == ["L0H1"]


def test_corrupt_step_is_marked_and_others_work(tmp_path, small_root):
    root, _ = small_root
    shutil.copytree(root / "small", tmp_path / "small")
    (tmp_path / "small" / "steps" / "step-000000100" / "params.safetensors").write_bytes(b"junk")
    client = DashClient(create_app(tmp_path))
    sel = client.select(None, search="?run=small&step=100")["selection"]["data"]
    r = client.render(sel)
    assert "unreadable" in str(r["notices"]["children"])
    marks = r["step-slider"]["marks"]
    assert any("⚠100" in str(m) for m in marks.values())
    ok = client.render({**sel, "step": 150})
    assert "L1H0" in ok["attention-pattern"]["figure"]["layout"]["title"]["text"]


def test_empty_root_says_how_to_train(tmp_path):
    client = DashClient(create_app(tmp_path))
    r = client.select(None, search="")
    assert r["selection"]["data"] is None
    assert "interp-train" in _notices(r)


def test_healthz_counts_runs_and_steps(client):
    data = client.client.get("/healthz").get_json()
    assert data["runs"] == 1 and data["steps"] >= 101


def test_ablation_from_the_url_and_the_toggle(client, start):
    r = client.select(None, search=DEFAULT_QUERY + "&ablate=L0H1,L0H0,L9H9&ablate_mode=mean")
    sel = r["selection"]["data"]
    assert sel["ablate"] == ["L0H0", "L0H1"] and sel["mode"] == "mean"
    assert "cannot ablate 'L9H9'" in _notices(r)
    view = client.render(sel)
    pred = view["prediction"]["figure"]
    assert [t["name"] for t in pred["data"]] == ["before ablation", "ablated"]
    assert "mean-ablated (mean over this prompt)" in pred["layout"]["title"]["text"]
    # the patching panel does not follow the ablation, and says so
    assert "without ablation" in view["patching"]["figure"]["layout"]["title"]["text"]
    toggled = client.select("ablate-button.n_clicks", 1, start)
    assert toggled["selection"]["data"]["ablate"] == ["L1H0"]
    assert "ablate=L1H0" in toggled["url"]["search"]
    again = client.select("ablate-button.n_clicks", 2, toggled["selection"]["data"])
    assert again["selection"]["data"]["ablate"] == []
    shifted = client.select("grid-click.data", {"head": "L0H0", "shift": True}, start)
    assert shifted["selection"]["data"]["ablate"] == ["L0H0"]
    assert shifted["selection"]["data"]["head"] == start["head"]  # shift-click only ablates


def test_ablating_nothing_changes_no_panel(client, start):
    a = client.render(start)
    b = client.render({**start, "mode": "mean"})
    for panel in ("residual-contributions", "attention-pattern"):
        assert a[panel]["figure"]["layout"]["title"] == b[panel]["figure"]["layout"]["title"]


def test_patching_panel_and_clicks(client, start):
    r = client.render(start)
    fig = r["patching"]["figure"]
    assert "'chili' − 'apple'" in fig["layout"]["title"]["text"]
    head = client.select(
        "patching.clickData", {"points": [{"curveNumber": 0, "x": "H1", "y": "L0"}]}, start
    )
    assert (head["selection"]["data"]["layer"], head["selection"]["data"]["head"]) == (0, 1)
    pos = client.select(
        "patching.clickData", {"points": [{"curveNumber": 1, "x": 2, "y": "after L0"}]}, start
    )
    assert pos["selection"]["data"]["pos"] == 2
    other = client.render({**start, "corrupt": "i like sweet"})
    assert "same number of tokens" in str(other["patching"]["figure"]["layout"]["annotations"])
    # two prompts the model reads alike (both end in an unknown word): nothing to normalise
    alike = client.render(
        {**start, "prompt": "i like spicy so i qqq", "corrupt": "i like spicy so i zzz"}
    )
    note = alike["patching"]["figure"]["layout"]["annotations"][0]["text"]
    assert "too close to normalise" in note.replace("<br>", " ")


def test_render_echoes_of_run_and_prompt_change_nothing(client):
    """``render`` writes the run picker and the prompt box; those writes come back to
    ``select`` as events and must not reset a deep link's step, position or target."""
    q = "?run=fruits&step=500&prompt=apple+is+so+sweet&pos=2&target=so&head=L0H0"
    sel = client.select(None, search=q)["selection"]["data"]
    assert client.select("run-picker.value", "fruits", sel, q) == {}
    assert client.select("prompt-input.value", "apple is so sweet", sel, q) == {}
    changed = client.select("prompt-input.value", "apple is so sour", sel, q)
    assert changed["selection"]["data"]["pos"] == 3  # a typed prompt does reset them
