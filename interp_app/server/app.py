"""Build the Dash app over one checkpoint root (``create_app``), and its WSGI ``server``."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from dash import Dash

from interp_app.core.jobs import JobAnalyzer
from interp_app.core.store import RunStore
from interp_app.core.view import warm_up
from interp_app.server.auth import UsersFile, is_authorized, protect, shared_users_file
from interp_app.server.background import JobSettings, job_manager, job_results
from interp_app.server.callback_guard import callback_shapes, refuse_malformed_callbacks
from interp_app.server.compute_gate import install_compute_gate
from interp_app.server.http_guard import install_http_guards
from interp_app.server.settings import Settings, from_env
from interp_app.ui.callbacks import register
from interp_app.ui.callbacks3d import register_3d
from interp_app.ui.job_kinds import needs_job
from interp_app.ui.page import build_layout, validation_layout
from training import runtime

ASSETS = Path(__file__).parent.parent / "ui" / "assets"


MAX_REQUEST_BYTES = 4 * 1024 * 1024


def finish_dash_setup(app: Dash) -> None:
    """Dash builds its registry of component bundles lazily, on a worker's first request,
    and marks that done before it is (plotly/dash#3971): a bundle request that races the
    first page gets a 500 and the page never draws. Done here, before the worker accepts
    any request, there is nothing left to race."""
    with app.server.test_request_context("/"):
        app._setup_server()


def create_app(
    root: str | Path = "checkpoints",
    live_ms: int = 3000,
    param_cache: int = 512,
    warm: bool = False,
    users: dict[str, str] | UsersFile | None = None,
    compute_slots: int | None = None,
    jobs: JobSettings | None = None,
    cache_mb: int | None = None,
) -> Dash:
    """Everything is served by the app itself (Plotly JS, Bootstrap CSS): works offline.

    ``live_ms``: how often the page polls the run folder for new steps (0: never).
    ``warm``: compile and load the default view before serving (the CLI and gunicorn do).
    ``users``: user -> password hash, or a ``UsersFile`` (read again when it changes); when
    given, every route but ``/healthz`` asks for them.
    ``compute_slots``: callbacks computing at once (the served app: ``--threads``); the
    rest wait on spare threads, so light requests never queue behind them.
    ``cache_mb``: all this worker caches, in MB, split between parameters, captures,
    derived results and timeline stacks (``core.budget``; None: the default, 768).
    ``jobs``: where background jobs run and keep results (default: ``INTERP_*`` variables,
    see ``server.background``; one machine unless ``INTERP_REDIS_URL`` is set).
    """
    jobs = JobSettings.from_env() if jobs is None else jobs
    store = (
        RunStore(root, param_cache=param_cache)
        if cache_mb is None
        else RunStore(root, param_cache=param_cache, cache_bytes=cache_mb * 1024 * 1024)
    )
    analyzer = JobAnalyzer(store, job_results(jobs), sync_work=jobs.sync_work)
    manager = job_manager(root, jobs, partial(needs_job, analyzer))
    app = Dash(
        __name__,
        title="Transformer explorer",
        assets_folder=str(ASSETS),
        serve_locally=True,
        update_title=None,  # type: ignore[arg-type]  # Dash documents None: no "Updating..."
    )
    if users:  # first: strangers learn nothing, not even which requests are malformed
        app.server.config["AUTH_VERIFIER"] = protect(app.server, users)
    install_http_guards(app.server)
    app.layout = build_layout(str(root), live_ms)
    app.validation_layout = validation_layout(app.layout)  # type: ignore[assignment]
    register(app, analyzer, manager)
    register_3d(app, analyzer)
    app.server.config["ANALYZER"] = analyzer
    app.server.config["JOB_MANAGER"] = manager
    app.server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES  # larger bodies get a 413
    app.server.before_request(refuse_malformed_callbacks)
    if compute_slots is not None:
        install_compute_gate(app.server, compute_slots)
    finish_dash_setup(app)
    # after Dash's own setup, which adds a callback for each background job's Cancel
    # (refused as "no such callback" when the shapes were taken before it)
    app.server.config["CALLBACK_SHAPES"] = callback_shapes(app)
    if warm:
        warm_up(analyzer)
    install_healthz(app, analyzer)
    return app


def install_healthz(app: Dash, analyzer: JobAnalyzer) -> None:
    @app.server.route("/healthz")
    def healthz():
        """Open to health checks; the counts and problems only to authorised users. A root
        or run this server cannot read is reported here, never a failed check."""
        if not is_authorized(app.server):
            return {"status": "ok"}
        store = analyzer.store
        runs = store.runs()
        steps = sum(len(store.steps(r)) for r in runs)
        return {"status": "ok", "runs": len(runs), "steps": steps, "problems": store.problems()}


def app_from_settings(settings: Settings) -> Dash:
    users = shared_users_file(settings.users_file) if settings.auth else None
    return create_app(
        settings.root,
        live_ms=settings.live_ms,
        param_cache=settings.cache_steps,
        warm=True,
        users=users,
        compute_slots=settings.threads,
        cache_mb=settings.cache_mb,
    )


def server():
    """WSGI entry for a bare gunicorn (``gunicorn 'interp_app.server.app:server()'``); reads
    INTERP_*."""
    runtime.configure()  # XLA's CPU flags, before this worker's JAX starts
    return app_from_settings(from_env()).server
