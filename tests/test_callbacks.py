"""Every link of the selection, and every kind of bad input, through Dash's callback endpoint.

The links are checked on the short ``small`` run (any trained model has them); what the
fully trained run shows by default (``chili``, then ``apple``) is checked at the end."""

import shutil

import pytest

from interp_app.core.causal import MODES
from interp_app.panels import REGISTRY
from interp_app.server.app import create_app
from tests.dash_client import DashClient

PROMPT = "i like spicy so i like"
PANELS = tuple(p.figure[0] for p in REGISTRY if p.outputs and p.figure[1] == "figure")


@pytest.fixture(scope="module")
def client(small_root):
    root, _ = small_root
    return DashClient(create_app(root))


@pytest.fixture(scope="module")
def start(client):
    r = client.select(None, search="")
    return r["selection"]["data"]


@pytest.fixture(scope="module")
def query(start):
    """The default view's URL query."""
    return (
        f"?run=small&step={start['step']}&prompt=i+like+spicy+so+i+like&pos=5"
        f"&target={start['target']}&head=L1H0"
    )


def _notices(r) -> str:
    return str(r.get("notices", {}).get("children", ""))


def test_page_opens_on_the_default_view(client, start, small_root, query):
    _, summary = small_root
    vocab = client.app.server.config["ANALYZER"].store.info("small").tokenizer.vocab
    assert start == {
        "run": "small",
        "step": summary.steps[-1],
        "prompt": PROMPT,
        "pos": 5,
        "target": start["target"],
        "layer": 1,
        "head": 0,
        "ablate": [],
        "mode": "zero",
        "corrupt": "i like sweet so i like",
    }
    assert start["target"] in vocab  # the model's most likely word (see the golden test)
    assert client.select(None, search="")["url"]["search"] == query


@pytest.mark.parametrize(
    "source, value, field, expected",
    [
        ("grid-click.data", {"head": "L0H1", "shift": False}, "head", 1),
        ("multiples-click.data", {"points": [{"customdata": "L0H0"}]}, "layer", 0),
        ("residual-contributions.clickData", {"points": [{"customdata": "L1H1"}]}, "head", 1),
        ("prediction.clickData", {"points": [{"customdata": "so"}]}, "target", "so"),
    ],
)
def test_each_click_writes_the_selection(client, start, query, source, value, field, expected):
    assert start[field] != expected
    r = client.select(source, value, start, query)
    sel = r["selection"]["data"]
    assert sel[field] == expected
    # everything else is kept: scrubbing time keeps prompt, position, target and head
    for key in ("prompt", "pos"):
        assert sel[key] == start[key]
    assert "?" in r["url"]["search"]


def test_slider_and_loss_curve_clicks_pick_a_checkpoint(client, start, query, small_root):
    steps = small_root[1].steps
    r = client.select("step-slider.value", 2, start, query)  # the slider moves by index
    assert r["selection"]["data"]["step"] == steps[2]
    between = (steps[-3] + 2 * steps[-2]) / 3  # on the loss curve: nearer steps[-2]
    r = client.select("loss-curve.clickData", {"points": [{"x": between}]}, start, query)
    assert r["selection"]["data"]["step"] == steps[-2]
    assert r["selection"]["data"]["prompt"] == start["prompt"]
    assert client.select("step-slider.value", len(steps), start, query) == {}  # off the end


