"""Who a web request is: the bootstrap admin, a web user, or an API token (read-only lookups).

The web server never writes the database (the broker does); it reads users and tokens with
a read-only connection per thread (SQLite, or PostgreSQL with database_url). Argon2 checks
are slow on purpose (~25 ms), so a check that passed is remembered for a few minutes, keyed
by the user, a digest of the password given and the stored hash (a new password or role
invalidates it at once). Token lookups are not cached: revoking a token takes effect on the
next request.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

CACHE_SECONDS = 300.0
CACHE_MAX = 1000
_HASHER = PasswordHasher()


@dataclass(frozen=True)
class Identity:
    user: str
    role: str            # viewer | operator | admin
    addr: str
    how: str             # local | password | token


class Accounts:
    def __init__(self, db_path: str, bootstrap: tuple[str, str] | None, database_url: str = ""):
        self.db_path = db_path
        self.database_url = database_url
        self.bootstrap = bootstrap
        self._errors: tuple = (sqlite3.Error,)
        if database_url:
            import psycopg
            self._errors = (psycopg.Error,)
        self._local = threading.local()
        self._cache: dict[tuple, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _connect(self):
        if self.database_url:
            from architect.broker.store.postgres import open_reader
            return open_reader(self.database_url, timeout=2)
        return sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=2.0,
                               check_same_thread=False)

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self._connect()
            except self._errors:
                return None
            self._local.conn = conn
        return conn

    def _row(self, sql: str, params: tuple):
        conn = self._conn()
        if conn is None:
            return None
        if self.database_url:
            sql = sql.replace("?", "%s")
        try:
            return conn.execute(sql, params).fetchone()
        except self._errors:  # no such table yet (an older broker), or locked: nobody
            self._local.conn = None
            conn.close()
            return None

    def password(self, user: str, password: str, addr: str) -> Identity | None:
        if self.bootstrap is not None and user == self.bootstrap[0]:
            ok = hmac.compare_digest(password.encode("utf-8"), self.bootstrap[1].encode("utf-8"))
            return Identity(user, "admin", addr, "password") if ok else None
        row = self._row("SELECT role, password_hash FROM users WHERE name = ?", (user,))
        if row is None:  # user names are not secret: no dummy hash to hide their absence
            return None
        role, stored = row
        key = (user, hashlib.sha256(password.encode("utf-8")).digest(), stored)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return Identity(user, role, addr, "password")
        try:
            _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        with self._lock:
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (role, now + CACHE_SECONDS)
        return Identity(user, role, addr, "password")

    def token(self, token: str, addr: str) -> Identity | None:
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        row = self._row("SELECT id, name, role, expires_at, revoked_at FROM tokens "
                        "WHERE token_hash = ? AND kind = 'api'", (digest,))
        if row is None:
            return None
        token_id, name, role, expires_at, revoked_at = row
        if revoked_at is not None or (expires_at is not None and expires_at <= time.time()):
            return None
        return Identity(f"token:{name or token_id}", role, addr, "token")

