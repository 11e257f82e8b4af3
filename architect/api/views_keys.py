"""REST views: joining the secured bus, and the operator's key list / accept / revoke."""

from __future__ import annotations

from flask import current_app, jsonify

from architect.api.auth import login_state
from architect.api.inputs import field, json_body
from architect.api.views_nodes import broker


def join():
    """Open route: a node asks to be let on the bus with its public key. It is authorized at
    once when it sends an admin's web login or a join token (the shared one, or one from
    `architect keys token`: the broker checks and spends it), else it waits as pending."""
    data = json_body()
    approved = login_state(current_app)
    out = broker().call("keys.join", {"name": field(data, "name", str),
                                      "public_key": field(data, "public_key", str),
                                      "token": field(data, "token", str, ""),
                                      "approved": approved}, as_server=True)
    return jsonify(out), 200 if out["status"] == "authorized" else 202


def list_keys():
    return jsonify(broker().call("keys.list"))


def accept(name):
    return jsonify(broker().call("keys.accept", {"name": name}))


def revoke(name):
    return jsonify(broker().call("keys.revoke", {"name": name}))
