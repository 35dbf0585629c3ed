"""Background timelines in process: the cheap path stays in the request, the job fills the
shared cache part by part, the app draws whatever is there, and a request from the
browser is checked like any other input."""

from __future__ import annotations

import io

import diskcache
import numpy as np
import pytest

from interp_app.core.analyzer import Analyzer
from interp_app.core.causal import patch_parts
from interp_app.core.jobs import (
    JobAnalyzer,
    Query,
    fill_patching,
    fill_timeline,
    patch_key,
    patch_query,
    step_key,
)
from interp_app.core.results import DiskResults, decode, encode
from interp_app.core.store import RunStore
from interp_app.core.view import resolve
from interp_app.server.background import JobSettings
from interp_app.ui.job_kinds import job_request, query_of, request_query
from interp_app.ui.jobs import job_status


@pytest.fixture
def results(tmp_path):
    return DiskResults(diskcache.Cache(str(tmp_path / "jobs")))


def _sel(analyzer):
    sel, _ = resolve(analyzer, {"run": "small", "prompt": "i like spicy so i like"})
    assert sel is not None
    return sel


def _parts(analyzer, sel) -> dict:
    """The kinds of background work a selection's job request names: (done, total) each."""
    return (job_request(analyzer, sel, 0) or {"parts": {}})["parts"]


def _timeline(analyzer, q: Query):
    return analyzer.timeline(q.run, q.prompt, q.pos, q.target, q.src, q.ablate, q.mode)


def test_a_cheap_timeline_is_computed_in_the_request(small_root, results):
    """The default model's timeline is far under the work bound: no job, no request."""
    root, _ = small_root
    analyzer = JobAnalyzer(RunStore(root), results)
    sel = _sel(analyzer)
    query = query_of(analyzer, sel, 0)
    assert not analyzer.in_background(query)
    steps, values, _ = _timeline(analyzer, query)
    plain_steps, plain, _ = _timeline(Analyzer(RunStore(root)), query)
    assert steps == plain_steps == analyzer.store.steps("small")
    np.testing.assert_array_equal(values["dla"], plain["dla"])
    assert job_request(analyzer, sel, 0) is None
    assert results.get_many([step_key(analyzer.store.generation("small"), query, 0)]) == [None]


def test_the_job_fills_what_is_missing_and_the_app_draws_what_is_there(small_root, results):
    root, _ = small_root
    app = JobAnalyzer(RunStore(root), results, sync_work=0)  # everything in the background
    sel = _sel(app)
    query = query_of(app, sel, 0)
    assert _timeline(app, query) == ([], {}, [])  # nothing computed, nothing computed here
    request = job_request(app, sel, 0)
    every = app.store.steps("small")
    n = len(every)
    assert request is not None and request["parts"]["timeline"] == [0, n]

    job = Analyzer(RunStore(root, param_cache=2))
    job_query, problem = request_query(job, request)
    assert problem == "" and job_query == query
    reports: list[tuple[int, int]] = []
    assert fill_timeline(job, results, job_query, lambda d, t: reports.append((d, t)), 64)
    assert reports == [(0, n), (n, n)]
    steps, values, bad = _timeline(app, query)
    want_steps, want, _ = _timeline(Analyzer(RunStore(root)), query)
    assert steps == want_steps and bad == []
    for name in want:
        np.testing.assert_allclose(values[name], want[name], rtol=1e-5, atol=1e-6)
    assert _parts(app, sel).get("timeline") is None  # complete: no more timeline job

    # three steps lost from the cache: the app shows the others, the job computes three
    generation = app.store.generation("small")
    lost = every[1], every[5], every[-1]
    for step in lost:
        results.cache.delete(step_key(generation, query, step))
    app._steps.clear()
    steps, values, _ = _timeline(app, query)
    assert steps == [s for s in every if s not in lost] and values["dla"].shape[0] == n - 3
    assert _parts(app, sel)["timeline"] == [n - 3, n]
    reports.clear()
    fill_timeline(job, results, job_query, lambda d, t: reports.append((d, t)), 64)
    assert reports == [(n - 3, n), (n, n)]
    assert _timeline(app, query)[0] == want_steps


