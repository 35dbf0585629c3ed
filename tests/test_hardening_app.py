"""The served app under an unlucky or hostile user: cold starts racing the first page,
odd folders in the checkpoint root, unreadable runs, oversized and forged callback input."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
import requests

from interp_app.server.app import create_app
from tests.browser import app_command, free_port, serve
from tests.dash_client import DashClient
from training.config import TrainConfig
from training.corpus import builtin_corpus
from training.model.config import ModelConfig
from training.train import train


def _bundle_paths(root) -> list[str]:
    """The component bundles a fresh page asks for (from an app built in this process)."""
    page = create_app(root).server.test_client().get("/").text
    paths = re.findall(r'src="(/_dash-component-suites/[^"]+)"', page)
    assert any("dash_bootstrap_components" in p for p in paths), paths
    return paths


def _wait_for_listener(port: int, timeout: float = 30.0) -> None:
    """Until the master has bound the port: workers may still be booting (that is the point)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


def test_first_requests_after_a_start_never_race_dash_setup(small_root, tmp_path):
    """Regression: a bundle request racing a worker's first page got a 500 (plotly/dash#3971).
    Forty concurrent first requests, over three fresh starts of two threaded workers."""
    root, _ = small_root
    paths = ["/", *_bundle_paths(root)]
    statuses: list[int] = []
    for attempt in range(3):
        port = free_port()
        argv = [*app_command(root, port)[:-1], "2", "--threads", "4"]
        log = tmp_path / f"app-{attempt}.log"
        with serve(argv, port, timeout=120, log=log, ready=_wait_for_listener) as url:
            wanted = [paths[i % len(paths)] for i in range(40)]
            with ThreadPoolExecutor(40) as pool:
                got = pool.map(lambda p: requests.get(url + p, timeout=120).status_code, wanted)
                statuses.extend(got)
    assert len(statuses) == 120
    assert statuses.count(200) == 120, sorted(set(statuses))
    for attempt in range(3):
        assert "is not a registered library" not in (tmp_path / f"app-{attempt}.log").read_text()


# --- forged callback payloads ---------------------------------------------------------------

HOSTILE = [
    None,
    "abc",
    "",
    -1,
    10**30,
    -(10**30),
    float("inf"),
    float("-inf"),
    float("nan"),
    1.5,
    True,
    [],
    [1, "x", None],
    {},
    {"points": 5},
    {"points": [5, "x"]},
    {"points": [{"customdata": 5, "x": float("inf"), "y": 10**30, "curveNumber": "a"}]},
    {"points": [{"customdata": ["L0H0", float("nan")], "x": -1, "curveNumber": 1}]},
    {"head": 5, "shift": "yes"},
    {"run": "small"},  # a partial selection
    {"run": "small", "step": "x", "pos": float("inf"), "ablate": 5, "layer": "a"},
    "x" * 20_000,
]


def _slot_values(sel: dict) -> dict[str, object]:
    """Plausible values for every slot, so each forged value meets an otherwise sane call."""
    return {
        "selection.data": sel,
        "url.search": "?run=small",
        "metric-picker.value": "dla",
        "source-picker.value": 0,
        "attention-threshold.value": 0.1,
        "embedding-set.value": "fruits",
    }


def _body(app, key: str, values: dict[str, object], changed: str) -> dict:
    from tests.dash_client import _outputs

    spec = app.callback_map[key]

    def slot(item):
        cid, prop = item["id"], item["property"]
        if cid.startswith("{"):  # pattern-matching: a chip whose index is the forged value
            if f"{cid}.{prop}" not in values:
                return []
            chip = {"type": "chip", "index": values[f"{cid}.{prop}"]}
            return [{"id": chip, "property": prop, "value": 1}]
        return {"id": cid, "property": prop, "value": values.get(f"{cid}.{prop}")}

    if changed.startswith("{"):
        chip = {"index": values.get(changed), "type": "chip"}
        changed = json.dumps(chip, separators=(",", ":"), allow_nan=True) + ".n_clicks"
    return {
        "output": key,
        "outputs": _outputs(key),
        "inputs": [slot(i) for i in spec["inputs"]],
        "changedPropIds": [changed],
        "state": [slot(s) for s in spec.get("state", [])],
    }


def _forged_bodies(app, sel: dict, rng) -> list[dict]:
    """Every hostile value in every input and state of every callback, then random mixes."""
    bodies = []
    sane = _slot_values(sel)
    for key, spec in app.callback_map.items():
        slots = [f"{s['id']}.{s['property']}" for s in [*spec["inputs"], *spec.get("state", [])]]
        first = slots[0]
        for name in slots:
            changed = (
                name if any(name == f"{i['id']}.{i['property']}" for i in spec["inputs"]) else first
            )
            for value in HOSTILE:
                bodies.append(_body(app, key, {**sane, name: value}, changed))
        for _ in range(20):
            forged = {name: HOSTILE[rng.integers(len(HOSTILE))] for name in slots}
            bodies.append(_body(app, key, {**sane, **forged}, slots[rng.integers(len(slots))]))
    return bodies


