"""Where background jobs run and where their results go, chosen from the environment.

* One machine (the default, ``make run``): Dash's ``DiskcacheManager`` starts each job in a
  new process and keeps results in a ``diskcache`` folder (``INTERP_JOB_CACHE``). The
  process is spawned, not forked: JAX's thread pools do not survive a fork, and a forked
  job deadlocked in its first pass.
* Team deployment (``INTERP_REDIS_URL`` set): Dash's ``CeleryManager`` queues jobs in Redis
  for Celery workers (``celery -A interp_app.worker worker``), and the step results live in
  the same Redis, shared by every app worker, replica and Celery worker.

A job is told the checkpoint root and the result cache by the server (``Place``), never by
the browser.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dash import CeleryManager, DiskcacheManager

from interp_app.core.jobs import PART_STEPS, SYNC_WORK
from interp_app.core.results import DiskResults, RedisResults, ResultCache

VISIBILITY_SECONDS = 3600  # a job unacknowledged this long (its worker died) runs again
MAX_LIVE_JOBS = 2  # spawned job processes per machine at once (a GPT-2-small job: ~5 GB)
NOT_RUN = "0"  # the job id of a request that started nothing (refused or nothing to do)
LIVE_KEY = "interp-live-jobs"
ORPHAN_CHECK_S = 1.0  # how often a spawned job looks whether its server is still there
NO_UPDATE = {"_dash_no_update": "_dash_no_update"}  # what Dash's managers store for one
Admit = Callable[[dict[str, Any]], bool]


def default_cache_dir() -> str:
    return str(Path(tempfile.gettempdir()) / f"interp-jobs-{os.getuid()}")


@dataclass(frozen=True)
class JobSettings:
    """``INTERP_REDIS_URL`` (empty: one machine), ``INTERP_JOB_CACHE`` (the folder of the
    one-machine result cache), ``INTERP_SYNC_WORK`` (timelines with more work than this go
    to the background; 0: all of them), ``INTERP_JOB_VISIBILITY`` (seconds before a lost
    worker's job is handed to another worker), ``INTERP_JOB_PART_STEPS`` (at most this
    many steps computed per part: each part is stored and drawn as it is done)."""

    redis_url: str = ""
    cache_dir: str = ""
    sync_work: float = SYNC_WORK
    visibility: int = VISIBILITY_SECONDS
    part_steps: int = PART_STEPS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JobSettings:
        env = os.environ if environ is None else environ
        try:
            sync_work = float(env.get("INTERP_SYNC_WORK", SYNC_WORK))
            visibility = int(env.get("INTERP_JOB_VISIBILITY", VISIBILITY_SECONDS))
            part_steps = int(env.get("INTERP_JOB_PART_STEPS", PART_STEPS))
        except ValueError as err:
            raise ValueError(
                f"INTERP_SYNC_WORK, _JOB_VISIBILITY or _JOB_PART_STEPS: {err}"
            ) from None
        if not sync_work >= 0 or visibility < 1 or part_steps < 1:
            raise ValueError(
                "INTERP_SYNC_WORK must be >= 0, INTERP_JOB_VISIBILITY and "
                "INTERP_JOB_PART_STEPS >= 1"
            )
        return cls(
            redis_url=env.get("INTERP_REDIS_URL", "").strip(),
            cache_dir=env.get("INTERP_JOB_CACHE", "").strip() or default_cache_dir(),
            sync_work=sync_work,
            visibility=visibility,
            part_steps=part_steps,
        )

    @property
    def results_spec(self) -> str:
        return self.redis_url or "disk:" + self.cache_dir


@dataclass(frozen=True)
class Place:
    """What a job needs from the server: the checkpoint root and its result cache."""

    root: str
    results: str  # "disk:<folder>" or a redis:// URL
    part_steps: int = PART_STEPS

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_RESULTS: dict[str, ResultCache] = {}


def results_at(spec: str) -> ResultCache:
    """The result cache a spec names, one per process."""
    if spec not in _RESULTS:
        if spec.startswith("disk:"):
            import diskcache

            _RESULTS[spec] = DiskResults(diskcache.Cache(spec[len("disk:") :]))
        else:
            import redis

            _RESULTS[spec] = RedisResults(redis.Redis.from_url(spec))
    return _RESULTS[spec]


def make_celery(redis_url: str, visibility: int = VISIBILITY_SECONDS) -> Any:
    """Celery on Redis (broker and result backend), set up so that a job whose worker dies
    runs again instead of hanging: acknowledged only once it finished (``acks_late``),
    requeued when its process is lost (``reject_on_worker_lost``), one job fetched at a
    time, and handed to another worker after ``visibility`` seconds unacknowledged."""
    from celery import Celery

    app = Celery("interp_app", broker=redis_url, backend=redis_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": visibility},
        result_backend_transport_options={"visibility_timeout": visibility},
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],  # no pickle on the queue
    )
    return app


def orphan_safe(parent: int, job_fn: Callable[..., Any], *args: Any) -> Any:
    """Run a spawned job that ends when the server process that started it is gone: a
    stopped or restarted server left its jobs computing for minutes (a patching sweep of a
    big model), each on a core of its own, for nobody."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()
    return job_fn(*args)


