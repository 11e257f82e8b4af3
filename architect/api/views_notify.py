"""REST views: notification channels, routing rules, delivery attempts, silences, and a
node's maintenance mode (issue 14). The broker checks every field and each role."""

from __future__ import annotations

from flask import jsonify

from architect.api.errors import BadRequest
from architect.api.inputs import json_body, path_id, query_flag, query_int, query_str
from architect.api.views_nodes import broker

OUTCOMES = ("sent", "failed", "silenced")


def _listing(key: str, items: list):
    return jsonify({key: items, "count": len(items)})


def list_channels():
    return _listing("channels", broker().call("notify.channels", {}))


def add_channel():
    data = json_body()
    return jsonify(broker().call("notify.channel.add", data)), 201


def remove_channel(name):
    return jsonify(broker().call("notify.channel.remove", {"name": name}))


def test_channel(name):
    return jsonify(broker().call("notify.channel.test", {"name": name})), 202


def list_rules():
    return _listing("rules", broker().call("notify.rules", {}))


def add_rule():
    return jsonify(broker().call("notify.rule.add", json_body())), 201


def remove_rule(name):
    return jsonify(broker().call("notify.rule.remove", {"name": name}))


def list_deliveries():
    params = {"limit": query_int("limit", 100, 1, 10_000)}
    for key in ("channel",):
        value = query_str(key)
        if value:
            params[key] = value
    outcome = query_str("outcome", OUTCOMES)
    if outcome:
        params["outcome"] = outcome
    for key in ("alert_id", "delivery"):
        value = query_int(key, 0, 0, 1 << 62)
        if value:
            params[key] = value
    return _listing("deliveries", broker().call("notify.deliveries", params))


def notify_status():
    return jsonify(broker().call("notify.status", {}))


def list_silences():
    return _listing("silences", broker().call("silence.list", {"all": query_flag("all")}))


def add_silence():
    return jsonify(broker().call("silence.add", json_body())), 201


def remove_silence(silence_id):
    return jsonify(broker().call("silence.remove", {"id": path_id(silence_id, "silence")}))


def node_maintenance(key):
    data = json_body()
    extra = sorted(set(data) - {"on", "duration", "comment"})
    if extra:
        raise BadRequest(f"unknown field {', '.join(map(repr, extra))} (known: comment, "
                         "duration, on)")
    on = data.get("on")
    if not isinstance(on, bool):
        raise BadRequest("field 'on' must be true or false")
    params = {"node": key, "on": on}
    for name in ("duration", "comment"):
        if data.get(name) is not None:
            params[name] = data[name]
    return jsonify(broker().call("node.maintenance", params))