def test_patching_in_parts_equals_the_one_shot_patching(small_root, results):
    """Over the work bound (here 0), the panel's patching is read from the shared cache,
    where a job puts it a layer at a time; assembled, it is ``causal.patching``'s result.
    A lost part is the only one computed again; the article's size stays in the request."""
    root, _ = small_root
    app = JobAnalyzer(RunStore(root), results, sync_work=0)
    sel, _ = resolve(app, {"run": "small", "prompt": "i like spicy so i like"})
    assert sel is not None
    sel = sel.with_(corrupt="i like sweet so i like")
    query = patch_query(app, sel)
    assert not isinstance(query, str)
    model = app.store.info("small").model
    layers = len(patch_parts(model.n_layers, len(query.clean.padded)))  # one a layer here
    assert app.cached_patching(query) is None and app.patching_progress(query) == (0, layers)
    assert job_request(app, sel, 0)["parts"]["patching"] == [0, layers]

    job = Analyzer(RunStore(root, param_cache=2))
    reports: list[tuple[int, int]] = []
    assert fill_patching(job, results, query, lambda d, t: reports.append((d, t))) == (
        layers,
        layers,
    )
    assert reports == [(i, layers) for i in range(layers + 1)]
    got = app.cached_patching(query)
    want = Analyzer(RunStore(root)).patching(
        sel.run, sel.step, query.clean, query.corrupt, sel.pos, query.target, None
    )
    assert got is not None and (got["done"], got["total"]) == (layers, layers)
    assert got["answer"] == want["answer"] and got["normalised"] == bool(want["normalised"])
    for name in ("clean", "corrupt", "logit_scale"):
        assert got[name] == pytest.approx(float(want[name]), rel=1e-6)
    # float32's error on a logit difference (~2e-7 of the logit scale, see PATCH_MIN_GAP;
    # a few times that through the layers, in two orders of summation), divided by the
    # gap the values are normalised by
    tol = 5e-6 * got["logit_scale"] / abs(got["clean"] - got["corrupt"])
    np.testing.assert_allclose(got["heads"], want["heads"], rtol=0, atol=tol)
    np.testing.assert_allclose(got["resid"], want["resid"], rtol=0, atol=tol)
    assert app.patching_progress(query) is None and "patching" not in _parts(app, sel)

    # a lost part: the others are shown, its row is blank (NaN), the job computes only it
    results.cache.delete(patch_key(app.store.generation("small"), query, (1, 0)))
    app._steps.clear()
    partial = app.cached_patching(query)
    assert partial is not None and partial["done"] == layers - 1
    assert np.isnan(partial["heads"][1]).all() and np.isnan(partial["resid"][1]).all()
    np.testing.assert_array_equal(partial["heads"][0], got["heads"][0])
    reports.clear()
    fill_patching(job, results, query, lambda d, t: reports.append((d, t)))
    assert reports == [(layers - 1, layers), (layers, layers)]

    # the article's size: computed in the request, as before
    sync = JobAnalyzer(RunStore(root), results)
    assert not sync.patch_in_background("small", len(query.clean.padded))
    assert sync.patching_progress(query) is None


def test_a_big_model_is_computed_one_step_per_part():
    """Parts are bounded in bytes as the store's chunks are: a GPT-2-small-shaped step
    (~0.5 GB) is a part of its own, so its timeline shows each step as it is done."""
    from interp_app.core.jobs import part_size
    from training.model.config import ModelConfig

    gpt2 = ModelConfig(vocab_size=50257, n_layers=12, n_heads=12, d_model=768, d_mlp=3072)
    assert part_size(gpt2) == 1
    assert part_size(ModelConfig()) == 8 and part_size(ModelConfig(), cap=64) == 64


def test_stored_results_are_data_never_code():
    arrays = {"dla": np.arange(6, dtype=np.float32).reshape(2, 3)}
    back = decode(encode(arrays))
    np.testing.assert_array_equal(back["dla"], arrays["dla"])
    buffer = io.BytesIO()
    np.savez(buffer, evil=np.array([object()], dtype=object))
    with pytest.raises(ValueError):
        decode(buffer.getvalue())


def test_a_forged_request_is_checked_like_any_input(small_root):
    root, _ = small_root
    analyzer = Analyzer(RunStore(root))
    assert request_query(analyzer, "not a dict") == (None, "nothing to compute")
    forged = {"run": "../../etc", "prompt": 5, "pos": 999, "src": -3, "ablate": "L9H9"}
    query, problem = request_query(analyzer, forged)
    assert problem == "" and query is not None
    assert query.run == "small" and query.src == 0 and query.ablate == ()
    assert 0 <= query.pos < query.prompt.length