class SpawnedDiskcacheManager(DiskcacheManager):
    """Dash's DiskcacheManager, its job process spawned (a fresh interpreter) and told the
    server's ``Place``. A request the server does not ``admit`` (nothing missing, forged),
    or one past ``MAX_LIVE_JOBS`` running jobs, starts no process: it ends at once with no
    update (a client must not be able to fill the machine with processes)."""

    def __init__(self, cache: Any, place: Place, admit: Admit):
        super().__init__(cache)
        self.place = place
        self.admit = admit

    def call_job_fn(self, key, job_fn, args, context):
        from multiprocess import get_context

        if not self.admit(dict(args)):
            self.handle.set(key, NO_UPDATE)
            return NOT_RUN
        with self.handle.transact():
            live = [pid for pid in self.handle.get(LIVE_KEY, []) if self.job_running(pid)]
            if len(live) >= MAX_LIVE_JOBS:
                self.handle.set(key, NO_UPDATE)
                return NOT_RUN
            process = get_context("spawn").Process(
                target=orphan_safe,
                args=(
                    os.getpid(),
                    job_fn,
                    key,
                    self._make_progress_key(key),
                    with_place(args, self.place),
                    context,
                ),
                daemon=False,
            )
            process.start()
            self.handle.set(LIVE_KEY, [*live, process.pid])
        return process.pid

    def job_running(self, job):
        return str(job) != NOT_RUN and super().job_running(job)

    def terminate_job(self, job):
        if job is not None and str(job) != NOT_RUN:
            super().terminate_job(job)

    def terminate_unhealthy_job(self, job):
        return str(job) != NOT_RUN and super().terminate_unhealthy_job(job)


class PlacedCeleryManager(CeleryManager):
    """Dash's CeleryManager, each job told the server's ``Place``; a request the server
    does not ``admit`` is never queued."""

    def __init__(self, celery_app: Any, place: Place, admit: Admit):
        super().__init__(celery_app)
        self.place = place
        self.admit = admit

    def call_job_fn(self, key, job_fn, args, context):
        import json

        if not self.admit(dict(args)):
            self.handle.backend.set(key, json.dumps(NO_UPDATE))
            return NOT_RUN
        return super().call_job_fn(key, job_fn, with_place(args, self.place), context)

    def terminate_job(self, job):
        if job is not None and str(job) != NOT_RUN:
            super().terminate_job(job)


def with_place(args: Any, place: Place) -> dict[str, Any]:
    """The job's keyword arguments plus the server's place (a browser cannot set it)."""
    return {**dict(args), "place": place.as_dict()}


def job_results(settings: JobSettings) -> ResultCache:
    """The shared result cache these settings name."""
    return results_at(settings.results_spec)


def job_manager(root: str | Path, settings: JobSettings, admit: Admit) -> Any:
    """The Dash background-callback manager for this server; ``admit(kwargs)`` says
    whether a request is worth a job."""
    place = Place(str(root), settings.results_spec, settings.part_steps)
    if settings.redis_url:
        return PlacedCeleryManager(
            make_celery(settings.redis_url, settings.visibility), place, admit
        )
    import diskcache

    return SpawnedDiskcacheManager(diskcache.Cache(settings.cache_dir), place, admit)
