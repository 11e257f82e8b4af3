"""Logins for every route but the open ones (the Dash routes too): HTTP Basic (the
bootstrap admin, or a web user from the database) or `Authorization: Bearer TOKEN` (an API
token). Each has a role (viewer, operator, admin); the broker checks it per method.

Auth is on when credentials are set (ARCHITECT_USER / ARCHITECT_PASSWORD) or when the server
binds beyond loopback; then, without credentials, an admin password is generated once, stored
in the data dir (mode 0600) and printed. With auth off (loopback, nothing set) a request with
no credentials is the machine's owner (admin; guard.py refuses other local users), and one
with credentials is checked all the same. Comparison is constant-time; an address that fails
too often is refused with 429 for a while.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import sys
import threading
import time
from collections import deque
from pathlib import Path

from flask import Flask, g, request

from architect.api.accounts import Accounts, Identity
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


def parse_bearer(header: str | None) -> str | None:
    if not header or header[:7].lower() != "bearer ":
        return None
    token = header[7:].strip()
    return token if 0 < len(token) <= 512 and token.isascii() and " " not in token else None


CHALLENGE = {"WWW-Authenticate": 'Basic realm="architect", charset="UTF-8"'}


def identify(app: Flask, open_route: bool = False) -> Identity | None:
    """The caller of this request, checking what it presents (a wrong login or token is a
    failed attempt: 401; a locked-out address: 429). Without credentials: with auth off, the
    local owner (admin; guard.py has checked the connection is the owner's); with auth on,
    401, or None on an open route."""
    limiter: Limiter = app.extensions["architect_limiter"]
    accounts: Accounts = app.extensions["architect_accounts"]
    addr, now = request.remote_addr or "?", time.monotonic()
    header = request.headers.get("Authorization")
    if header is None:
        if not app.config["ARCHITECT_AUTH"]:
            return Identity("local", "admin", addr, "local")
        if open_route:
            return None
        raise Unauthorized("authentication required (HTTP Basic or a Bearer token)",
                           headers=CHALLENGE)
    wait = limiter.locked(addr, now)
    if wait:
        raise TooMany("too many failed logins from this address; try again later",
                      headers={"Retry-After": str(int(wait) + 1)})
    token = parse_bearer(header)
    if token is not None:
        ident = accounts.token(token, addr)
        why = "unknown, expired or revoked token"
    else:
        given = parse_basic(header)
        ident = accounts.password(given[0], given[1], addr) if given else None
        why = "wrong user or password"
    if ident is None:
        limiter.failed(addr, now)
        raise Unauthorized(why, headers=CHALLENGE)
    return ident


def login_state(app: Flask) -> bool:
    """For open routes: True when the request carries an admin's login (or auth is off),
    False when it carries none. A wrong one is refused as on every route (401 / 429)."""
    ident = identify(app, open_route=True)
    return ident is not None and ident.role == "admin"


def install(app: Flask, credentials: tuple[str, str] | None, db_path: str | None = None) -> None:
    """Every request gets `g.identity` (None on an open route without credentials). With
    `credentials` (the bootstrap admin) auth is on: every route but the open ones needs a
    login; users and API tokens from the database log in too, auth on or off."""
    app.config["ARCHITECT_CREDENTIALS"] = credentials
    app.config["ARCHITECT_AUTH"] = credentials is not None
    app.extensions["architect_limiter"] = Limiter()
    cfg = app.extensions["architect"].config if "architect" in app.extensions else None
    if db_path is None:
        db_path = cfg.db_path
    app.extensions["architect_accounts"] = Accounts(
        db_path, credentials, cfg.database_url if cfg is not None else "")

    @app.before_request
    def _check():
        # open routes answer anyone; /api/bus/join looks at a login itself (login_state)
        g.identity = None if request.path in PUBLIC_PATHS else identify(app)
        return None
