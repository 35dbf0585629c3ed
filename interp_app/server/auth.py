"""HTTP basic authentication for every route, from a file of hashed passwords.

The users file holds ``user:hash`` lines made by ``interp-passwd`` (Werkzeug's salted scrypt
hashes): no plain password is ever stored. A guard before every request (pages, Dash
callbacks, assets, component suites; every method, OPTIONS too) checks the credentials;
Flask-HTTPAuth builds the challenge. ``/healthz`` stays open for container health checks but
tells only "ok" to strangers.

The file is read again whenever it changes, so an added or removed user reaches every
worker without a restart; while it is missing or broken the last good copy serves, and the
log says so. An unknown user costs one hash check like a known one, and an address with too
many recent failures gets a 429 without a check: neither timing nor volume finds names or
passwords.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import logging
import math
import os
import secrets
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from flask import Flask, Response, request
from flask_httpauth import HTTPBasicAuth
from werkzeug.security import check_password_hash, generate_password_hash

log = logging.getLogger("interp_app.server.auth")

PUBLIC = ("/healthz",)
HASH_PREFIXES = ("scrypt:", "pbkdf2:")
FAILURE_LIMIT = 20  # failed logins per address and window before a 429
FAILURE_WINDOW_S = 600.0
TRACKED_ADDRESSES = 10_000  # bounds the throttle's memory under a spray of addresses


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


Signature = tuple[int, int, int]


def _signature(path: Path) -> Signature | None:
    """What changes when the file is edited or replaced (``interp-passwd`` renames over it)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class UsersFile:
    """The users file, read again whenever its mtime, size or inode changes.

    A file that turns missing or broken leaves the last good copy serving (logged once per
    change): a typo or a half-copied file neither locks everyone out nor stops a worker.
    The first read has no copy to fall back on and raises ``UsersFileError``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen = _signature(self.path)
        self._users = read_users(self.path)

    def current(self) -> dict[str, str]:
        """The users as the file says now, or the last good copy if it cannot be read."""
        seen = _signature(self.path)
        if seen != self._seen:
            with self._lock:
                if seen != self._seen:
                    self._reload(seen)
        return self._users

    def _reload(self, seen: Signature | None) -> None:
        self._seen = seen
        try:
            users = read_users(self.path)
        except UsersFileError as err:
            log.warning("%s; keeping the last good copy (%d user(s))", err, len(self._users))
            return
        self._users = users
        log.info("users file %s read again: %d user(s)", self.path, len(users))


_shared: dict[str, UsersFile] = {}
_shared_lock = threading.Lock()


def shared_users_file(path: str | Path) -> UsersFile:
    """One ``UsersFile`` per path and process. gunicorn forks its workers from the master,
    which read the file at start: a worker inherits that copy and boots without the file."""
    key = os.path.abspath(path)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = UsersFile(key)
        return _shared[key]


def hash_method(hashed: str) -> str:
    """``scrypt:32768:8:1`` from a Werkzeug hash: what checking it costs."""
    return hashed.partition("$")[0]


class Verifier:
    """Checks a user's password; remembers good pairs so each request does not pay scrypt.

    An unknown user's password is checked against a dummy hash of the same method, so a
    wrong name costs what a wrong password costs and timing does not tell which names exist.
    """

    def __init__(self, users: dict[str, str] | UsersFile):
        self.source = users
        self._good: set[bytes] = set()
        self._dummies: dict[str, str] = {}
        self._lock = threading.Lock()
        self._dummy(self.users)  # made now, not on a stranger's first try

    @property
    def users(self) -> dict[str, str]:
        return self.source.current() if isinstance(self.source, UsersFile) else self.source

    def _dummy(self, users: dict[str, str]) -> str:
        """A hash of a random password, made with the method of the configured hashes."""
        method = hash_method(next(iter(users.values()))) if users else "scrypt"
        if method not in self._dummies:
            dummy = generate_password_hash(secrets.token_urlsafe(16), method=method)
            with self._lock:
                self._dummies.setdefault(method, dummy)
        return self._dummies[method]

    def known_good(self, username: str | None, password: str | None) -> bool:
        """Whether this pair already passed a hash check (costs no hash: a throttled
        address's users who logged in before are not locked out by a stranger's guesses)."""
        hashed = self.users.get(username or "")
        if hashed is None or not password:
            return False
        token = hashlib.sha256(f"{username}\0{password}\0{hashed}".encode()).digest()
        with self._lock:
            return token in self._good

    def __call__(self, username: str | None, password: str | None) -> str | None:
        users = self.users
        hashed = users.get(username or "")
        if not password:
            return None
        if hashed is None:
            check_password_hash(self._dummy(users), password)
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


class Throttle:
    """Failed logins per client address over a sliding window.

    Past ``limit`` failures within ``window`` seconds an address gets a 429 without a
    password check until its oldest failure ages out. Successes neither count nor reset: an
    active user sharing the address (a NAT, a proxy) must not wipe a guesser's record.
    """

    def __init__(
        self,
        limit: int = FAILURE_LIMIT,
        window: float = FAILURE_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._failures.get(address, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try a password again (0: now)."""
        now = self.clock()
        with self._lock:
            times = self._recent(address, now)
            if len(times) < self.limit:
                return 0.0
            return times[-self.limit] + self.window - now

    def failed(self, address: str) -> None:
        now = self.clock()
        with self._lock:
            times = self._recent(address, now)
            times.append(now)
            while len(times) > self.limit:
                times.popleft()
            self._failures.pop(address, None)
            self._failures[address] = times  # most recent last: the oldest go first
            while len(self._failures) > TRACKED_ADDRESSES:
                del self._failures[next(iter(self._failures))]


