"""Control methods: name → function(broker, params, now). Each handler is a few lines; the
table at the bottom is the only way a name from the wire reaches code."""

from __future__ import annotations

import orjson

from architect.broker.methods import ADMIN, NODE, OPERATOR, read, write
from architect.broker.params import NotFound, RequestError, get
from architect.broker.registry import InvalidNode


def _node(b, params):
    key = get(params, "node", (str, int))
    node = b.registry.get(key)
    if node is None:
        raise NotFound(f"no node {key!r}")
    return node


def node_register(b, params, ctx):
    """{name, hostname?, ip_address?, capabilities?, ssh?} → node (created or updated)."""
    from architect.broker.ssh_handlers import check_ssh
    name = get(params, "name", str)
    if ctx.caller.role == NODE and name != ctx.caller.name:
        b.identity_mismatch(ctx.caller, name, "node.register")
        raise RequestError(f"key {ctx.caller.name!r} may register only node {ctx.caller.name!r}",
                           code="forbidden")
    ssh = get(params, "ssh", dict, None)
    if ssh is not None:
        if ctx.caller.role == NODE:
            raise RequestError("a node key may not set how the master reaches it over SSH",
                               code="forbidden")
        ssh = check_ssh(ssh)
    try:
        node, created = b.registry.register(
            name, ctx.now, get(params, "hostname", str, ""),
            get(params, "ip_address", str, ""), get(params, "capabilities", list, None), ssh)
    except InvalidNode as exc:
        raise RequestError(str(exc)) from None
    b.emit(f"node.{node.name}.{'registered' if created else 'updated'}", node.public(ctx.now))
    return dict(node.public(ctx.now), created=created)


def node_list(b, params, ctx):
    """{status?, capability?, render?: "json"} → [node] sorted by name. With render "json":
    {count, json: bytes of the JSON list}, so the web server passes it through untouched."""
    status = get(params, "status", str, None)
    cap = get(params, "capability", str, None)
    nodes = sorted(b.registry.by_name.values(), key=lambda n: n.name)
    out = [n.public(ctx.now) for n in nodes
           if (status is None or n.status == status) and (cap is None or cap in n.capabilities)]
    if get(params, "render", str, None) == "json":
        return {"count": len(out), "json": orjson.dumps(out)}
    return out


def node_get(b, params, ctx):
    """{node: id or name} → node."""
    return _node(b, params).public(ctx.now)


def node_remove(b, params, ctx):
    """{node} → {removed: name}. Its metrics go; its alert history stays."""
    node = _node(b, params)
    b.remove_node(node, ctx.now)
    return {"removed": node.name, "id": node.id}


def _set_drained(b, params, now, drained: bool):
    node = _node(b, params)
    if node.drained != drained:
        node.drained = drained
        b.registry.dirty.add(node)
        b.emit(f"node.{node.name}.{'drained' if drained else 'undrained'}", node.public(now))
    return node.public(now)


def node_drain(b, params, ctx):
    """{node} → node, with drained = true: no new tasks are placed there."""
    return _set_drained(b, params, ctx.now, True)


def node_undrain(b, params, ctx):
    """{node} → node, with drained = false."""
    return _set_drained(b, params, ctx.now, False)


def health_summary(b, params, ctx):
    """{} → {counts: {level: n}, nodes: [{name, status, reasons, heartbeat_age}], thresholds}."""
    nodes = sorted(b.registry.by_name.values(), key=lambda n: n.name)
    return {"counts": b.registry.counts(), "total": len(nodes),
            "thresholds": b.registry.thresholds.as_dict(),
            "heartbeat_timeout": b.registry.timeout,
            "nodes": [{"id": n.id, "name": n.name, "status": n.status, "reasons": n.reasons,
                       "drained": n.drained,
                       "heartbeat_age": round(ctx.now - n.last_seen, 3) if n.last_seen else None}
                      for n in nodes]}


def alert_list(b, params, ctx):
    """{all?: bool, node?, level?, kind? (level|flapping|rule|security), since? seconds,
    limit? (500)} → [alert] newest first (active only unless all), of that node and level,
    of that kind, opened within `since` seconds when given."""
    from architect.broker.store.base import ALERT_KINDS
    node_id = _node(b, params).id if params.get("node") is not None else None
    limit = get(params, "limit", int, 500)
    if not 1 <= limit <= 10_000:
        raise RequestError("parameter 'limit' must be 1-10000")
    level = get(params, "level", str, None)
    if level is not None and level not in ("warning", "critical", "offline"):
        raise RequestError("parameter 'level' must be warning, critical or offline")
    kind = get(params, "kind", str, None)
    if kind is not None and kind not in ALERT_KINDS:
        raise RequestError(f"parameter 'kind' must be one of {', '.join(ALERT_KINDS)}")
    since = get(params, "since", (int, float), None)
    if since is not None and (isinstance(since, bool) or not 0 < since <= 3660 * 86400):
        raise RequestError("parameter 'since' must be seconds, more than 0")
    return b.store.alerts(all_=get(params, "all", bool, False), node_id=node_id, limit=limit,
                          level=level, kind=kind,
                          since=None if since is None else ctx.now - since)


def alert_ack(b, params, ctx):
    """{id, by?} → alert, acknowledged."""
    alert_id = get(params, "id", int)
    alert = b.alerts.by_id.get(alert_id) or b.store.alert(alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id}")
    alert = b.alerts.acknowledge(alert, get(params, "by", str, None) or ctx.caller.name, ctx.now)
    b.emit(f"alert.{alert_id}", {"action": "acknowledged", **alert})
    return alert


def cluster_stats(b, params, ctx):
    """{} → node counts per level, drained, capabilities, counters, uptime, store figures."""
    return b.stats(ctx.now)


def ping(b, params, ctx):
    """{} → {pong: true, time}: a liveness check."""
    return {"pong": True, "time": ctx.now}


METHODS = {
    "node.register": write(node_register, OPERATOR, node=True),
    "node.list": read(node_list),
    "node.get": read(node_get),
    "node.remove": write(node_remove, ADMIN),
    "node.drain": write(node_drain),
    "node.undrain": write(node_undrain),
    "health.summary": read(health_summary),
    "alert.list": read(alert_list),
    "alert.ack": write(alert_ack),
    "cluster.stats": read(cluster_stats),
    "ping": read(ping, node=True),
}