def test_the_status_line_says_what_happened():
    request = {"key": "k", "run": "r", "prompt": "p", "parts": {"timeline": [2, 10]}}
    running = {"key": "k", "parts": {"timeline": [6, 10]}, "state": "running"}
    text, resume = job_status("job-progress", True, running, request)
    assert text.startswith("Computing the timelines over training") and "6 of 10 steps" in text
    assert resume == {"display": "none"}
    done = {"key": "k", "state": "finished", "parts": {"timeline": [10, 10]}, "seconds": 3.5}
    assert job_status("job-running", False, done, request)[0] == (
        "Computed the timelines over training (10 of 10 steps) in 3.5 s."
    )
    text, resume = job_status("job-cancel", True, running, request)
    assert "stopped after 6 of 10 steps (cancelled)" in text and resume == {}
    text, _ = job_status("job-running", False, running, request)
    assert "worker was lost" in text
    other = {**done, "key": "another query"}
    assert "2 of 10" in job_status("job-running", True, other, request)[0]
    assert job_status(None, False, None, None) == ("", {"display": "none"})
    both = {"patching": [52, 52], "timeline": [0, 10]}
    text, _ = job_status("job-progress", True, {**running, "parts": both}, request)
    assert text.startswith(
        "Computing activation patching at this step and the timelines over training"
    )
    assert "52 of 52 layer parts; 0 of 10 steps so far" in text


def test_job_settings_from_the_environment():
    s = JobSettings.from_env({"INTERP_SYNC_WORK": "0", "INTERP_JOB_CACHE": "/x"})
    assert (s.sync_work, s.results_spec, s.redis_url) == (0.0, "disk:/x", "")
    s = JobSettings.from_env({"INTERP_REDIS_URL": "redis://r:6379/0"})
    assert s.results_spec == "redis://r:6379/0"
    for bad in ({"INTERP_SYNC_WORK": "lots"}, {"INTERP_JOB_PART_STEPS": "0"}):
        with pytest.raises(ValueError, match="INTERP_"):
            JobSettings.from_env(bad)


def test_an_unreachable_redis_finds_nothing_instead_of_failing_the_page():
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from interp_app.core.results import RedisResults

    client = redis.Redis(port=1, socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 0))
    results = RedisResults(client)
    assert results.get_many(["timeline:a", "timeline:b"]) == [None, None]
    with pytest.raises(redis.ConnectionError):  # a job that cannot store says so
        results.put("timeline:a", b"x")


def test_a_request_with_nothing_to_compute_starts_no_process(small_root, tmp_path):
    """Forged requests and requests for cheap timelines end at once: a client cannot fill
    the machine with job processes (the hardening fuzz test sends hundreds)."""
    import psutil

    from interp_app.server.app import create_app
    from tests.background_client import BackgroundClient
    from tests.dash_client import DashClient

    root, _ = small_root
    app = create_app(root, jobs=JobSettings(cache_dir=str(tmp_path / "jobs")))
    jobs = BackgroundClient(DashClient(app))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    sel = _sel(app.server.config["ANALYZER"])
    cheap = {"key": "k", "run": sel.run, "prompt": sel.prompt, "pos": sel.pos}
    for request in (cheap, {"run": "../../etc", "pos": "x"}, "forged", None, [1, 2]):
        body = jobs.body("job-done.data", {"job-request.data": request}, ["job-request.data"])
        handles = jobs.start(body)
        assert jobs.poll(body, handles) == (None, {})  # over: nothing to update
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before


ORPHAN_PARENT = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from multiprocess import get_context
from interp_app.server.background import orphan_safe

if __name__ == "__main__":
    job = get_context("spawn").Process(target=orphan_safe, args=(os.getpid(), time.sleep, 120))
    job.start()
    print(job.pid, flush=True)
    time.sleep(float(sys.argv[2]))
    os._exit(0)  # the server's worker is gone (stopped, restarted, killed)
"""


def test_a_spawned_job_ends_with_the_server_that_started_it(tmp_path):
    """A stopped server left its jobs computing for minutes, a core each, for nobody; a job
    still runs while its server does."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psutil

    script = tmp_path / "parent.py"
    script.write_text(ORPHAN_PARENT)
    repo = str(Path(__file__).resolve().parent.parent)
    parent = subprocess.Popen(
        [sys.executable, str(script), repo, "4"], stdout=subprocess.PIPE, text=True
    )
    job = psutil.Process(int(parent.stdout.readline()))
    time.sleep(2)
    assert job.is_running() and job.status() != psutil.STATUS_ZOMBIE  # its server is up
    parent.wait(timeout=30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not job.is_running() or job.status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.2)
    else:
        job.kill()
        raise AssertionError("the job outlived its server")
