"""The team deployment's background jobs for real: a Redis server, Celery workers started as
``celery -A interp_app.worker worker`` (the compose ``worker`` service's command), and the
app's background callback driven through Dash's HTTP protocol. A worker killed mid-job
never leaves the page hanging: the job runs again and finishes, skipping the steps the lost
worker had already stored."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest
import redis

from interp_app.core.analyzer import Analyzer
from interp_app.core.jobs import patch_query
from interp_app.core.selection import Selection
from interp_app.core.store import RunStore
from interp_app.server.app import create_app
from interp_app.server.background import JobSettings
from interp_app.ui.job_kinds import request_query
from tests.background_client import BackgroundClient
from tests.browser import free_port
from tests.dash_client import DashClient
from tests.external_runs import write_run
from tests.test_deploy import COMPOSE, interpolate
from training import checkpoint as ckpt
from training.model.config import ModelConfig
from training.model.gpt import init_params
from training.model.params import flat_params

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# Big enough that one step of a timeline takes a visible moment (16 heads ablated in turn).
CONFIG = ModelConfig(vocab_size=300, n_layers=4, n_heads=4, d_model=128, d_mlp=512, context=64)
STEPS = tuple(range(0, 400, 10))  # 40 checkpoints, one per part: 40 progress reports
PATCH_PARTS = 10  # patching at one step: 5 layer boundaries x 2 blocks of 32 positions
FINISHED = {"patching": [PATCH_PARTS, PATCH_PARTS], "timeline": [len(STEPS), len(STEPS)]}
PROMPT = "the cat sat on the mat and the dog sat on the log"


def write_big_run(root: Path) -> None:
    """A run of random weights (one initialisation, scaled differently at each step)."""
    run = write_run(root, "mid", "bytes", CONFIG, prompt=PROMPT, corrupt=PROMPT[::-1])
    base = {k: np.asarray(v) for k, v in flat_params(init_params(CONFIG, seed=0)[1]).items()}
    for i, step in enumerate(STEPS):
        if (ckpt.step_dir(run, step)).exists():
            continue
        params = {k: v * (1.0 + 0.05 * i) for k, v in base.items()}
        ckpt.save_step(run, step, params, {"step": step, "valid_loss": None})


@pytest.fixture(scope="module")
def big_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("celery-root")
    write_big_run(root)
    return root


@contextmanager
def redis_server(folder: Path):
    if not os.path.exists(REDIS_SERVER):
        advice = "no redis-server: install it with `apt-get install redis-server`"
        if os.environ.get("CI") == "true":
            pytest.fail(advice)
        pytest.skip(advice)
    port = free_port()
    argv = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(folder)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0", client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def start_worker(root: Path, url: str, log: Path, visibility: int = 3600) -> subprocess.Popen:
    """The compose ``worker`` service's command (one pool process) and environment."""
    env = {
        **os.environ,
        "INTERP_ROOT": str(root),
        "INTERP_REDIS_URL": url,
        "INTERP_JOB_VISIBILITY": str(visibility),
    }
    argv = [interpolate(part, {}) for part in COMPOSE["services"]["worker"]["command"]]
    argv[0] = str(Path(sys.executable).parent / argv[0])  # the compose command, this venv's
    with open(log, "a") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True
        )


