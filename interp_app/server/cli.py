"""``interp-app``: serve the explorer with gunicorn, training the default run first if none.

The master process never imports JAX: training runs in a child process and each gunicorn
worker builds its own app after the fork (JAX's thread pools do not survive a fork).
"""

from __future__ import annotations

import logging
import subprocess
import sys

from gunicorn.app.base import BaseApplication

from interp_app.server.auth import UsersFileError, shared_users_file
from interp_app.server.compute_gate import SPARE_THREADS
from interp_app.server.settings import Settings, deprecations, parse_args
from training import checkpoint as ckpt
from training import runtime


def gunicorn_options(settings: Settings) -> dict[str, object]:
    return {
        "bind": f"[{settings.host}]:{settings.port}"
        if ":" in settings.host
        else f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "worker_class": "gthread",
        "threads": settings.threads + SPARE_THREADS,  # spare ones only wait (compute_gate)
        "accesslog": "-",
        "errorlog": "-",
        "control_socket_disable": True,  # --no-control-socket
        "preload_app": False,
        "timeout": 120,  # a worker compiles and warms the default view before serving
        "graceful_timeout": 10,
        "proc_name": "interp-app",
    }


class Served(BaseApplication):
    """gunicorn with our settings; ``load`` runs in each worker after the fork."""

    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)
        if self.settings.auth:
            self.cfg.set("pre_fork", self.refresh_users)

    def refresh_users(self, server: object, worker: object) -> None:
        """Before each fork: the new worker inherits the users file as it is now, or the
        master's last good copy when it is missing or broken (a worker never reads it to boot)."""
        try:
            shared_users_file(self.settings.users_file).current()
        except UsersFileError as err:  # only if the master never read it
            logging.getLogger("interp_app.server.auth").warning("%s", err)

    def load(self):
        runtime.configure()  # XLA's CPU flags, before this worker's JAX starts
        from interp_app.server.app import app_from_settings

        return app_from_settings(self.settings).server


def ensure_default_run(root: str) -> int:
    """Train the built-in default run in a child process when the root has no runs (a root
    this user may not read is left to the server, which says so in the page)."""
    try:
        if ckpt.list_runs(root):
            return 0
    except OSError as err:
        print(f"interp-app: warning: cannot read {root}: {err.strerror}; not training")
        return 0
    print(f"interp-app: no runs in {root}; training the default run first (about a minute)")
    command = [sys.executable, "-m", "training.cli", "--root", root, "--run", "fruits"]
    return subprocess.call(command)


def log_auth_events() -> None:
    """Users-file changes and failures go to stderr beside gunicorn's own lines."""
    logger = logging.getLogger("interp_app.server.auth")
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s [%(process)d] [%(levelname)s] %(message)s", "[%Y-%m-%d %H:%M:%S %z]"
        )
    )
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    for line in deprecations(sys.argv[1:] if argv is None else argv):
        print(f"interp-app: warning: {line}", file=sys.stderr)
    runtime.configure()  # inherited by the workers and the training child
    users: dict[str, str] = {}
    if settings.auth:
        log_auth_events()
        try:
            users = shared_users_file(settings.users_file).current()
        except UsersFileError as err:
            print(f"interp-app: error: {err}", file=sys.stderr)
            return 2
    if settings.train and ensure_default_run(settings.root) != 0:
        print("interp-app: error: could not train the default run (see above)", file=sys.stderr)
        return 2
    url = f"http://{settings.host}:{settings.port}/"
    if settings.auth:
        print(f"interp-app: serving {settings.root} at {url} for {len(users)} user(s)", flush=True)
    else:
        print(
            f"interp-app: serving {settings.root} at {url} WITHOUT authentication "
            "(anyone who can reach it may use it; set --users-file to require a login)",
            flush=True,
        )
        if settings.open_to_network:
            print(f"interp-app: warning: bound to {settings.host}, open to the network", flush=True)
    if settings.debug:
        from interp_app.server.app import app_from_settings

        app_from_settings(settings).run(host=settings.host, port=settings.port, debug=True)
        return 0
    Served(settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
