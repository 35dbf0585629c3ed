"""Team deployment: the compose file's own command under gunicorn, and one settings reader."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import requests
import yaml

from interp_app.server.app import create_app
from interp_app.server.settings import Settings, env_name, parse_args
from tests.browser import free_port, serve
from tests.dash_client import DashClient

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME:-default}``, for running its commands outside a container."""
    return VARIABLE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), str(value))


def service_environment(name: str, overrides: dict[str, str]) -> dict[str, str]:
    env = {k: interpolate(v, {}) for k, v in COMPOSE["services"][name]["environment"].items()}
    return {**env, **overrides}


def test_compose_app_command_serves_page_and_callback_under_gunicorn(small_root, tmp_path):
    """The exact command and environment of the compose ``app`` service, on loopback."""
    root, summary = small_root
    port = free_port()
    service = COMPOSE["services"]["app"]
    env = service_environment(
        "app", {"INTERP_ROOT": str(root), "INTERP_HOST": "127.0.0.1", "INTERP_PORT": str(port)}
    )
    bin_dir = str(Path(sys.executable).parent)
    environ = {**os.environ, **env, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    command = service["command"]
    assert command[0] == "interp-app"
    log = tmp_path / "app.log"
    with serve(command, port, timeout=120, env=environ, log=log) as url:
        page = requests.get(url + "/", timeout=30)
        assert page.status_code == 200 and "_dash-renderer" in page.text
        health = requests.get(url + "/healthz", timeout=30).json()
        assert health == {"status": "ok", "runs": 1, "steps": len(summary.steps), "problems": []}
        client = DashClient(create_app(root), base_url=url)
        sel = client.select(None, search="?run=small&step=100&head=L0H1")["selection"]["data"]
        assert (sel["step"], sel["layer"], sel["head"]) == (100, 0, 1)
        panels = client.render(sel)
        assert "L0H1" in panels["attention-pattern"]["figure"]["layout"]["title"]["text"]
        bad = requests.post(
            url + "/_dash-update-component",
            data="{not json",
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert bad.status_code == 400
        forged = client.select(None, search="?run=../../etc&step=-1")
        assert forged["selection"]["data"]["run"] == "small"  # the worker keeps serving

    log = log.read_text()
    assert "gunicorn" in log and "gthread" in log
    assert "WITHOUT authentication" in log
    assert "Control socket listening" not in log  # --no-control-socket
    assert re.search(r'"POST /_dash-update-component HTTP/1.1" 200', log)  # access log


def test_compose_and_env_example_agree():
    """Every variable the compose file reads is documented in .env.example, and the app
    service passes every setting."""
    text = (REPO / "docker-compose.yml").read_text()
    used = {m.group(1) for m in VARIABLE.finditer(text)}
    documented = set(re.findall(r"^(\w+)=", (REPO / ".env.example").read_text(), re.M))
    assert used <= documented, used - documented
    env = COMPOSE["services"]["app"]["environment"]
    missing = {env_name(f.name) for f in fields(Settings)} - set(env) - {"INTERP_DEBUG"}
    assert not missing
    assert COMPOSE["services"]["app"]["volumes"][0].endswith(":ro")
    assert COMPOSE["services"]["train"]["profiles"] == ["train"]


def test_compose_runs_scalable_celery_workers_on_the_apps_redis():
    """``docker compose up --scale worker=N``: the worker service publishes no port and has no
    fixed name; it runs the Celery entry point over the same checkpoints (read-only) and the
    same Redis as the app, which is both the queue and the shared result cache."""
    services = COMPOSE["services"]
    app, worker, redis = services["app"], services["worker"], services["redis"]
    command = [interpolate(part, {}) for part in worker["command"]]
    assert command[:4] == ["celery", "-A", "interp_app.worker", "worker"]
    assert "--concurrency=1" in command
    assert "ports" not in worker and "container_name" not in worker
    url = "redis://redis:6379/0"
    assert (
        app["environment"]["INTERP_REDIS_URL"] == worker["environment"]["INTERP_REDIS_URL"] == url
    )
    assert app["environment"]["INTERP_ROOT"] == worker["environment"]["INTERP_ROOT"]
    assert worker["volumes"] == [app["volumes"][0]] and worker["volumes"][0].endswith(":ro")
    assert worker["image"] == app["image"]
    for service in (app, worker):
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    # only expiring keys (results) are evicted at the cap, never the queue's
    assert redis["command"][redis["command"].index("--maxmemory-policy") + 1] == "volatile-lru"
    assert "ports" not in redis  # reachable only inside the compose network


def test_dockerfile_runs_gunicorn_as_a_user_with_a_health_check():
    stages = (REPO / "Dockerfile").read_text().split("\nFROM ")
    final = stages[-1]
    assert len(stages) >= 2 and "slim" in final.splitlines()[0]
    assert re.search(r"^USER (?!root|0\b)\S+", final, re.M)
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert 'CMD ["interp-app"]' in final
    assert not re.search(r"^RUN .*(pip|uv|apt-get) install", final, re.M)  # nothing built here


def test_settings_flag_beats_environment_beats_default():
    env = {"INTERP_PORT": "9000", "INTERP_TRAIN": "0", "INTERP_CACHE_STEPS": "64"}
    s = parse_args([], env)
    assert (s.port, s.train, s.cache_steps, s.host) == (9000, False, 64, "127.0.0.1")
    s = parse_args(["--port", "9100", "--train"], env)
    assert (s.port, s.train) == (9100, True)
    assert parse_args([], {}) == Settings()


@pytest.mark.parametrize(
    "argv, env, message",
    [
        ([], {"INTERP_PORT": "eighty"}, "INTERP_PORT"),
        ([], {"INTERP_TRAIN": "maybe"}, "INTERP_TRAIN"),
        (["--workers", "0"], {}, "--workers"),
        (["--port", "70000"], {}, "--port"),
    ],
)
def test_bad_settings_are_one_line_errors(argv, env, message):
    result = subprocess.run(
        [sys.executable, "-m", "interp_app.server.cli", *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_plain_text_users_file_stops_the_app(tmp_path):
    users = tmp_path / "users"
    users.write_text("alice:secret-in-plain-text\n")
    result = subprocess.run(
        [sys.executable, "-m", "interp_app.server.cli", "--no-train", "--users-file", str(users)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "hashed" in result.stderr and "Traceback" not in result.stderr


def test_served_app_asks_for_the_users_file_logins(small_root, tmp_path):
    """Under gunicorn, configured through the environment as the container is."""
    from interp_app.server.auth import hash_line

    root, _ = small_root
    users = tmp_path / "users"
    users.write_text(hash_line("alice", "correct horse battery") + "\n")
    port = free_port()
    env = {
        **os.environ,
        "INTERP_ROOT": str(root),
        "INTERP_PORT": str(port),
        "INTERP_TRAIN": "0",
        "INTERP_WORKERS": "1",
        "INTERP_USERS_FILE": str(users),
    }
    log = tmp_path / "app.log"
    command = [sys.executable, "-m", "interp_app.server.cli"]
    with serve(command, port, timeout=120, env=env, log=log) as url:
        assert requests.get(url + "/", timeout=30).status_code == 401
        assert requests.get(url + "/healthz", timeout=30).json() == {"status": "ok"}
        good = ("alice", "correct horse battery")
        assert requests.get(url + "/", auth=good, timeout=30).status_code == 200
        assert requests.get(url + "/", auth=("alice", "wrong"), timeout=30).status_code == 401
        assert requests.get(url + "/healthz", auth=good, timeout=30).json()["runs"] == 1
        client = DashClient(create_app(root), base_url=url, auth=good)
        assert client.select(None, search="?run=small")["selection"]["data"]["run"] == "small"
    assert "for 1 user(s)" in log.read_text()
