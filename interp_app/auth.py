"""HTTP basic authentication for every route, from a file of hashed passwords.

The users file holds ``user:hash`` lines made by ``interp-passwd`` (Werkzeug's salted scrypt
hashes): no plain password is ever stored. Flask-HTTPAuth does the protocol; a guard before
every request (pages, Dash callbacks, assets, component suites) applies it. ``/healthz``
stays open for container health checks but tells only "ok" to strangers.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import os
import sys
import tempfile
import threading
from pathlib import Path

from flask import Flask, request
from flask_httpauth import HTTPBasicAuth
from werkzeug.security import check_password_hash, generate_password_hash

PUBLIC = ("/healthz",)
HASH_PREFIXES = ("scrypt:", "pbkdf2:")


class UsersFileError(ValueError):
    """The users file is missing, unreadable or holds something other than hashes."""


def read_users(path: str | Path) -> dict[str, str]:
    """user -> password hash; refuses plain-text passwords and empty files."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsersFileError(f"cannot read users file {path}: {err}") from None
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed.startswith(HASH_PREFIXES):
            raise UsersFileError(
                f"users file {path}, line {number}: expected 'user:hash' with a hashed "
                "password (make lines with interp-passwd)"
            )
        users[user] = hashed
    if not users:
        raise UsersFileError(f"users file {path} names no users (add one with interp-passwd)")
    return users


class Verifier:
    """Checks a user's password; remembers good pairs so each request does not pay scrypt."""

    def __init__(self, users: dict[str, str]):
        self.users = users
        self._good: set[bytes] = set()
        self._lock = threading.Lock()

    def __call__(self, username: str | None, password: str | None) -> str | None:
        hashed = self.users.get(username or "")
        if hashed is None or not password:
            return None
        token = hashlib.sha256(f"{username}\0{password}\0{hashed}".encode()).digest()
        with self._lock:
            if token in self._good:
                return username
        if not check_password_hash(hashed, password):
            return None
        with self._lock:
            if len(self._good) > 1024:
                self._good.clear()
            self._good.add(token)
        return username


def protect(server: Flask, users: dict[str, str]) -> Verifier:
    """Require a configured user on every route but the health check."""
    auth = HTTPBasicAuth(realm="Transformer explorer")
    verify = Verifier(users)
    auth.verify_password(verify)

    @auth.login_required
    def _allowed() -> None:
        return None

    @server.before_request
    def _guard():
        if request.path in PUBLIC:
            return None
        return _allowed()

    return verify


def is_authorized(server: Flask) -> bool:
    """Whether this request may see details (always, when no users are configured)."""
    verify: Verifier | None = server.config.get("AUTH_VERIFIER")
    if verify is None:
        return True
    creds = request.authorization
    return bool(creds and verify(creds.username, creds.password))


def hash_line(user: str, password: str) -> str:
    if not user or ":" in user or any(c.isspace() for c in user):
        raise ValueError("a user name must be non-empty, without ':' or spaces")
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    return f"{user}:{generate_password_hash(password)}"


def passwd_main(argv: list[str] | None = None) -> int:
    """``interp-passwd FILE USER``: add or replace a user's hashed password in FILE."""
    p = argparse.ArgumentParser(
        prog="interp-passwd",
        description="Add or change a user in the app's users file (passwords are hashed).",
    )
    p.add_argument("file", help="users file (created if missing); point INTERP_USERS_FILE at it")
    p.add_argument("user", help="user name")
    args = p.parse_args(argv)
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("interp-passwd: error: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        line = hash_line(args.user, password)
    except ValueError as err:
        print(f"interp-passwd: error: {err}", file=sys.stderr)
        return 2
    path = Path(args.file)
    old = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    kept = [x for x in old if x.partition(":")[0].strip() != args.user]
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=".users-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join([*kept, line]) + "\n")
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)
    print(f"interp-passwd: {'changed' if len(kept) < len(old) else 'added'} {args.user} in {path}")
    return 0