def check_request(verify: Verifier, throttle: Throttle) -> int:
    """200 (a configured user), 401 (no or wrong credentials) or 429 (too many failures)."""
    creds = request.authorization
    if creds is None:
        return 401
    address = request.remote_addr or "unknown"
    if throttle.retry_after(address) > 0:
        return 200 if verify.known_good(creds.username, creds.password) else 429
    if verify(creds.username, creds.password):
        return 200
    throttle.failed(address)
    return 401


def too_many_failures(throttle: Throttle) -> Response:
    wait = math.ceil(throttle.retry_after(request.remote_addr or "unknown"))
    response = Response("Too many failed logins from this address; try again later.\n", 429)
    response.headers["Retry-After"] = str(max(wait, 1))
    response.mimetype = "text/plain"
    return response


def protect(server: Flask, users: dict[str, str] | UsersFile) -> Verifier:
    """Require a configured user on every route and method but the health check.

    Flask-HTTPAuth's ``login_required`` lets OPTIONS through unchecked; this guard does not.
    """
    auth = HTTPBasicAuth(realm="Transformer explorer")
    verify = Verifier(users)
    throttle = Throttle()
    server.config["AUTH_THROTTLE"] = throttle

    @server.before_request
    def _guard():
        if request.path in PUBLIC:
            return None
        status = check_request(verify, throttle)
        if status == 200:
            return None
        if status == 429:
            return too_many_failures(throttle)
        return auth.auth_error_callback(401)

    return verify


def is_authorized(server: Flask) -> bool:
    """Whether this request may see details (always, when no users are configured).

    Wrong credentials and a throttled address get the same answer as no credentials."""
    verify: Verifier | None = server.config.get("AUTH_VERIFIER")
    if verify is None:
        return True
    return check_request(verify, server.config["AUTH_THROTTLE"]) == 200


def hash_line(user: str, password: str) -> str:
    """One users-file line; refuses names the reader would misread (``#`` starts a comment)."""
    if not user or ":" in user or any(c.isspace() for c in user):
        raise ValueError("a user name must be non-empty, without ':' or spaces")
    if user.startswith("#"):
        raise ValueError("a user name must not start with '#' (the users file's comments do)")
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
