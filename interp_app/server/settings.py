"""Every setting of the served app, read in one place.

Each setting is a CLI flag of ``interp-app`` and an environment variable of the same name
(``--cache-mb`` is ``INTERP_CACHE_MB``): containers configure through the environment,
people through flags; a flag wins over the environment, which wins over the default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

PREFIX = "INTERP_"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Settings:
    root: str = "checkpoints"
    host: str = "127.0.0.1"
    port: int = 8050
    workers: int = 2
    threads: int = 4
    cache_mb: int = 768
    cache_steps: int = 512
    users_file: str = ""
    live_ms: int = 3000
    train: bool = True
    debug: bool = False

    @property
    def auth(self) -> bool:
        return bool(self.users_file)

    @property
    def open_to_network(self) -> bool:
        return self.host not in LOOPBACK


HELP = {
    "root": "checkpoint root (one folder per run)",
    "host": "address to bind (127.0.0.1: this machine only)",
    "port": "port to listen on",
    "workers": "gunicorn worker processes (each holds its own caches)",
    "threads": "callbacks computed at once per worker (each worker also keeps spare threads, "
    "so health checks and assets never wait behind them)",
    "cache_mb": "memory budget per worker, in MB, for everything it caches: 1/2 parameters of "
    "recent checkpoints (as stored: the default model's are 43 KB; a GPT-2-small one is 475 "
    "MiB in float32 and stays cached from 1024 on), 1/4 captured forward passes (GPT-2-small, "
    "128 tokens: ~112 MB each), 1/8 derived views and patching results, 1/8 checkpoints "
    "stacked for all-step timelines (runs small enough to stack whole); a worker also needs "
    "~0.5 GB for Python, JAX and one request's work (a mapped checkpoint counts in RSS as its "
    "pages are read). 0 keeps nothing",
    "cache_steps": "deprecated (use --cache-mb): also caps the parameter cache in checkpoints",
    "users_file": "file of 'user:password-hash' lines (make with interp-passwd); "
    "when set, every route asks for them",
    "live_ms": "poll the run folder for new checkpoints every N ms (0: off)",
    "train": "train the built-in default run at start when the root has no runs",
    "debug": "Dash's development server with Werkzeug's debugger, which skips the login: "
    "only on a loopback --host and without --users-file",
}


#: The least value each number may take (``--cache-mb 0``: nothing kept, every view reads).
LOWEST = {"workers": 1, "threads": 1, "cache_mb": 0, "cache_steps": 1, "live_ms": 0}


def env_name(field: str) -> str:
    return PREFIX + field.upper()


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a yes/no value: {text!r}")


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``INTERP_*`` variables alone (the WSGI entry point has no flags)."""
    return parse_args([], environ)


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """One flag per setting; its default comes from the environment when set there."""
    environ = os.environ if environ is None else environ
    p = argparse.ArgumentParser(
        prog="interp-app",
        description="Explore a transformer's checkpoints in linked views, served by gunicorn.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Every flag can also be set as an environment variable: --cache-mb is "
        "INTERP_CACHE_MB, --no-train is INTERP_TRAIN=0.",
    )
    base = Settings()
    for f in fields(Settings):
        default = getattr(base, f.name)
        name = env_name(f.name)
        raw = environ.get(name)
        try:
            if raw is not None:
                kind = type(default)
                default = _parse_bool(raw) if kind is bool else kind(raw)
        except ValueError as err:
            p.error(f"{name}: {err}")
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=HELP[f.name]
            )
        else:
            p.add_argument(flag, type=type(default), default=default, help=HELP[f.name])
    return p


def parse_args(argv: list[str] | None, environ: Mapping[str, str] | None = None) -> Settings:
    args = build_parser(environ).parse_args(argv)
    settings = Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})
    problems = [
        f"--{name.replace('_', '-')} must be at least {low}"
        for name, low in LOWEST.items()
        if getattr(settings, name) < low
    ]
    if not 0 < settings.port < 65536:
        problems.append("--port must be between 1 and 65535")
    problems += debug_problems(settings)
    if problems:
        build_parser(environ).error("; ".join(problems))
    return settings


def deprecations(argv: list[str] | None, environ: Mapping[str, str] | None = None) -> list[str]:
    """One line for each deprecated setting given (it still works)."""
    argv = [] if argv is None else argv
    environ = os.environ if environ is None else environ
    given = any(a == "--cache-steps" or a.startswith("--cache-steps=") for a in argv)
    if given or env_name("cache_steps") in environ:
        return [
            "--cache-steps (INTERP_CACHE_STEPS) is deprecated: the parameter cache is bounded "
            "in bytes by --cache-mb (INTERP_CACHE_MB); the step count still caps it too"
        ]
    return []


def debug_problems(settings: Settings) -> list[str]:
    """Werkzeug's debugger console (``/console``) runs code and sits outside the app's login:
    only for one person on this machine."""
    if not settings.debug:
        return []
    problems = []
    if settings.auth:
        problems.append(
            "--debug serves Werkzeug's debugger without the login: not with --users-file"
        )
    if settings.open_to_network:
        problems.append(f"--debug is for a loopback --host only, not {settings.host}")
    return problems
