"""The Celery worker of the team deployment: ``celery -A interp_app.worker worker``.

It builds the same Dash app as the server over ``INTERP_ROOT`` (so the same background
callbacks are registered, as Celery tasks of the same names), with ``INTERP_REDIS_URL`` as
the queue, Celery's result backend and the shared result cache. The worker's main process
never runs JAX: each pool process starts its own after the fork.
"""

from __future__ import annotations

import os

from training import runtime

runtime.configure()  # XLA's CPU flags, before any JAX starts in the pool processes

from interp_app.server.app import create_app  # noqa: E402
from interp_app.server.background import JobSettings  # noqa: E402

settings = JobSettings.from_env()
if not settings.redis_url:
    raise SystemExit("interp_app.worker: set INTERP_REDIS_URL (redis://host:6379/0)")
dash_app = create_app(os.environ.get("INTERP_ROOT", "checkpoints"), jobs=settings)
app = dash_app.server.config["JOB_MANAGER"].handle  # the Celery app: ``-A`` finds ``app``
