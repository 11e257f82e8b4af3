"""Control methods for web users, API tokens, join tokens and the audit log (all admin).

Passwords are stored as argon2id hashes, never plain; API and join tokens as SHA-256
digests (they are long random strings, shown once when made). Every write here commits
before its reply.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3

from argon2 import PasswordHasher

from architect.broker.methods import ADMIN, WEB_ROLES, read, write
from architect.broker.params import NotFound, RequestError, get

USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@\-]{0,63}")
MIN_PASSWORD = 8
MAX_TTL = 366 * 86400
API_PREFIX, JOIN_PREFIX = "arch_", "archjoin_"
# OWASP's argon2id minimum (19 MiB, 2 passes): about 25 ms here, checked once then cached
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _stored(fn, *args):
    """Run a store write; a locked or failing database is a clear error, not a crash."""
    errors = getattr(getattr(fn, "__self__", None), "errors", None) or (sqlite3.Error,)
    try:
        return fn(*args)
    except errors as exc:
        raise RequestError(f"could not write the database: {exc}", code="store_unavailable") \
            from None


def _user_name(params, existing: bool = False) -> str:
    """A valid user name; for an existing user (passwd, remove) an invalid one cannot be
    there: not_found."""
    name = get(params, "name", str)
    if not USER_NAME.fullmatch(name):
        if existing:
            raise NotFound(f"no user {name[:80]!r}")
        raise RequestError("user name must be 1-64 letters, digits, '_', '.', '@' or '-'")
    return name


def _role(params, default=None) -> str:
    role = get(params, "role", str, default)
    if role not in WEB_ROLES:
        raise RequestError(f"role must be one of {', '.join(WEB_ROLES)}")
    return role


def _password(params) -> str:
    password = get(params, "password", str)
    if len(password) < MIN_PASSWORD or len(password) > 1024:
        raise RequestError(f"password must be {MIN_PASSWORD}-1024 characters")
    return password


def users_add(b, params, ctx):
    """{name, role: viewer | operator | admin, password} → {name, role}."""
    name, role, password = _user_name(params), _role(params), _password(params)
    if b.store.user(name) is not None:
        raise RequestError(f"user {name!r} exists; use users.passwd or users.remove",
                           code="conflict")
    _stored(b.store.save_user, {"name": name, "role": role, "password_hash": HASHER.hash(password),
                                "created_at": ctx.now, "updated_at": ctx.now,
                                "created_by": ctx.caller.name})
    return {"name": name, "role": role}


def users_passwd(b, params, ctx):
    """{name, password?, role?} → {name, role}: a new password and/or role."""
    name = _user_name(params, existing=True)
    row = b.store.user(name)
    if row is None:
        raise NotFound(f"no user {name!r}")
    if params.get("password") is None and params.get("role") is None:
        raise RequestError("give a new password, a new role, or both")
    if params.get("password") is not None:
        row["password_hash"] = HASHER.hash(_password(params))
    if params.get("role") is not None:
        row["role"] = _role(params)
    row["updated_at"] = ctx.now
    _stored(b.store.save_user, row)
    return {"name": name, "role": row["role"]}


def users_remove(b, params, ctx):
    """{name} → {name, removed: true}."""
    name = _user_name(params, existing=True)
    if not _stored(b.store.delete_user, name):
        raise NotFound(f"no user {name!r}")
    return {"name": name, "removed": True}


def users_list(b, params, ctx):
    """{} → [{name, role, created_at, updated_at, created_by}] (no hashes)."""
    return b.store.users()


def _ttl(params):
    ttl = get(params, "ttl", (int, float), None)
    if ttl is not None and not 1 <= ttl <= MAX_TTL:
        raise RequestError(f"ttl must be 1-{MAX_TTL} seconds")
    return ttl


def _label(params) -> str | None:
    name = get(params, "name", str, "")
    if len(name) > 64:
        raise RequestError("a token's name is at most 64 characters")
    return name or None


def _mint(b, ctx, kind: str, prefix: str, role, name, ttl, uses) -> dict:
    token = prefix + secrets.token_urlsafe(32)
    row = {"kind": kind, "name": name, "role": role, "token_hash": token_digest(token),
           "created_at": ctx.now, "created_by": ctx.caller.name,
           "expires_at": ctx.now + ttl if ttl else None, "uses_left": uses, "used_count": 0}
    token_id = _stored(b.store.add_token, row)
    return {"id": token_id, "token": token, "kind": kind, "role": role, "name": name,
            "expires_at": row["expires_at"], "uses_left": uses}


def tokens_create(b, params, ctx):
    """{role: viewer | operator | admin, name?, ttl? seconds} → {id, token, …}: an API token,
    sent as `Authorization: Bearer TOKEN`. The token is shown only in this reply."""
    return _mint(b, ctx, "api", API_PREFIX, _role(params, "operator"), _label(params),
                 _ttl(params), None)


def keys_token(b, params, ctx):
    """{ttl? seconds (3600), uses? (1)} → {id, token, expires_at, uses_left}: a join token;
    a node presenting it joins the secured bus at once (as role node), `uses` times at most."""
    uses = get(params, "uses", int, 1)
    if not 1 <= uses <= 100_000:
        raise RequestError("uses must be 1-100000")
    ttl = _ttl(params)
    return _mint(b, ctx, "join", JOIN_PREFIX, "node", _label(params),
                 3600 if ttl is None else ttl, uses)


def tokens_list(b, params, ctx):
    """{kind?: api | join} → [token without its secret]."""
    kind = get(params, "kind", str, None)
    if kind not in (None, "api", "join"):
        raise RequestError("kind must be api or join")
    return b.store.tokens(kind)


def tokens_revoke(b, params, ctx):
    """{id} → {id, revoked: true}: an API or join token stops working at once."""
    token_id = get(params, "id", int)
    if not _stored(b.store.revoke_token, token_id, ctx.now):
        raise NotFound(f"no live token {token_id}")
    return {"id": token_id, "revoked": True}


def use_join_token(b, token: str, now: float) -> str | None:
    """None when `token` lets a node join (and a use of it is spent), else why not."""
    shared = b.config.join_token
    if shared and hmac.compare_digest(token.encode(), shared.encode()):
        return None
    row = b.store.token_by_hash(token_digest(token))
    if row is None or row["kind"] != "join":
        return "unknown token"
    if row["revoked_at"]:
        return "token revoked"
    if row["expires_at"] is not None and row["expires_at"] <= now:
        return "token expired"
    if row["uses_left"] is not None and row["uses_left"] <= 0:
        return "token used up"
    _stored(b.store.use_token, row["id"], now)
    return None


def audit_list(b, params, ctx):
    """{since? (epoch s), who?, method?, limit? (100, max 10000)} → [row] newest first:
    {id, ts, who, role, via, addr, method, target, params, outcome, error}."""
    limit = get(params, "limit", int, 100)
    if not 1 <= limit <= 10_000:
        raise RequestError("parameter 'limit' must be 1-10000")
    return b.store.audit_log(get(params, "since", (int, float), None), get(params, "who", str, None),
                             get(params, "method", str, None), limit)


ACCOUNT_METHODS = {
    "users.add": write(users_add, ADMIN),
    "users.passwd": write(users_passwd, ADMIN),
    "users.remove": write(users_remove, ADMIN),
    "users.list": read(users_list, ADMIN),
    "tokens.create": write(tokens_create, ADMIN),
    "tokens.list": read(tokens_list, ADMIN),
    "tokens.revoke": write(tokens_revoke, ADMIN),
    "keys.token": write(keys_token, ADMIN),
    "audit.list": read(audit_list, ADMIN),
}
