"""Control methods keys.*: who may talk on a secured (CURVE) bus."""

from __future__ import annotations

from architect.broker import accounts
from architect.broker.identity import cut_off
from architect.broker.methods import ADMIN, read, write
from architect.broker.params import NotFound, RequestError, get
from architect.bus.security import (LOCAL, RESERVED, ROLES, KeyConflict, KeyStoreError,
                                    valid_public_key)


def _security(b):
    if b.security is None:
        raise RequestError("the bus is not secured (CURVE is off): there are no keys",
                           code="not_secured")
    return b.security


def keys_list(b, params, ctx):
    """{} → {secured, authorized: [name], pending: [name]}."""
    if b.security is None:
        return {"secured": False, "authorized": [], "pending": []}
    return {"secured": True, **b.security.store.listing()}


def _one_name_per_key(sec, name: str, public: bytes) -> None:
    """A public key is authorized under one name only (else whoever holds a join token
    could file a node's key under a second name, and its connections would get either)."""
    holder = sec.by_public.get(public)
    if holder is not None and holder[0] != name:
        raise KeyConflict(f"this key is already authorized as {holder[0]!r}")


def keys_join(b, params, ctx):
    """{name, public_key, token?, approved?: bool} → {name, status: authorized | pending,
    token?: why a token did not count}. `approved` is set by the web server when the request
    carried an admin's web login. A token is the shared ARCHITECT_JOIN_TOKEN or one minted by
    keys.token (limited uses, expiry): a valid one authorizes at once and uses it up."""
    sec = _security(b)
    name = get(params, "name", str)
    token = get(params, "token", str, "")
    out = {"name": name}
    try:
        public = valid_public_key(get(params, "public_key", str))
        if name in RESERVED:
            raise KeyStoreError(f"the key name {name!r} is reserved for the master")
        if sec.store.taken(name, public):
            raise RequestError(f"node {name!r} is already on the bus with another key; revoke "
                               "that key first (architect keys revoke NAME)", code="conflict")
        _one_name_per_key(sec, name, public)
        approved = get(params, "approved", bool, False)
        already = sec.store.public_of(sec.store.authorized, name) == public
        if not approved and token and not already:  # a token counts nodes, not restarts
            why = accounts.use_join_token(b, token, ctx.now)
            approved = why is None
            if why:
                out["token"] = why
        if approved:
            sec.store.authorize(name, public)
            status = "authorized"
        else:
            status = sec.store.request(name, public)
    except KeyConflict as exc:
        raise RequestError(str(exc), code="conflict") from None
    except KeyStoreError as exc:
        raise RequestError(str(exc)) from None
    sec.reload()
    b.emit(f"keys.{name}.{status}", {"name": name, "status": status})
    return dict(out, status=status, role=sec.roles.get(name))


def keys_accept(b, params, ctx):
    """{name} → {name, status: authorized, role: node}: let a pending node in."""
    sec = _security(b)
    name = get(params, "name", str)
    try:
        public = sec.store.public_of(sec.store.pending, name)
        if public is not None:
            _one_name_per_key(sec, name, public)
        sec.store.accept(name)
    except KeyConflict as exc:
        raise RequestError(str(exc), code="conflict") from None
    except KeyStoreError as exc:
        raise NotFound(str(exc)) from None
    sec.reload()
    b.emit(f"keys.{name}.authorized", {"name": name, "status": "authorized"})
    return {"name": name, "status": "authorized", "role": sec.roles.get(name)}


def keys_revoke(b, params, ctx):
    """{name} → {name, revoked, workers_cut}: the key's messages are refused from now on,
    its workers are dropped at once and their tasks requeued (they run elsewhere)."""
    sec = _security(b)
    name = get(params, "name", str)
    if name == LOCAL:
        raise RequestError("the master's own key cannot be revoked")
    try:
        found = sec.store.revoke(name)
    except KeyStoreError as exc:
        raise RequestError(str(exc)) from None
    if not found:
        raise NotFound(f"no key for {name!r}")
    sec.reload()
    cut = cut_off(b, name, ctx.now)
    b.emit(f"keys.{name}.revoked", {"name": name, "workers_cut": cut})
    return {"name": name, "revoked": True, "workers_cut": cut}


def keys_role(b, params, ctx):
    """{name, role: node | viewer | operator | admin} → {name, role}."""
    sec = _security(b)
    name, role = get(params, "name", str), get(params, "role", str)
    if role not in ROLES:
        raise RequestError(f"role must be one of {', '.join(ROLES)}")
    try:
        sec.store.set_role(name, role)
    except KeyStoreError as exc:  # an invalid name cannot be there either
        raise NotFound(str(exc)) if "stays admin" not in str(exc) else RequestError(str(exc))
    sec.reload()
    b.emit(f"keys.{name}.role", {"name": name, "role": role})
    return {"name": name, "role": role}


KEY_METHODS = {"keys.list": read(keys_list, ADMIN), "keys.join": write(keys_join, ADMIN),
               "keys.accept": write(keys_accept, ADMIN), "keys.revoke": write(keys_revoke, ADMIN),
               "keys.role": write(keys_role, ADMIN)}
