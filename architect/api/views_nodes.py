"""REST views: nodes, health, alerts, placement recommendations."""

from __future__ import annotations

from flask import current_app, jsonify, request

from architect.api.errors import BadRequest
from architect.api.inputs import field, json_body, query_flag, query_int, query_list, query_str
from architect.bus.protocol import LEVELS


def broker():
    return current_app.extensions["architect"].broker


def list_nodes():
    status = query_str("status", LEVELS)
    params = {"render": "json", **({"status": status} if status else {})}
    out = broker().call("node.list", params)  # JSON made by the broker, passed through
    body = b'{"nodes":' + out["json"] + b',"count":' + str(out["count"]).encode() + b"}"
    return current_app.response_class(body, mimetype="application/json")


def register_node():
    data = json_body()
    params = {"name": field(data, "name", str),
              "hostname": field(data, "hostname", str, ""),
              "ip_address": field(data, "ip_address", str, ""),
              "capabilities": field(data, "capabilities", list, [])}
    ssh = field(data, "ssh", dict, None)
    if ssh is not None:
        params["ssh"] = ssh
    node = broker().call("node.register", params)
    return jsonify(node), 201 if node.get("created") else 200


def get_node(key):
    return jsonify(broker().call("node.get", {"node": key}))


def remove_node(key):
    return jsonify(broker().call("node.remove", {"node": key}))


def drain_node(key):
    return jsonify(broker().call("node.drain", {"node": key}))


def undrain_node(key):
    return jsonify(broker().call("node.undrain", {"node": key}))


METRIC_RANGES = ("15m", "1h", "6h", "24h", "2d", "7d", "30d", "90d", "1y")
RESOLUTIONS = ("auto", "raw", "1m", "1h")


def node_metrics(key):
    """One node's metrics history: raw samples for short windows, the 1-minute roll-up up
    to two days, the 1-hour one beyond (`resolution` says which was read)."""
    params = {"node": key, "range": query_str("range", METRIC_RANGES) or "1h",
              "points": query_int("points", 300, 2, 5000),
              "resolution": query_str("resolution", RESOLUTIONS) or "auto"}
    return jsonify(broker().call("node.metrics", params))


def nodes_health():
    return jsonify(broker().call("health.summary"))


def list_alerts():
    params = {"all": query_flag("all"), "limit": query_int("limit", 500, 1, 10_000)}
    for name, choices in (("node", None), ("level", ("warning", "critical", "offline")),
                          ("kind", ("level", "flapping", "rule", "security"))):
        value = query_str(name, choices)
        if value:
            params[name] = value
    since = query_int("since", 0, 1, 3660 * 86400)
    if since:
        params["since"] = since
    alerts = broker().call("alert.list", params)
    return jsonify({"alerts": alerts, "count": len(alerts)})


def ack_alert(alert_id):
    from architect.api.inputs import raw_body
    by = "api"
    if raw_body().strip():
        by = field(json_body(), "by", str, "api")
    if request.authorization and request.authorization.username:
        by = request.authorization.username
    from architect.api.inputs import path_id
    return jsonify(broker().call("alert.ack", {"id": path_id(alert_id, "alert"), "by": by}))


def recommend():
    params = {"count": query_int("count", 3, 1, 1000), "requirements": query_list("requirements")}
    task_type = query_str("task_type")
    if task_type:
        params["task_type"] = task_type
    recs = broker().call("placement.recommend", params)
    return jsonify({"recommendations": recs, "count": len(recs)})


def distribution():
    return jsonify(broker().call("placement.distribution"))


def _check_json_list(data: dict, name: str):
    value = field(data, name, list, [])
    if not all(isinstance(v, str) for v in value):
        raise BadRequest(f"field '{name}' must be a list of strings")
    return value