def wait_ready(log: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while "ready." not in log.read_text():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stored_steps(client: redis.Redis) -> int:
    return sum(1 for _ in client.scan_iter("interp:timeline:*"))


def wait_for_steps(client: redis.Redis, at_least: int, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while (n := stored_steps(client)) < at_least:
        assert time.monotonic() < deadline, f"only {n} steps stored"
        time.sleep(0.02)
    return n


def expected_timeline(root: Path, request: dict):
    analyzer = Analyzer(RunStore(root))
    query, _ = request_query(analyzer, request)
    assert query is not None
    return analyzer.timeline(
        query.run, query.prompt, query.pos, query.target, query.src, query.ablate, query.mode
    )


def page(root: Path, url: str, visibility: int = 3600):
    """The app (in process, as a gunicorn worker would run it) and the job's request."""
    settings = JobSettings(redis_url=url, sync_work=0, part_steps=1, visibility=visibility)
    app = create_app(root, jobs=settings)
    client = DashClient(app)
    out = client.select(None, search="?run=mid")
    request = out["job-request"]["data"]
    assert request["kinds"] == ["patching", "timeline"]
    assert request["parts"] == {"patching": [0, PATCH_PARTS], "timeline": [0, len(STEPS)]}
    for panel in ("head-timeline", "patching"):
        placeholder = out[panel]["figure"]["layout"]["annotations"][0]["text"]
        assert "in the background" in placeholder
    return app, client, out, request


def test_a_job_whose_worker_process_is_killed_runs_again_and_finishes(big_root, tmp_path):
    """SIGKILL the pool process computing the job: Celery requeues it (``acks_late``,
    ``reject_on_worker_lost``), a new pool process finishes it from the stored steps, and
    the page gets the finished timeline, equal to the one computed in one go."""
    log = tmp_path / "worker.log"
    with redis_server(tmp_path) as (url, client):
        worker = start_worker(big_root, url, log)
        try:
            wait_ready(log, worker)
            app, dash, out, request = page(big_root, url)
            jobs = BackgroundClient(dash)
            body = jobs.body("job-done.data", {"job-request.data": request}, ["job-request.data"])
            handles = jobs.start(body)
            before = wait_for_steps(client, 1)
            pool = psutil.Process(worker.pid).children()
            assert len(pool) == 1
            pool[0].kill()  # the process running the job, mid-job
            assert before < len(STEPS)
            deadline = time.monotonic() + 300
            response = None
            while response is None:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                _, response = jobs.poll(body, handles)
                time.sleep(0.3)
            done = response["job-done"]["data"]
            assert (done["state"], done["parts"]) == ("finished", FINISHED)
            assert stored_steps(client) == len(STEPS)
            assert sum(1 for _ in client.scan_iter("interp:patching:*")) == PATCH_PARTS + 1
        finally:
            stop(worker)
        text = log.read_text()
        assert "WorkerLostError" in text or "exited prematurely" in text
        assert text.count(" received") == 2  # once, then again after the loss

        # the page draws the finished timeline from Redis, as computed in one go
        tick = {"job-progress.data": done}  # the last progress: the finished job
        states = {
            "selection.data": out["selection"]["data"],
            "rendered.data": out["rendered"]["data"],
            "job-request.data": request,
        }
        drawn = dash.call(redraw_output(app), tick, ["job-progress.data"], states)
        assert set(drawn) == {"head-timeline", "prediction-timeline", "patching"}
        heat = drawn["head-timeline"]["figure"]["data"][0]
        assert len(heat["x"]) == len(STEPS)
        steps, values, bad = app.server.config["ANALYZER"].timeline(*_query_args(app, request))
        want_steps, want, want_bad = expected_timeline(big_root, request)
        assert steps == want_steps == list(STEPS) and bad == want_bad == []
        for name, array in want.items():
            scale = float(np.abs(array).max()) or 1.0
            np.testing.assert_allclose(values[name], array, rtol=1e-4, atol=1e-5 * scale)

        # the patching panel, drawn from the parts a worker stored, is the one-shot patching
        assert_one_shot_patching(drawn["patching"]["figure"], big_root, out["selection"]["data"])


def redraw_output(app) -> str:
    """The first output of the callback that redraws a job's panels as its parts arrive."""
    key = next(k for k in app.callback_map if "head-timeline.figure@" in k)
    return key.strip(".").split("...")[0]


def assert_one_shot_patching(figure: dict, root: Path, selection: dict) -> None:
    """The panel's heatmaps are ``causal.patching`` in one call (what the page computes in
    the request for a small model) for the selection's prompts, to float tolerance."""
    assert "(computing:" not in figure["layout"]["title"]["text"]  # complete
    analyzer = Analyzer(RunStore(root))
    sel = Selection.from_dict(selection)
    query = patch_query(analyzer, sel)
    assert not isinstance(query, str)
    want = analyzer.patching(
        sel.run, sel.step, query.clean, query.corrupt, sel.pos, query.target, None
    )
    # as in test_background: a few times float32's error on a logit difference, over the gap
    tol = 5e-6 * float(want["logit_scale"]) / abs(float(want["clean"] - want["corrupt"]))
    heads, resid = figure["data"][:2]
    np.testing.assert_allclose(z(heads), want["heads"], rtol=0, atol=tol)
    np.testing.assert_allclose(z(resid), want["resid"], rtol=0, atol=tol)


def z(trace: dict) -> np.ndarray:
    """A heatmap's values as the browser gets them (a list, or Plotly's typed array)."""
    values = trace["z"]
    if isinstance(values, dict):  # {"dtype", "bdata", "shape"}
        import base64

        flat = np.frombuffer(base64.b64decode(values["bdata"]), values["dtype"])
        return flat.reshape([int(n) for n in str(values["shape"]).split(",")])
    return np.asarray(values, dtype=float)


def _query_args(app, request: dict) -> tuple:
    query, _ = request_query(app.server.config["ANALYZER"], request)
    assert query is not None
    return (query.run, query.prompt, query.pos, query.target, query.src, query.ablate, query.mode)


def test_a_job_whose_whole_worker_dies_runs_on_another_worker(big_root, tmp_path):
    """SIGKILL a worker container's every process mid-job: the job's message, never
    acknowledged, goes back to the queue once its visibility timeout passes (here 5 s, an
    hour by default) and the next worker finishes it; the page keeps polling meanwhile
    and gets the finished timeline."""
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    with redis_server(tmp_path) as (url, client):
        first = start_worker(big_root, url, first_log, visibility=5)
        second = None
        try:
            wait_ready(first_log, first)
            _, dash, _, request = page(big_root, url, visibility=5)
            jobs = BackgroundClient(dash)
            body = jobs.body("job-done.data", {"job-request.data": request}, ["job-request.data"])
            handles = jobs.start(body)
            before = wait_for_steps(client, 1)
            os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool, as a container dies
            first.wait(timeout=30)
            assert before < len(STEPS)
            progress, response = jobs.poll(body, handles)
            assert response is None  # still "running" for the page: queued again
            second = start_worker(big_root, url, second_log, visibility=5)
            deadline = time.monotonic() + 300
            while response is None:
                assert time.monotonic() < deadline, second_log.read_text()[-3000:]
                progress, response = jobs.poll(body, handles)
                time.sleep(0.3)
            done = response["job-done"]["data"]
            assert (done["state"], done["parts"]) == ("finished", FINISHED)
            assert stored_steps(client) == len(STEPS)
            assert " received" in second_log.read_text()
        finally:
            for worker in (first, second):
                if worker is not None:
                    stop(worker)
