"""REST views: joining the secured bus, and the operator's key list / accept / revoke."""

from __future__ import annotations

import hmac

from flask import current_app, jsonify

from architect.api.auth import login_state
from architect.api.inputs import field, json_body
from architect.api.views_nodes import broker


def join():
    """Open route: a node asks to be let on the bus with its public key. It is authorized at
    once when it sends the web login or the join token, else it waits as pending."""
    data = json_body()
    config = current_app.extensions["architect"].config
    token = field(data, "token", str, "")
    approved = login_state(current_app) or bool(
        config.join_token and token and hmac.compare_digest(token.encode(), config.join_token.encode()))
    out = broker().call("keys.join", {"name": field(data, "name", str),
                                      "public_key": field(data, "public_key", str),
                                      "approved": approved})
    return jsonify(out), 200 if out["status"] == "authorized" else 202


def list_keys():
    return jsonify(broker().call("keys.list"))


def accept(name):
    return jsonify(broker().call("keys.accept", {"name": name}))


def revoke(name):
    return jsonify(broker().call("keys.revoke", {"name": name}))
