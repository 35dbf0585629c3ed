"""Hardening issue #12 over HTTP: a users file that changes under running workers, logins
that tell nothing about which names exist, throttled guessing, and safe response details
(frames, sniffing, OPTIONS, unknown component files, the debugger, comment-like names)."""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import requests

from interp_app.server import auth
from interp_app.server.app import create_app
from interp_app.server.auth import hash_line, passwd_main
from interp_app.server.settings import parse_args
from tests.browser import free_port, serve

USER, PASSWORD = "alice", "correct horse battery"
BOB, BOB_PASSWORD = "bob", "another long password"


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _from(address: str) -> dict[str, str]:
    return {"REMOTE_ADDR": address}


def _write_users(path: Path, *lines: str) -> None:
    """Replace the file as interp-passwd does (a new inode), never in place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def lines():
    return {USER: hash_line(USER, PASSWORD), BOB: hash_line(BOB, BOB_PASSWORD)}


@pytest.fixture
def users_path(tmp_path, lines):
    path = tmp_path / "users"
    _write_users(path, lines[USER])
    return path


@pytest.fixture
def locked(small_root, lines):
    """A fresh app per test: the failure throttle keeps state."""
    root, _ = small_root
    user, hashed = lines[USER].split(":", 1)
    return create_app(root, users={user: hashed})


@pytest.fixture(scope="module")
def open_app(small_root):
    root, _ = small_root
    return create_app(root)


@pytest.fixture
def hash_checks(monkeypatch):
    """Every password check the app makes, as (hash, password)."""
    calls: list[tuple[str, str]] = []
    real = auth.check_password_hash

    def counting(hashed: str, password: str) -> bool:
        calls.append((hashed, password))
        return real(hashed, password)

    monkeypatch.setattr(auth, "check_password_hash", counting)
    return calls


# --- item 4: the users file changes under running workers ------------------------------


def test_users_file_change_reaches_a_running_app(small_root, users_path, lines, monkeypatch):
    root, _ = small_root
    client = create_app(root, users=auth.UsersFile(users_path)).server.test_client()
    assert client.get("/", headers=_basic(USER, PASSWORD)).status_code == 200
    assert client.get("/", headers=_basic(BOB, BOB_PASSWORD)).status_code == 401
    monkeypatch.setattr(sys, "stdin", io.StringIO(BOB_PASSWORD + "\n"))
    assert passwd_main([str(users_path), BOB]) == 0
    assert client.get("/", headers=_basic(BOB, BOB_PASSWORD)).status_code == 200
    _write_users(users_path, lines[BOB])  # alice removed: her cached login goes too
    assert client.get("/", headers=_basic(USER, PASSWORD)).status_code == 401
    assert client.get("/", headers=_basic(BOB, BOB_PASSWORD)).status_code == 200


def test_broken_or_missing_users_file_keeps_the_last_good_copy(
    small_root, users_path, lines, caplog
):
    root, _ = small_root
    client = create_app(root, users=auth.UsersFile(users_path)).server.test_client()
    alice = _basic(USER, PASSWORD)
    caplog.set_level(logging.INFO, logger="interp_app.server.auth")
    _write_users(users_path, "alice:plain-text-password")
    for _ in range(3):
        assert client.get("/", headers=alice).status_code == 200
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "keeping the last good copy" in warnings[0].getMessage()
    assert warnings[0].name == "interp_app.server.auth"
    users_path.unlink()
    assert client.get("/", headers=alice).status_code == 200
    assert "cannot read users file" in caplog.records[-1].getMessage()
    _write_users(users_path, lines[BOB])
    assert client.get("/", headers=alice).status_code == 401
    assert client.get("/", headers=_basic(BOB, BOB_PASSWORD)).status_code == 200


def _worker_pids(log: Path) -> list[int]:
    return [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", log.read_text())]


def _restart_worker(log: Path) -> None:
    """Kill the one worker as a crash would; gunicorn's master forks another."""
    pids = _worker_pids(log)
    os.kill(pids[-1], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while len(_worker_pids(log)) == len(pids):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def test_worker_restart_without_the_users_file_keeps_the_server_up(
    small_root, users_path, tmp_path
):
    """gunicorn halts when a worker fails to boot: one forked while the file is gone must
    serve the copy it inherits from the master."""
    root, _ = small_root
    port = free_port()
    env = {
        **os.environ,
        "INTERP_ROOT": str(root),
        "INTERP_PORT": str(port),
        "INTERP_TRAIN": "0",
        "INTERP_WORKERS": "1",
        "INTERP_USERS_FILE": str(users_path),
    }
    log = tmp_path / "app.log"
    with serve(
        [sys.executable, "-m", "interp_app.server.cli"], port, timeout=120, env=env, log=log
    ) as url:
        users_path.unlink()
        _restart_worker(log)
        assert requests.get(url + "/", auth=(USER, PASSWORD), timeout=120).status_code == 200
        assert requests.get(url + "/", auth=(USER, "wrong"), timeout=30).status_code == 401
    assert "keeping the last good copy" in log.read_text()
    assert len(_worker_pids(log)) == 2


def test_master_reads_the_users_file_again_before_each_fork(users_path, lines):
    """So a worker forked while the file is gone gets its latest good state, not the one from
    the server's start (which may still hold a removed user)."""
    from interp_app.server.cli import Served
    from interp_app.server.settings import Settings

    served = Served(Settings(users_file=str(users_path), train=False))
    shared = auth.shared_users_file(users_path)  # what main() read at start
    _write_users(users_path, lines[BOB])
    served.cfg.pre_fork(None, None)  # gunicorn, before forking a worker
    users_path.unlink()
    assert sorted(shared.current()) == [BOB]


# --- item 5: no user enumeration, throttled guessing -----------------------------------


def test_unknown_user_costs_one_hash_check_like_a_wrong_password(locked, lines, hash_checks):
    client = locked.server.test_client()
    alice_hash = lines[USER].split(":", 1)[1]
    wrong = client.get(
        "/", headers=_basic(USER, "not the password"), environ_base=_from("10.1.0.1")
    )
    assert wrong.status_code == 401 and hash_checks == [(alice_hash, "not the password")]
    hash_checks.clear()
    stranger = client.get("/", headers=_basic("mallory", PASSWORD), environ_base=_from("10.1.0.1"))
    assert stranger.status_code == 401 and len(hash_checks) == 1
    dummy, password = hash_checks[0]
    assert password == PASSWORD and dummy != alice_hash
    assert dummy.split("$")[0] == alice_hash.split("$")[0]  # same method, same cost
    assert stranger.headers["WWW-Authenticate"] == wrong.headers["WWW-Authenticate"]
    assert stranger.data == wrong.data


def test_healthz_answers_wrong_credentials_as_it_answers_strangers(locked, hash_checks):
    client = locked.server.test_client()
    answers = []
    for headers in ({}, _basic(USER, "not the password"), _basic("mallory", PASSWORD)):
        hash_checks.clear()
        r = client.get("/healthz", headers=headers, environ_base=_from("10.2.0.1"))
        answers.append((r.status_code, r.get_json(), sorted(set(r.headers.keys()) - {"Date"})))
        assert len(hash_checks) == (1 if headers else 0)
    assert answers[0][:2] == (200, {"status": "ok"})
    assert answers[0] == answers[1] == answers[2]
    detail = client.get("/healthz", headers=_basic(USER, PASSWORD), environ_base=_from("10.2.0.2"))
    assert detail.get_json()["runs"] == 1


def test_repeated_failures_from_one_address_get_429_without_a_check(locked, hash_checks):
    throttle = locked.server.config["AUTH_THROTTLE"]
    throttle.limit = 3
    client = locked.server.test_client()
    attacker, other = _from("10.3.0.1"), _from("10.3.0.2")
    for _ in range(throttle.limit):
        r = client.get("/", headers=_basic(USER, "guess"), environ_base=attacker)
        assert r.status_code == 401
    hash_checks.clear()
    for path in ("/", "/_dash-layout"):
        blocked = client.get(path, headers=_basic(USER, "next guess"), environ_base=attacker)
        assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    health = client.get("/healthz", headers=_basic(USER, "next guess"), environ_base=attacker)
    assert health.get_json() == {"status": "ok"}  # as for a stranger, and unchecked
    assert hash_checks == []
    assert client.get("/", headers=_basic(USER, PASSWORD), environ_base=other).status_code == 200
    assert client.get("/", environ_base=attacker).status_code == 401  # no credentials: no 429
    # a user behind the same address (a proxy) who logged in before is not locked out
    hash_checks.clear()
    assert client.get("/", headers=_basic(USER, PASSWORD), environ_base=attacker).status_code == 200
    assert hash_checks == []


def test_healthz_failures_count_towards_the_throttle(locked):
    throttle = locked.server.config["AUTH_THROTTLE"]
    throttle.limit = 2
    client = locked.server.test_client()
    here = _from("10.4.0.1")
    for _ in range(throttle.limit):
        client.get("/healthz", headers=_basic(USER, "guess"), environ_base=here)
    assert client.get("/", headers=_basic(USER, "third"), environ_base=here).status_code == 429


def test_successes_do_not_count_and_the_block_ends_with_the_window(locked):
    throttle = locked.server.config["AUTH_THROTTLE"]
    throttle.limit = 3
    now = [1000.0]
    throttle.clock = lambda: now[0]
    client = locked.server.test_client()
    here = _from("10.5.0.1")
    for _ in range(2 * throttle.limit):
        assert client.get("/", headers=_basic(USER, PASSWORD), environ_base=here).status_code == 200
    for _ in range(throttle.limit - 1):
        assert client.get("/", headers=_basic(USER, "guess"), environ_base=here).status_code == 401
    assert client.get("/", headers=_basic(USER, PASSWORD), environ_base=here).status_code == 200
    assert client.get("/", headers=_basic(USER, "guess"), environ_base=here).status_code == 401
    assert client.get("/", headers=_basic(USER, "guess 2"), environ_base=here).status_code == 429
    now[0] += throttle.window + 1
    assert client.get("/", headers=_basic(USER, "guess 2"), environ_base=here).status_code == 401


# --- item 14: response details ------------------------------------------------------------


def _assert_hardened(response, what: str) -> None:
    assert response.headers.get("X-Frame-Options") == "DENY", what
    assert "frame-ancestors 'none'" in response.headers.get("Content-Security-Policy", ""), what
    assert response.headers.get("X-Content-Type-Options") == "nosniff", what


def test_every_response_forbids_framing_and_sniffing(locked, open_app):
    client = locked.server.test_client()
    alice = _basic(USER, PASSWORD)
    for path, headers, status in [
        ("/", {}, 401),
        ("/", alice, 200),
        ("/healthz", {}, 200),
        ("/assets/00-bootstrap.min.css", alice, 200),
        ("/_dash-component-suites/no_such_package/x.js", alice, 404),
    ]:
        r = client.get(path, headers=headers)
        assert r.status_code == status, path
        _assert_hardened(r, path)
    _assert_hardened(open_app.server.test_client().get("/"), "open /")


def test_options_needs_the_login_when_a_users_file_is_set(locked, open_app):
    client = locked.server.test_client()
    for path in ("/", "/_dash-update-component", "/_dash-layout"):
        anonymous = client.options(path)
        assert anonymous.status_code == 401, path
        assert "Basic" in anonymous.headers.get("WWW-Authenticate", "")
        assert client.options(path, headers=_basic(USER, "wrong")).status_code == 401
        assert client.options(path, headers=_basic(USER, PASSWORD)).status_code == 200
    unlocked = open_app.server.test_client().options("/")
    assert unlocked.status_code == 200 and unlocked.data == b""


def test_unknown_component_suite_paths_are_404(open_app, locked):
    client = open_app.server.test_client()
    page = client.get("/").text
    real = re.findall(r'src="(/_dash-component-suites/[^"]+)"', page)[0]
    assert client.get(real).status_code == 200
    for path in (
        "/_dash-component-suites/no_such_package/x.js",
        "/_dash-component-suites/dash/no/such/file.v4_4_1m1.js",
        "/_dash-component-suites/dash/../interp_app/server/auth.py",
        "/_dash-component-suites/plotly/package_data/plotly.js",
    ):
        r = client.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert b"registered" not in r.data  # Dash's message lists every file
        _assert_hardened(r, path)
    guarded = locked.server.test_client()
    unknown = "/_dash-component-suites/no_such_package/x.js"
    assert guarded.get(unknown).status_code == 401  # the login still comes first
    assert guarded.get(unknown, headers=_basic(USER, PASSWORD)).status_code == 404


@pytest.mark.parametrize(
    "argv, env",
    [
        (["--debug", "--users-file", "users"], {}),
        (["--debug", "--host", "0.0.0.0"], {}),
        ([], {"INTERP_DEBUG": "1", "INTERP_USERS_FILE": "/auth/users"}),
        ([], {"INTERP_DEBUG": "1", "INTERP_HOST": "0.0.0.0"}),
    ],
)
def test_debug_refused_with_a_users_file_or_an_open_host(argv, env, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(argv, env)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("interp-app: error:") and "--debug" in err


def test_debug_alone_on_loopback_is_allowed():
    assert parse_args(["--debug"], {}).debug
    assert parse_args(["--debug", "--host", "::1"], {}).debug


def test_passwd_refuses_a_name_the_reader_would_take_for_a_comment(tmp_path, monkeypatch, capsys):
    users = tmp_path / "users"
    with pytest.raises(ValueError, match="#"):
        hash_line("#alice", PASSWORD)
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert passwd_main([str(users), "#alice"]) == 2
    assert "interp-passwd: error:" in capsys.readouterr().err
    assert not users.exists()