def test_chip_click_writes_the_position(client, start, query):
    chip = '{"index":2,"type":"chip"}.n_clicks'
    values = {
        "url.search": query,
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
    # the new prompt's defaults: its last position and the model's word there, as a link
    # to that prompt alone opens it
    linked = client.select(None, search="?run=small&prompt=i+like+sweet+so+i+like")
    default = linked["selection"]["data"]["target"]
    moved = {**start, "pos": 2, "target": "so" if default != "so" else "lemon"}
    r = client.select("prompt-input.value", "i like sweet so i like", moved)
    sel = r["selection"]["data"]
    assert sel["pos"] == 5 and sel["target"] == default
    assert sel["layer"] == start["layer"] and sel["head"] == start["head"]


def test_deep_link_restores_the_view(client):
    q = "?run=small&step=150&prompt=lemon+tastes+sour&pos=1&target=sour&head=L0H1"
    sel = client.select(None, search=q)["selection"]["data"]
    assert {k: sel[k] for k in ("run", "step", "prompt", "pos", "target", "layer", "head")} == {
        "run": "small",
        "step": 150,
        "prompt": "lemon tastes sour",
        "pos": 1,
        "target": "sour",
        "layer": 0,
        "head": 1,
    }


@pytest.mark.parametrize(
    "bad, field, expected, notice",
    [  # expected None: the default view's value
        ("?run=../etc&head=L0H1", "run", None, "does not exist"),
        ("?run=%2Fetc%2Fpasswd", "run", None, "does not exist"),
        ("?step=123", "step", None, "step 123 does not exist"),
        ("?step=abc", "step", None, "not a number"),
        ("?head=L7H3", "head", None, "head 'L7H3' does not exist"),
        ("?target=durian", "target", None, "target 'durian'"),
        ("?pos=40", "pos", None, "outside the prompt"),
        ("?prompt=", "prompt", None, "empty"),
        ("?prompt=i+like+durian", "prompt", "i like durian", "UNKNOWN: 'durian'"),
    ],
)
def test_bad_url_values_fall_back_with_a_notice(client, start, bad, field, expected, notice):
    r = client.select(None, search=bad)
    assert r["selection"]["data"][field] == (start[field] if expected is None else expected)
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
    assert client.last_bytes < 20_000
    # panels whose data depend on the head are drawn again
    for panel in ("attention-pattern", "token-attributions"):
        assert "L0H1" in r[panel]["figure"]["layout"]["title"]["text"], panel
    # panels that do not depend on the head are not resent
    assert "loss-curve" not in r and "prediction" not in r and "logit-lens" not in r
    # the grid and the bars only move their marks: a Patch, no data
    for panel in ("head-grid", "residual-contributions"):
        ops = {tuple(op["location"]): op for op in r[panel]["figure"]["operations"]}
        assert "L0H1" in ops[("layout", "title", "text")]["params"]["value"], panel
        assert not any(loc[:1] == ("data",) and len(loc) < 3 for loc in ops), panel
    # the multiples are not touched at all: their frame and caption are elements of the page
    assert "head-multiples" not in r
    assert r["multiples-caption"]["children"] == "selected L0H1"
    assert r["multiples-frame"]["style"]["display"] == "block"
    assert r["multiples-frame"]["style"] != first["multiples-frame"]["style"]
    assert r["ablate-button"]["children"] == "Ablate L0H1"
    # the sparkline follows the selected head in the same response (no second request)
    assert r["head-sparkline"]["figure"]["layout"]["title"]["text"].startswith("L0H1:")
    ops = {tuple(op["location"]): op for op in r["residual-contributions"]["figure"]["operations"]}
    names = first["residual-contributions"]["figure"]["data"][0]["x"]
    colors = ops[("data", 0, "marker", "color")]["params"]["value"]
    highlighted = [n for n, c in zip(names, colors, strict=True) if c == "#e8590c"]
    assert highlighted == ["L0H1"]


def test_a_figure_off_screen_is_drawn_once_scrolled_to(client, start):
    """The browser lists the figures off screen: a head click leaves them as they are (no
    bytes, no work) and they are drawn for the selection then once they come into view."""
    first = client.render(start)
    rendered = first["rendered"]["data"]
    hidden = ["residual-contributions", "token-attributions"]

    def draw(selection, rendered, hidden):
        return client.call(
            "run-picker.options",
            {"selection.data": selection, "panels-hidden.data": hidden},
            ["panels-hidden.data"],
            {"rendered.data": rendered, "metric-picker.value": "dla", "source-picker.value": 0},
        )

    moved = {**start, "layer": 0, "head": 1}
    r = draw(moved, rendered, hidden)
    assert (
        "attention-pattern" in r
        and "L0H1" in r["attention-pattern"]["figure"]["layout"]["title"]["text"]
    )
    assert "residual-contributions" not in r and "token-attributions" not in r
    # scrolled down: both come into view and follow the head chosen meanwhile
    shown = draw(moved, r["rendered"]["data"], [])
    assert set(shown) >= {"residual-contributions", "token-attributions"}
    assert "attention-pattern" not in shown  # already drawn for this head
    assert "L0H1" in shown["token-attributions"]["figure"]["layout"]["title"]["text"]
    ops = {
        tuple(op["location"]): op for op in shown["residual-contributions"]["figure"]["operations"]
    }
    assert "selected L0H1" in ops[("layout", "title", "text")]["params"]["value"]
    # scrolled again with nothing stale: nothing to send
    assert draw(moved, shown["rendered"]["data"], hidden) == {}


def test_corrupt_step_is_marked_and_others_work(tmp_path, small_root):
    root, _ = small_root
    shutil.copytree(root / "small", tmp_path / "small")
    (tmp_path / "small" / "steps" / "step-000000100" / "params.safetensors").write_bytes(b"junk")
    client = DashClient(create_app(tmp_path))
    sel = client.select(None, search="?run=small&step=100")["selection"]["data"]
    r = client.render(sel)
    assert "unreadable" in str(r["notices"]["children"])
    # the multiples say so, with no head names or frame left over the message
    assert "cannot be read" in str(r["head-multiples"]["figure"]["layout"])
    assert r["multiples-labels"]["children"] == [] and r["multiples-caption"]["children"] == ""
    assert r["multiples-frame"]["style"]["display"] == "none"
    marks = r["step-slider"]["marks"]
    assert any("⚠100" in str(m) for m in marks.values())
    ok = client.render({**sel, "step": 150})
    assert "L1H0" in ok["attention-pattern"]["figure"]["layout"]["title"]["text"]


def test_empty_root_says_how_to_train(tmp_path):
    client = DashClient(create_app(tmp_path))
    r = client.select(None, search="")
    assert r["selection"]["data"] is None
    assert "interp-train" in _notices(r)


def test_healthz_counts_runs_and_steps(client, small_root):
    data = client.client.get("/healthz").get_json()
    assert data["runs"] == 1 and data["steps"] == len(small_root[1].steps)


def test_ablation_from_the_url_and_the_toggle(client, start, query):
    r = client.select(None, search=query + "&ablate=L0H1,L0H0,L9H9&ablate_mode=mean")
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


def _panels(root, sel) -> tuple[dict, str]:
    """Every panel's figure for ``sel`` and the notices, from a fresh app: no capture or view
    is shared with another render, so equal figures were computed twice."""
    r = DashClient(create_app(root)).render(sel)
    return {p: r[p]["figure"] for p in PANELS}, _notices(r)


NUMBER_PANELS = ("prediction", "residual-contributions", "head-grid", "logit-lens")


def test_ablating_nothing_changes_no_panel(client, start, query, small_root):
    """A mode picked with nothing ablated changes no panel (every figure, data included);
    ablating a head does change the numbers, and differently in each mode, so the same
    comparison would see a difference."""
    root, _ = small_root
    plain, _ = _panels(root, start)
    ablated = {}
    for mode in MODES:
        picked = client.select("ablate-mode.value", mode, start)["selection"]["data"]
        assert picked["ablate"] == []
        panels, _ = _panels(root, picked)
        for panel in PANELS:
            assert panels[panel] == plain[panel], (mode, panel)
        linked = client.select(None, search=f"{query}&ablate=L1H0&ablate_mode={mode}")
        sel = linked["selection"]["data"]
        assert (sel["ablate"], sel["mode"]) == (["L1H0"], mode)
        r = client.render(sel)  # an ablated capture is kept per mode: one app will do
        ablated[mode] = {p: r[p]["figure"] for p in PANELS}
        assert _notices(r) == ""
        for panel in NUMBER_PANELS:
            assert ablated[mode][panel]["data"] != plain[panel]["data"], (mode, panel)
    for panel in ("prediction", "residual-contributions"):
        data = [ablated[mode][panel]["data"] for mode in MODES]
        assert all(a != b for i, a in enumerate(data) for b in data[i + 1 :]), panel


def test_a_mode_picked_before_ablating_is_kept(client, start):
    picked = client.select("ablate-mode.value", "mean", start)["selection"]["data"]
    assert picked["mode"] == "mean"
    assert _notices(client.render(picked)) == ""  # a selection this server wrote
    ablated = client.select("ablate-button.n_clicks", 1, picked)["selection"]["data"]
    assert (ablated["ablate"], ablated["mode"]) == (["L1H0"], "mean")


def test_patching_panel_and_clicks(client, start):
    r = client.render(start)
    fig = r["patching"]["figure"]
    assert f"('{start['target']}' − '" in fig["layout"]["title"]["text"]
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
    q = "?run=small&step=150&prompt=apple+is+so+sweet&pos=2&target=so&head=L0H0"
    sel = client.select(None, search=q)["selection"]["data"]
    assert client.select("run-picker.value", "small", sel, q) == {}
    assert client.select("prompt-input.value", "apple is so sweet", sel, q) == {}
    changed = client.select("prompt-input.value", "apple is so sour", sel, q)
    assert changed["selection"]["data"]["pos"] == 3  # a typed prompt does reset them


# --- what the fully trained run shows (golden outcomes: the slow tier) ----------------------


@pytest.fixture(scope="module")
def trained(default_root):
    root, _ = default_root
    return DashClient(create_app(root))


def test_trained_run_opens_on_chili_and_reads_sweet_as_apple(trained):
    r = trained.select(None, search="")
    assert r["url"]["search"] == (
        "?run=fruits&step=10000&prompt=i+like+spicy+so+i+like&pos=5&target=chili&head=L1H0"
    )
    start = r["selection"]["data"]
    sweet = trained.select("prompt-input.value", "i like sweet so i like", start)
    assert sweet["selection"]["data"]["target"] == "apple"
    fallback = trained.select(None, search="?target=durian")["selection"]["data"]
    assert fallback["target"] == "chili"
    patching = trained.render(start)["patching"]["figure"]["layout"]["title"]["text"]
    assert "'chili' − 'apple'" in patching


def test_timeline_click_picks_the_step_it_names(client, start, small_root):
    """The timelines leave unreadable steps out, so a cell's index is not the run's index:
    the step comes from the cell's customdata (review finding; x only as a fallback)."""
    steps = small_root[1].steps
    point = {"x": 0, "y": "L0H1", "customdata": steps[4]}
    r = client.select("head-timeline.clickData", {"points": [point]}, start)
    assert (r["selection"]["data"]["step"], r["selection"]["data"]["head"]) == (steps[4], 1)


def test_a_panel_with_nothing_remembered_draws_every_output(client, start):
    """Review finding: a panel whose last drawing failed (nothing remembered) redrew its
    figure but not the outputs it writes only on a change (the source picker's words)."""
    first = client.render(start)
    remembered = {"fields": first["rendered"]["data"]["fields"], "panels": {}}
    again = client.render(start, rendered=remembered)
    assert again["source-picker"]["options"] == first["source-picker"]["options"]
    assert again["token-chips"]["children"]


def test_an_option_changed_before_the_first_answer_still_opens_the_page(client):
    """Review finding: a view option changed while the page's first request was in flight
    supersedes it (Dash keeps the newer request) and came with no selection: every panel
    said "No runs". Without a selection, the URL is read as on a page load."""
    r = client.call(
        "selection.data",
        {"url.search": "?run=small&head=L0H1", "metric-picker.value": "share"},
        ["metric-picker.value"],
        {"selection.data": None},
    )
    assert r["selection"]["data"]["run"] == "small" and r["selection"]["data"]["head"] == 1
    assert "share" in str(r["head-grid"]["figure"]["layout"]["title"]["text"])


def test_a_forged_stored_run_with_a_click_is_no_server_error(client, start):
    """Review finding: a stored selection naming a path outside the root, with a slider,
    grid or play event, raised outside any handler (a 500)."""
    forged = {**start, "run": "../x"}
    for event, value in (("step-slider.value", 1), ("play-interval.n_intervals", 3)):
        client.select(event, value, forged)
        assert client.last_status in (200, 204), (event, client.last_status)


def test_sparkline_follows_the_hovered_head(client, start, small_root):
    def title(hover):
        r = client.call(
            "head-sparkline.figure",
            {
                "head-multiples.hoverData": hover,
                "selection.data": start,
                "metric-picker.value": "dla",
            },
            ["head-multiples.hoverData"],
            {"source-picker.value": 0},
        )
        return r["head-sparkline"]["figure"]

    hovered = title({"points": [{"curveNumber": 1}]})  # the multiples: L0H0, L0H1, ...
    assert hovered["layout"]["title"]["text"].startswith("L0H1: direct logit attribution")
    assert len(hovered["data"][0]["x"]) == len(small_root[1].steps)
    assert title(None)["layout"]["title"]["text"].startswith("L1H0:")  # the selected head
    assert title({"points": [{"curveNumber": 99}]})["layout"]["title"]["text"].startswith("L1H0:")
