"""A shared server's defences: authentication on every route, bad input through the callback
endpoint itself, and damaged or changing checkpoint folders."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sys
from urllib.parse import quote, urlencode

import pytest

from interp_app.server.app import create_app
from interp_app.server.auth import UsersFileError, hash_line, passwd_main, read_users
from tests.dash_client import DashClient

USER, PASSWORD = "alice", "correct horse battery"


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture(scope="module")
def locked(small_root):
    root, _ = small_root
    user, hashed = hash_line(USER, PASSWORD).split(":", 1)
    return create_app(root, users={user: hashed})


def _routes(app) -> list[tuple[str, str]]:
    """Every kind of route: page, layout, dependencies, callback, asset, component suites."""
    page = app.server.test_client().get("/", headers=_basic(USER, PASSWORD)).text
    suites = re.findall(r'src="(/_dash-component-suites/[^"]+)"', page)
    assert suites, page[:500]
    return [
        ("GET", "/"),
        ("GET", "/_dash-layout"),
        ("GET", "/_dash-dependencies"),
        ("POST", "/_dash-update-component"),
        ("GET", "/assets/00-bootstrap.min.css"),
        ("GET", suites[0]),
    ]


def test_every_route_needs_the_configured_user(locked):
    client = locked.server.test_client()
    for method, path in _routes(locked):
        anonymous = client.open(path, method=method)
        assert anonymous.status_code == 401, (path, anonymous.status_code)
        assert "Basic" in anonymous.headers.get("WWW-Authenticate", "")
        wrong = client.open(path, method=method, headers=_basic(USER, "not the password"))
        assert wrong.status_code == 401, path
        stranger = client.open(path, method=method, headers=_basic("mallory", PASSWORD))
        assert stranger.status_code == 401, path
        if method == "GET":
            ok = client.open(path, method=method, headers=_basic(USER, PASSWORD))
            assert ok.status_code == 200, path


def test_the_configured_user_gets_through_a_callback(locked):
    client = DashClient(locked)
    client.client.environ_base["HTTP_AUTHORIZATION"] = _basic(USER, PASSWORD)["Authorization"]
    sel = client.select(None, search="?run=small")["selection"]["data"]
    assert sel["run"] == "small"


def test_healthz_tells_strangers_only_ok(locked):
    client = locked.server.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    detail = client.get("/healthz", headers=_basic(USER, PASSWORD)).get_json()
    assert detail["runs"] == 1 and detail["steps"] > 1


def test_users_file_holds_hashes_only(tmp_path, monkeypatch):
    users = tmp_path / "users"
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert passwd_main([str(users), USER]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("another password\n"))
    assert passwd_main([str(users), "bob"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("a new password\n"))
    assert passwd_main([str(users), USER]) == 0  # replaces, does not duplicate
    text = users.read_text()
    assert PASSWORD not in text and "password" not in text.replace("pbkdf2", "")
    assert sorted(read_users(users)) == ["alice", "bob"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert passwd_main([str(users), "carol"]) == 2
    plain = tmp_path / "plain"
    plain.write_text("alice:hunter2hunter2\n")
    with pytest.raises(UsersFileError, match="hashed"):
        read_users(plain)
    with pytest.raises(UsersFileError, match="cannot read"):
        read_users(tmp_path / "missing")


# --- bad input through the callback endpoint ---------------------------------------------


@pytest.fixture(scope="module")
def sandbox(small_root, tmp_path_factory):
    """A checkpoint root, and beside it (outside the root) a canary run that must stay unread."""
    src, _ = small_root
    base = tmp_path_factory.mktemp("sandbox")
    root = base / "root"
    shutil.copytree(src, root)
    shutil.copytree(root / "small", base / "canary")
    (base / "secret.txt").write_text("canary secret")
    return root, base


@pytest.fixture
def opened_outside(sandbox):
    """Records every file-system access (audit events) that lands outside the root."""
    root, base = sandbox
    seen: list[str] = []
    active = [True]
    outside = (str(base / "canary"), str(base / "secret.txt"))

    def hook(event: str, args: tuple) -> None:
        if active[0] and event in ("open", "os.listdir", "os.scandir", "os.stat"):
            path = str(args[0]) if args else ""
            if path.startswith(outside):
                seen.append(f"{event} {path}")

    sys.addaudithook(hook)  # hooks cannot be removed: this one switches itself off
    yield seen
    active[0] = False


@pytest.fixture(scope="module")
def guarded(sandbox):
    root, _ = sandbox
    return DashClient(create_app(root))


def _notes(response) -> str:
    return str(response.get("notices", {}).get("children", ""))


def test_malformed_requests_get_a_4xx_and_the_worker_keeps_serving(guarded):
    client = guarded.client
    cases = [
        client.post("/_dash-update-component", data="{not json", content_type="application/json"),
        client.post("/_dash-update-component", data="[1, 2]", content_type="application/json"),
        client.post("/_dash-update-component", json={"output": "nope.data", "inputs": []}),
        client.post("/_dash-update-component", json={"output": 7}),
        client.post("/_dash-update-component", data=b"\x00\xff" * 10, content_type="text/plain"),
        client.post("/_dash-update-component", data=b"x" * (5 * 1024 * 1024)),
    ]
    for resp in cases:
        assert 400 <= resp.status_code < 500, (resp.status_code, resp.data[:200])
    assert guarded.select(None, search="?run=small")["selection"]["data"]["run"] == "small"


def _outside_names(base) -> list[str]:
    return [
        "../canary",
        "..",
        "../../etc",
        str(base / "canary"),
        "/etc/passwd",
        "small\x00../canary",
        "canary",
        "small/../../canary",
    ]


def test_runs_outside_the_root_are_never_read(guarded, sandbox, opened_outside):
    _, base = sandbox
    (base / "secret.txt").read_text()  # the hook does see a read outside the root
    assert opened_outside and "secret.txt" in opened_outside[0]
    opened_outside.clear()
    for name in _outside_names(base):
        r = guarded.select(None, search=f"?run={quote(name)}")
        assert r["selection"]["data"]["run"] == "small", name
        assert "does not exist" in _notes(r), name
        picked = guarded.select("run-picker.value", name, current=r["selection"]["data"])
        assert picked["selection"]["data"]["run"] == "small", name
        assert "does not exist" in _notes(picked), name
        forged = guarded.render({**r["selection"]["data"], "run": name})
        assert "does not exist" in _notes(forged), name
        assert "canary secret" not in json.dumps(forged)
    assert opened_outside == []


@pytest.mark.parametrize(
    "field, value, note",
    [
        ("step", "999999", "does not exist"),
        ("step", "-1", "does not exist"),
        ("step", "1e9", "not a number"),
        ("head", "L0H7", "does not exist"),
        ("head", "L9H0", "does not exist"),
        ("head", "L-1H0", "does not exist"),
        ("pos", "99", "position"),
        ("prompt", "i like \x00 durian", "UNKNOWN"),
        ("target", "../../etc/passwd", "not in the vocabulary"),
        ("ablate", "L0H9,../x", "cannot ablate"),
    ],
)
def test_bad_values_fall_back_with_a_notice(guarded, field, value, note):
    r = guarded.select(None, search="?" + urlencode({"run": "small", field: value}))
    sel = r["selection"]["data"]
    assert sel["run"] == "small"
    assert note in _notes(r), _notes(r)
    rendered = guarded.render(sel)  # and the fallback renders
    assert "figure" in rendered["attention-pattern"]


def test_forged_selection_data_is_resolved_again(guarded):
    sel = guarded.select(None, search="?run=small")["selection"]["data"]
    for forged in (
        {**sel, "step": 123456},
        {**sel, "layer": 9, "head": -3},
        {**sel, "pos": 10**9},
        {**sel, "ablate": ["L7H7"]},
        {"bogus": True},
        {**sel, "step": "a string"},
    ):
        r = guarded.render(forged)
        assert _notes(r), forged
        assert "figure" in r["attention-pattern"], forged
    assert not _notes(guarded.render(sel))  # a selection the server wrote: no notice


def test_megabyte_prompt_is_cut_with_a_notice(guarded):
    huge = "i like spicy " * (1024 * 1024 // 13)
    start = guarded.select(None, search="?run=small")["selection"]["data"]
    r = guarded.select("prompt-input.value", huge, current=start, search="?run=small")
    sel = r["selection"]["data"]
    assert len(sel["prompt"]) <= 2000
    assert "characters" in _notes(r)
    # one round trip: the new selection and every panel drawn for it (about 50 KB), never the
    # megabyte echoed back (3.6 MB before the cap)
    assert guarded.last_bytes < 100_000
    assert guarded.render(sel)["attention-pattern"]["figure"]


# --- damaged and changing checkpoint folders ---------------------------------------------


def test_damaged_steps_are_named_and_the_rest_still_serve(small_root, tmp_path):
    src, _ = small_root
    shutil.copytree(src / "small", tmp_path / "small")
    steps = tmp_path / "small" / "steps"
    data = (steps / "step-000000100" / "params.safetensors").read_bytes()
    (steps / "step-000000100" / "params.safetensors").write_bytes(data[: len(data) // 2])
    (steps / "step-000000150" / "params.safetensors").write_bytes(b"\x00" * len(data))
    (steps / "step-000000200" / "step.json").write_text("{torn")
    client = DashClient(create_app(tmp_path))
    sel = client.select(None, search="?run=small&step=250")["selection"]["data"]
    ok = client.render(sel)
    assert ok["attention-pattern"]["figure"]["data"]
    for step in (100, 150):
        r = client.render({**sel, "step": step})
        assert f"step {step} is unreadable" in _notes(r), _notes(r)
    marks = str(client.render(sel)["step-slider"]["marks"])
    assert "⚠100" in marks and "⚠150" in marks
    r = client.render({**sel, "step": 200})  # the sidecar is not needed to draw the step
    assert r["attention-pattern"]["figure"]["data"]


def test_step_deleted_while_shown_and_half_written_run(small_root, tmp_path):
    src, _ = small_root
    shutil.copytree(src / "small", tmp_path / "small")
    client = DashClient(create_app(tmp_path, param_cache=1))
    sel = client.select(None, search="?run=small&step=250")["selection"]["data"]
    assert client.render(sel)["attention-pattern"]["figure"]["data"]
    shutil.rmtree(tmp_path / "small" / "steps" / "step-000000250")
    client.render({**sel, "step": 300})  # pushes 250 out of the one-step cache
    r = client.render(sel)
    assert "250" in _notes(r), _notes(r)
    again = client.select(None, search="?run=small&step=250")
    assert "does not exist" in _notes(again)
    # a run folder being written by another process: no run.json yet, then a torn one
    half = tmp_path / "half"
    shutil.copytree(src / "small" / "steps", half / "steps")
    r = client.select(None, search="?run=half")
    assert r["selection"]["data"]["run"] == "small" and "does not exist" in _notes(r)
    (half / "run.json").write_text('{"model": {"n_lay')
    r = client.select(None, search="?run=half")
    assert "half" in _notes(r), _notes(r)
    assert client.select(None, search="?run=small&step=300")["selection"]["data"]["step"] == 300
    assert client.client.get("/healthz").status_code == 200


def test_forged_control_values_never_break_a_callback(guarded):
    """Every other input of every server callback, forged: a 200 with a usable answer."""
    sel = guarded.select(None, search="?run=small")["selection"]["data"]
    for metric, src in (("bogus", 0), (None, "x"), ("dla", -5), (["dla"], {"a": 1})):
        r = guarded.call(
            "run-picker.options",
            {
                "selection.data": sel,
                "metric-picker.value": metric,
                "source-picker.value": src,
                "compare-step.value": "abc",
                "multiples-mode.value": 7,
            },
            ["metric-picker.value"],
            {"rendered.data": None},
        )
        assert r["attention-pattern"]["figure"]["data"]
    for threshold, shown in (("high", []), (-3, {"key": 1}), (None, "x"), (7, {"base": "y"})):
        r = guarded.call(
            "forward-3d.figure",
            {"selection-3d.data": sel, "attention-threshold.value": threshold},
            ["attention-threshold.value"],
            {"forward-key.data": shown},
        )
        assert "forward-3d" in r
    for which in (["fruits"], None, "vegetables", 3):
        r = guarded.call(
            "embedding-stacks.figure",
            {"selection-3d.data": sel, "embedding-set.value": which},
            ["embedding-set.value"],
            {"embedding-key.data": {"bogus": 1}},
        )
        assert "embedding-stacks" in r
    name = f"forward-small-step{sel['step']}-L1H0.html"  # the default view's
    for n_clicks, threshold, data, exported in (
        (1, "x", sel, name),  # a forged threshold: the default threshold
        ("many", 0.5, sel, name),  # any truthy click count is a click
        (1, 0.5, {"run": "../x", "step": -1}, name),  # a forged selection: resolved again
        (0, 0.5, sel, None),  # not clicked: no download
        (None, {"a": 1}, sel, None),
    ):
        r = guarded.call(
            "export-3d-file.data",
            {"export-3d.n_clicks": n_clicks},
            ["export-3d.n_clicks"],
            {"selection.data": data, "attention-threshold.value": threshold},
        )
        if exported is None:
            assert r == {}, (n_clicks, r)  # no output is updated
        else:
            file = r["export-3d-file"]["data"]
            assert file["filename"] == exported, (n_clicks, threshold, data)
            assert file["content"].startswith("<!doctype html>") and "mesh3d" in file["content"]
    for hover, data in (({"points": [{"customdata": "L9H9"}]}, sel), ("x", {"run": "../x"})):
        r = guarded.call(
            "head-sparkline.figure",
            {"head-multiples.hoverData": hover, "selection.data": data, "metric-picker.value": 1},
            ["head-multiples.hoverData"],
            {"source-picker.value": "x"},
        )
        assert "head-sparkline" in r
