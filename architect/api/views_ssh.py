"""REST views: SSH execute / broadcast / pool / audit / trust (all through the broker)."""

from __future__ import annotations

from flask import current_app, g, jsonify, request

from architect.api.errors import BadRequest
from architect.api.inputs import field, json_body, query_int, query_str
from architect.api.views_nodes import _check_json_list, broker


def _who() -> str:
    ident = g.get("identity")
    return f"api:{ident.user}@{request.remote_addr}" if ident else f"api:{request.remote_addr}"


def _timeout(data: dict) -> tuple[dict, float]:
    timeout = field(data, "timeout", float, None)
    if timeout is not None and not 0 < timeout <= 3600:
        raise BadRequest("field 'timeout' must be between 0 and 3600 seconds")
    default = current_app.extensions["architect"].config.ssh_command_timeout
    return ({"timeout": timeout} if timeout else {}), (timeout or default)


def execute():
    data = json_body()
    node = field(data, "node_id", (int, str), None)
    if node is None:
        node = field(data, "node", (int, str))
    extra, timeout = _timeout(data)
    params = {"node": node, "command": field(data, "command", str), "who": _who(), **extra}
    return jsonify(broker().call("ssh.execute", params, timeout=timeout + 45))


def broadcast():
    data = json_body()
    extra, timeout = _timeout(data)
    params = {"command": field(data, "command", str), "who": _who(),
              "requirements": _check_json_list(data, "requirements"), **extra}
    nodes = field(data, "nodes", list, None)
    if nodes is not None:
        if not all(isinstance(n, (str, int)) and not isinstance(n, bool) for n in nodes):
            raise BadRequest("field 'nodes' must be a list of node names or ids")
        params["nodes"] = nodes
    return jsonify(broker().call("ssh.broadcast", params, timeout=timeout + 75))


def trust():
    data = json_body()
    node = field(data, "node_id", (int, str), None)
    if node is None:
        node = field(data, "node", (int, str))
    return jsonify(broker().call("ssh.trust", {"node": node, "who": _who()}, timeout=60))


def pool_stats():
    return jsonify(broker().call("ssh.pool.stats"))


def pool_cleanup():
    return jsonify(broker().call("ssh.pool.cleanup"))


def audit():
    params = {"limit": query_int("limit", 100, 1, 10_000)}
    node = query_str("node")
    if node:
        params["node"] = node
    rows = broker().call("ssh.audit", params)
    return jsonify({"audit": rows, "count": len(rows)})