def test_forged_callback_payloads_never_get_a_5xx(small_root):
    """Regression: 82 of 213 forged payloads returned 500 (non-dict clicks, NaN and infinite
    numbers, strings for ints, partial selections, a source position of 10**30)."""
    import numpy as np

    root, _ = small_root
    app = create_app(root)
    client = app.server.test_client()
    sel = client.post(
        "/_dash-update-component",
        json=_body(
            app,
            next(
                k for k in app.callback_map if "selection.data" in k and k.startswith("..selection")
            ),
            {"url.search": "?run=small"},
            "url.search",
        ),
    ).get_json()["response"]["selection"]["data"]
    bodies = _forged_bodies(app, sel, np.random.default_rng(0))
    failures = []
    for body in bodies:
        data = json.dumps(body, allow_nan=True)  # Infinity and NaN, as a forger would send
        resp = client.post("/_dash-update-component", data=data, content_type="application/json")
        if resp.status_code >= 500:
            failures.append((body["output"][:40], body["changedPropIds"], resp.status_code))
    deep = "[" * 100_000 + "]" * 100_000
    resp = client.post("/_dash-update-component", data=deep, content_type="application/json")
    assert 400 <= resp.status_code < 500
    assert not failures, (len(failures), len(bodies), failures[:10])
    assert len(bodies) > 1000


# --- runs and roots this server cannot read ---------------------------------------------------

OTHER_UID = 12345  # owns the "other user's" files below


def _unprivileged(argv: list[str]) -> list[str]:
    """As root, file modes bind only without the capabilities that bypass them."""
    if os.geteuid() != 0:
        return argv
    drop = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", "--", *argv]


def _lock(path: Path) -> None:
    """Another user's owner-only files, as ``mkstemp`` used to leave them."""
    for p in [path, *path.rglob("*")]:
        if os.geteuid() == 0:
            os.chown(p, OTHER_UID, OTHER_UID)
        p.chmod(0o700 if p.is_dir() else 0o600)


