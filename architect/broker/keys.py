"""Control methods keys.*: who may talk on a secured (CURVE) bus."""

from __future__ import annotations

from architect.broker.params import NotFound, RequestError, get
from architect.bus.security import KeyError_, valid_public_key


def _security(b):
    if b.security is None:
        raise RequestError("the bus is not secured (CURVE is off): there are no keys",
                           code="not_secured")
    return b.security


def keys_list(b, params, now):
    """{} → {secured, authorized: [name], pending: [name]}."""
    if b.security is None:
        return {"secured": False, "authorized": [], "pending": []}
    return {"secured": True, **b.security.store.listing()}


def keys_join(b, params, now):
    """{name, public_key, approved?: bool} → {status: authorized | pending}. `approved` is
    set by the web server when the request carried the web credentials or the join token."""
    sec = _security(b)
    name = get(params, "name", str)
    try:
        public = valid_public_key(get(params, "public_key", str))
        if get(params, "approved", bool, False):
            sec.store.authorize(name, public)
            status = "authorized"
        else:
            status = sec.store.request(name, public)
    except KeyError_ as exc:
        raise RequestError(str(exc)) from None
    sec.reload()
    b.emit(f"keys.{name}.{status}", {"name": name, "status": status})
    return {"name": name, "status": status}


def keys_accept(b, params, now):
    """{name} → {name, status: authorized}: let a pending node in."""
    sec = _security(b)
    name = get(params, "name", str)
    try:
        sec.store.accept(name)
    except KeyError_ as exc:
        raise NotFound(str(exc)) from None
    sec.reload()
    b.emit(f"keys.{name}.authorized", {"name": name, "status": "authorized"})
    return {"name": name, "status": "authorized"}


def keys_revoke(b, params, now):
    """{name} → {name, revoked}: its new connections are refused (open ones end when they
    reconnect)."""
    sec = _security(b)
    name = get(params, "name", str)
    if name == "local":
        raise RequestError("the master's own key cannot be revoked")
    try:
        found = sec.store.revoke(name)
    except KeyError_ as exc:
        raise RequestError(str(exc)) from None
    if not found:
        raise NotFound(f"no key for {name!r}")
    sec.reload()
    return {"name": name, "revoked": True}


KEY_METHODS = {"keys.list": keys_list, "keys.join": keys_join, "keys.accept": keys_accept,
               "keys.revoke": keys_revoke}
