"""HTTP Basic auth for every route but /healthz (the Dash routes too).

On when credentials are set (ARCHITECT_USER / ARCHITECT_PASSWORD) or when the server binds
beyond loopback; then, without credentials, an admin password is generated once, stored in
the data dir (mode 0600) and printed. Comparison is constant-time; an address that fails
too often is refused with 429 for a while.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import sys
import threading
import time
from collections import deque
from pathlib import Path

from flask import Flask, request

from architect.api.errors import TooMany, Unauthorized

# /api/bus and /api/bus/join are open so a node with only the dashboard URL can ask to join
# the secured bus (it is then pending until accepted, unless it sends the login or token)
PUBLIC_PATHS = frozenset({"/healthz", "/api/bus", "/api/bus/join"})
MAX_FAILURES = 10        # per address within FAILURE_WINDOW ...
FAILURE_WINDOW = 60.0
LOCKOUT = 60.0           # ... then 429 for this long
LOOPBACK = ("127.0.0.1", "localhost", "::1")
PASSWORD_FILE = "web-password"


def resolve_credentials(config, announce=print) -> tuple[str, str] | None:
    """(user, password) when auth is on, else None."""
    if config.user and config.password:
        return config.user, config.password
    if config.host in LOOPBACK:
        return None
    path = Path(config.data_dir) / PASSWORD_FILE
    if path.exists():
        return "admin", path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(password + "\n")
    announce(f"\n  The web server listens beyond loopback and no ARCHITECT_USER/ARCHITECT_PASSWORD "
             f"is set.\n  Log in as admin with password: {password}\n  (stored in {path}, "
             f"mode 0600; shown only this once)\n", file=sys.stderr)
    return "admin", password


class Limiter:
    """Counts failed logins per address; locks an address out after too many."""

    def __init__(self):
        self._fails: dict[str, deque] = {}
        self._locked: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked(self, addr: str, now: float) -> float:
        with self._lock:
            until = self._locked.get(addr, 0.0)
            if until <= now:
                self._locked.pop(addr, None)
                return 0.0
            return until - now

    def failed(self, addr: str, now: float) -> None:
        with self._lock:
            fails = self._fails.setdefault(addr, deque())
            fails.append(now)
            while fails and fails[0] < now - FAILURE_WINDOW:
                fails.popleft()
            if len(fails) >= MAX_FAILURES:
                self._locked[addr] = now + LOCKOUT
                fails.clear()
            if len(self._fails) > 10_000:  # bound memory under a spray of addresses
                self._fails.clear()


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an Authorization header, or None if absent or malformed."""
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    user, sep, password = raw.partition(":")
    return (user, password) if sep else None


def login_state(app: Flask) -> bool:
    """For open routes: True when the request carries the right web login (or auth is off),
    False when it carries none. A wrong login counts as a failed attempt and is refused (401),
    and a locked-out address is refused (429), exactly as on every protected route."""
    credentials = app.config.get("ARCHITECT_CREDENTIALS")
    if credentials is None:
        return True
    limiter: Limiter = app.extensions["architect_limiter"]
    addr, now = request.remote_addr or "?", time.monotonic()
    wait = limiter.locked(addr, now)
    if wait:
        raise TooMany("too many failed logins from this address; try again later",
                      headers={"Retry-After": str(int(wait) + 1)})
    header = request.headers.get("Authorization")
    if header is None:
        return False
    given = parse_basic(header)
    if given is not None and _matches(given, credentials):
        return True
    limiter.failed(addr, now)
    raise Unauthorized("wrong user or password", headers=CHALLENGE)


def _matches(given: tuple[str, str], want: tuple[str, str]) -> bool:
    user_ok = hmac.compare_digest(given[0].encode("utf-8"), want[0].encode("utf-8"))
    pass_ok = hmac.compare_digest(given[1].encode("utf-8"), want[1].encode("utf-8"))
    return user_ok and pass_ok


CHALLENGE = {"WWW-Authenticate": 'Basic realm="architect", charset="UTF-8"'}


def install(app: Flask, credentials: tuple[str, str] | None) -> None:
    app.config["ARCHITECT_CREDENTIALS"] = credentials
    if credentials is None:
        app.config["ARCHITECT_AUTH"] = False
        return
    app.config["ARCHITECT_AUTH"] = True
    limiter = app.extensions["architect_limiter"] = Limiter()
    challenge = CHALLENGE

    @app.before_request
    def _check():
        if request.path in PUBLIC_PATHS:
            return None
        addr = request.remote_addr or "?"
        now = time.monotonic()
        wait = limiter.locked(addr, now)
        if wait:
            raise TooMany("too many failed logins from this address; try again later",
                          headers={"Retry-After": str(int(wait) + 1)})
        given = parse_basic(request.headers.get("Authorization"))
        if given is None:
            raise Unauthorized("authentication required (HTTP Basic)", headers=challenge)
        if not _matches(given, credentials):
            limiter.failed(addr, now)
            raise Unauthorized("wrong user or password", headers=challenge)
        return None