def _unlock(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if os.geteuid() == 0:
            os.chown(p, 0, 0)
        p.chmod(0o755 if p.is_dir() else 0o644)


@pytest.fixture
def world_readable_root(small_root):
    """A root that every user may read (pytest's own temporary folders are owner-only)."""
    src, _ = small_root
    base = Path(tempfile.mkdtemp(prefix="interp-perm-"))
    base.chmod(0o755)
    root = base / "root"
    shutil.copytree(src, root)
    shutil.copytree(root / "small", root / "theirs")
    _unlock(root)
    yield root
    _unlock(base)
    shutil.rmtree(base)


def test_unreadable_runs_and_root_are_notices_not_a_dead_server(world_readable_root, tmp_path):
    """Regression: a run another user wrote owner-only made the worker fail to boot and
    gunicorn exit. Now the server serves what it can read and names what it cannot."""
    root = world_readable_root
    _lock(root / "theirs")
    port = free_port()
    argv = _unprivileged(app_command(root, port))
    with serve(argv, port, timeout=120, log=tmp_path / "app.log") as url:
        health = requests.get(url + "/healthz", timeout=30).json()
        assert health["runs"] == 1 and health["status"] == "ok", health
        assert any("'theirs'" in p and "cannot be read" in p for p in health["problems"])
        client = DashClient(create_app(root), base_url=url)
        r = client.select(None, search="?run=theirs")
        assert r["selection"]["data"]["run"] == "small"
        assert "'theirs' cannot be read" in str(r["notices"]["children"])
        root.chmod(0o700)
        if os.geteuid() == 0:
            os.chown(root, OTHER_UID, OTHER_UID)
        health = requests.get(url + "/healthz", timeout=30)
        assert health.status_code == 200
        assert "cannot read the checkpoint root" in str(health.json()["problems"])
        r = client.select(None, search="?run=small")
        assert "cannot read the checkpoint root" in str(r["notices"]["children"])


def test_listing_and_lookup_share_one_rule_for_run_names(small_root, tmp_path):
    """Regression: a symlink leading out of the root or a folder named ``small..bak`` made
    /healthz 500, and such folders were listed but could not be selected."""
    src, _ = small_root
    root = tmp_path / "root"
    shutil.copytree(src, root)
    shutil.copytree(root / "small", tmp_path / "outside")
    (root / "escape").symlink_to(tmp_path / "outside")
    shutil.copytree(root / "small", root / "small..bak")
    (root / "alias").symlink_to(root / "small")  # inside the root: an ordinary second name
    app = create_app(root)
    health = app.server.test_client().get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["runs"] == 2
    client = DashClient(app)
    sel = client.select(None, search="?run=alias")["selection"]["data"]
    assert sel["run"] == "alias"
    options = client.render(sel)["run-picker"]["options"]
    assert [o["value"] for o in options] == ["alias", "small"]
    for name in ("escape", "small..bak"):
        r = client.select(None, search=f"?run={name}")
        assert r["selection"]["data"]["run"] == "alias"  # the first listed run
        assert "does not exist" in str(r["notices"]["children"])


def test_huge_corrupted_prompt_and_ablation_list_stay_small(small_root):
    """Regression: a 3.5 MB corrupted prompt came back as a 7 MB response (and half a GB of
    cache); 400,000 bad ablation entries gave a 73.6 MB response, one notice per entry."""
    root, _ = small_root
    client = DashClient(create_app(root))
    huge = "sweet " * 600_000  # 3.6 MB
    r = client.select(None, search="?" + urlencode({"run": "small", "corrupt": huge}))
    assert client.last_status == 200 and client.last_bytes < 100_000, client.last_bytes
    sel = r["selection"]["data"]
    assert len(sel["corrupt"]) == 2000
    assert "corrupted prompt has 3,600,000 characters" in str(r["notices"]["children"])
    panels = client.render(sel)
    assert client.last_bytes < 400_000 and "patching" in panels
    forged = ",".join(f"X{i}" for i in range(400_000))
    r = client.select(None, search="?" + urlencode({"run": "small", "ablate": forged}))
    # the selection and every panel in one response (about 36 KB): no notice per entry
    assert client.last_status == 200 and client.last_bytes < 100_000, client.last_bytes
    notes = [n["props"]["children"] for n in r["notices"]["children"]]
    assert len(notes) == 1 and "399,996 entries beyond the model's 4 heads" in notes[0], notes
    assert r["selection"]["data"]["ablate"] == []


def test_timelines_over_more_steps_than_the_cache_read_each_checkpoint_once(
    small_root, tmp_path, monkeypatch
):
    """Regression: with more checkpoints than ``--cache-steps``, every new prompt's timeline
    evicted each step before its next use and read them all again (1.6-3.7 s at 1,501)."""
    from interp_app.core.analyzer import Analyzer
    from interp_app.core.store import RunStore
    from training import checkpoint as ckpt

    src, _ = small_root
    root = tmp_path / "root"
    run = root / "many"
    (run / ckpt.STEPS_DIR).mkdir(parents=True)
    shutil.copy(src / "small" / ckpt.RUN_FILE, run / ckpt.RUN_FILE)
    last = ckpt.step_dir(src / "small", 300)
    for i in range(40):
        shutil.copytree(last, ckpt.step_dir(run, i))
    analyzer = Analyzer(RunStore(root, param_cache=8))
    store = analyzer.store
    hot = store.params("many", 39)  # what the slider shows: must stay cached
    reads: list[int] = []
    real = ckpt.load_params
    monkeypatch.setattr(ckpt, "load_params", lambda r, s: reads.append(s) or real(r, s))
    info = store.info("many")
    chili = info.tokenizer.vocab.index("chili")
    for text in ("i like spicy so i like", "apple is so sweet", "lemon tastes sour"):
        prompt = analyzer.encode("many", text)
        steps, values, bad = analyzer.timeline("many", prompt, prompt.length - 1, chili)
        assert steps == list(range(40)) and not bad and values["dla"].shape[0] == 40
    assert sorted(reads) == list(range(39)), reads  # each once; step 39 came from the cache
    assert store.params("many", 39) is hot


def test_healthz_overtakes_queued_callbacks(small_root, tmp_path):
    """Regression: with every thread busy on a callback, /healthz queued behind twenty of
    them (11.5 s; the compose check gives up after 5 s). One worker computing one callback at
    a time: the health check must answer while most of the twenty are still waiting."""
    root, _ = small_root
    port = free_port()
    argv = [*app_command(root, port), "--threads", "1"]
    with serve(argv, port, timeout=120, log=tmp_path / "app.log") as url:
        client = DashClient(create_app(root), base_url=url)
        sel = client.select(None, search="?run=small")["selection"]["data"]
        words = ["apple", "chili", "lemon", "orange", "sweet", "spicy", "sour", "juicy"]
        done: list[float] = []

        def slow(i: int) -> None:
            own = DashClient(client.app, base_url=url)
            prompt = f"i like {words[i % 8]} so i like {words[(i // 8) % 8]} {words[i % 3]}"
            own.render({**sel, "prompt": prompt, "corrupt": prompt + " lemon"})
            done.append(time.monotonic())

        with ThreadPoolExecutor(20) as pool:
            futures = [pool.submit(slow, i) for i in range(20)]
            time.sleep(0.5)  # every callback accepted and queued
            health = requests.get(url + "/healthz", timeout=30)
            finished_before = len(done)
            for f in futures:
                f.result()
        assert health.status_code == 200
        assert finished_before < 10, f"/healthz waited for {finished_before} of 20 callbacks"


def test_bad_metrics_lines_are_one_notice_and_the_page_draws(small_root, tmp_path):
    """Regression: one bad line in metrics.jsonl (invalid UTF-8, ``{}``, ``5``, a string
    step) made every render a 500 and the page blank."""
    src, _ = small_root
    root = tmp_path / "root"
    shutil.copytree(src, root)
    log = root / "small" / "metrics.jsonl"
    good = log.read_bytes().splitlines(keepends=True)
    bad = [b"\xff\xfe not utf-8\n", b"{}\n", b"5\n", b'{"step": "x"}\n']
    log.write_bytes(b"".join([good[0], *bad, *good[1:]]))
    client = DashClient(create_app(root))
    sel = client.select(None, search="?run=small")["selection"]["data"]
    panels = client.render(sel)
    assert client.last_status == 200
    curve = panels["loss-curve"]["figure"]["data"]
    assert curve and len(curve[0]["x"]) > 0
    notes = [n["props"]["children"] for n in panels["notices"]["children"]]
    assert notes == ["metrics.jsonl: 4 bad lines skipped (first: line 2)"], notes


def test_partly_unreadable_runs_are_named_and_never_a_500(world_readable_root, tmp_path):
    """A run written by an older version and resumed by another user keeps owner-only parts:
    its run.json alone, or its metrics log and step folders. Neither may blank the page."""
    root = world_readable_root
    shutil.copytree(root / "small", root / "resumed")
    _unlock(root / "resumed")
    _lock(root / "theirs")
    (root / "theirs").chmod(0o755)  # the folder is open, its run.json is not
    for part in [root / "resumed" / "metrics.jsonl", *(root / "resumed" / "steps").iterdir()]:
        _lock(part)
    port = free_port()
    argv = _unprivileged(app_command(root, port))
    with serve(argv, port, timeout=120, log=tmp_path / "app.log") as url:
        health = requests.get(url + "/healthz", timeout=30).json()
        assert health["runs"] == 2, health  # 'theirs' is not listed: its run.json is closed
        problems = " ".join(health["problems"])
        assert "'theirs' cannot be read" in problems
        assert "'resumed': metrics.jsonl cannot be read" in problems
        assert "'resumed': its steps cannot be read" in problems
        client = DashClient(create_app(root), base_url=url)
        r = client.select(None, search="?run=resumed")
        assert client.last_status == 200
        sel = r["selection"]["data"]
        assert sel["run"] == "resumed"
        panels = client.render(sel)
        assert client.last_status == 200
        notes = str(panels["notices"]["children"])
        assert "cannot be read" in notes
        r = client.select(None, search="")  # the default run is unreadable: another one shows
        assert r["selection"]["data"]["run"] in ("resumed", "small")


def _train_again(root: Path, seed: int) -> None:
    """A short run named 'again', replacing any earlier one (``--overwrite``)."""
    tc = TrainConfig(steps=20, save_every=10, seed=seed)
    train(root, "again", ModelConfig(), tc, builtin_corpus(), progress=False, overwrite=True)


def test_a_run_trained_again_under_its_name_is_never_served_from_caches(tmp_path):
    """Review finding: after ``--overwrite`` the caches keyed by run name served the old
    parameters. Every cache is keyed by the run's generation (run.json's change time)."""
    from interp_app.core.analyzer import Analyzer
    from interp_app.core.selection import Selection
    from interp_app.core.store import RunStore
    from interp_app.core.view import compute_view

    _train_again(tmp_path, 0)
    store = Analyzer(RunStore(tmp_path, param_cache=2))
    sel = Selection("again", 20, "i like spicy so i like", 5, "chili", 1, 0)
    info = store.store.info("again")
    prompt = store.encode("again", sel.prompt)
    chili = info.tokenizer.vocab.index("chili")
    old_view = compute_view(store, sel)
    old_timeline = store.timeline("again", prompt, 5, chili)
    time.sleep(0.01)
    _train_again(tmp_path, 1)
    fresh = Analyzer(RunStore(tmp_path))
    new_view = compute_view(store, sel)
    assert new_view.logit == compute_view(fresh, sel).logit != old_view.logit
    other = store.encode("again", "apple is so sweet")
    got = store.timeline("again", other, 3, chili)[1]["dla"]
    np.testing.assert_array_equal(got, fresh.timeline("again", other, 3, chili)[1]["dla"])
    assert not np.array_equal(
        store.timeline("again", prompt, 5, chili)[1]["dla"], old_timeline[1]["dla"]
    )
