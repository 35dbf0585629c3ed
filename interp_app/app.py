"""Build the Dash app over one checkpoint root (``create_app``), and its WSGI ``server``."""

from __future__ import annotations

import os
from pathlib import Path

import dash_bootstrap_components as dbc  # noqa: F401  (registers its components)
from dash import Dash

from interp_app.callbacks import register
from interp_app.layout import build_layout
from interp_app.runs import RunStore
from interp_app.view import warm_up

ASSETS = Path(__file__).parent / "assets"


def create_app(
    root: str | Path = "checkpoints",
    live_ms: int = 3000,
    param_cache: int = 512,
    warm: bool = False,
) -> Dash:
    """Everything is served by the app itself (Plotly JS, Bootstrap CSS): works offline.

    ``live_ms``: how often the page polls the run folder for new steps (0: never).
    ``warm``: compile and load the default view before serving (the CLI and gunicorn do).
    """
    store = RunStore(root, param_cache=param_cache)
    app = Dash(
        __name__,
        title="Transformer explorer",
        assets_folder=str(ASSETS),
        serve_locally=True,
        suppress_callback_exceptions=True,
        update_title=None,
    )
    app.layout = build_layout(str(root), live_ms)
    register(app, store)
    if warm:
        warm_up(store)
    app.server.config["RUN_STORE"] = store

    @app.server.route("/healthz")
    def healthz():
        runs = store.runs()
        return {"status": "ok", "runs": len(runs), "steps": sum(len(store.steps(r)) for r in runs)}

    return app


def server():
    """WSGI entry for gunicorn: ``gunicorn 'interp_app.app:server()'``."""
    return create_app(os.environ.get("INTERP_ROOT", "checkpoints"), warm=True).server
