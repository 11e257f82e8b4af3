"""REST views: who am I, web users, API tokens, join tokens, key roles, the audit log.

All but /api/me need the admin role; the broker checks it (methods.py), so a viewer or
operator gets 403 from there, and the attempt is audited.
"""

from __future__ import annotations

from flask import g, jsonify

from architect.api.errors import BadRequest
from architect.api.inputs import field, json_body, query_int, query_str
from architect.api.views_nodes import broker


def me():
    ident = g.identity
    return jsonify({"user": ident.user, "role": ident.role, "how": ident.how})


def audit():
    since = query_int("since", -1, 0, 1 << 40)
    params = {"limit": query_int("limit", 100, 1, 10_000)}
    if since >= 0:
        params["since"] = since
    for name in ("who", "method"):
        value = query_str(name)
        if value:
            params[name] = value
    rows = broker().call("audit.list", params)
    return jsonify({"audit": rows, "count": len(rows)})


def list_users():
    rows = broker().call("users.list")
    return jsonify({"users": rows, "count": len(rows)})


def add_user():
    data = json_body()
    out = broker().call("users.add", {"name": field(data, "name", str),
                                      "role": field(data, "role", str),
                                      "password": field(data, "password", str)})
    return jsonify(out), 201


def _not_null(data: dict, *names: str) -> None:
    for name in names:
        if name in data and data[name] is None:
            raise BadRequest(f"field '{name}' must not be null (leave it out instead)")


def change_user(name):
    data = json_body()
    _not_null(data, "password", "role")
    params = {"name": name}
    for key in ("password", "role"):
        value = field(data, key, str, None)
        if value is not None:
            params[key] = value
    return jsonify(broker().call("users.passwd", params))


def remove_user(name):
    return jsonify(broker().call("users.remove", {"name": name}))


def list_tokens():
    rows = broker().call("tokens.list", {"kind": query_str("kind", ("api", "join"))})
    return jsonify({"tokens": rows, "count": len(rows)})


def create_token():
    data = json_body()
    _not_null(data, "role")
    params = {"role": field(data, "role", str, "operator"), "name": field(data, "name", str, "")}
    ttl = field(data, "ttl", float, None)
    if ttl is not None:
        params["ttl"] = ttl
    return jsonify(broker().call("tokens.create", params)), 201


def revoke_token(token_id):
    return jsonify(broker().call("tokens.revoke", {"id": token_id}))


def join_token():
    data = json_body()
    params = {"uses": field(data, "uses", int, 1)}
    ttl = field(data, "ttl", float, None)
    if ttl is not None:
        params["ttl"] = ttl
    return jsonify(broker().call("keys.token", params)), 201


def key_role(name):
    data = json_body()
    return jsonify(broker().call("keys.role", {"name": name, "role": field(data, "role", str)}))

