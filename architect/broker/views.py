"""Read-only cluster views for the UI and REST: topology, task flow, dashboard figures."""

from __future__ import annotations

from architect.broker import tasks as T

MASTER = "master"


def cluster_topology(b, params, now):
    """{} → {nodes: [{id, label, kind, status, active_tasks, slots, ...}], edges: [{source,
    target, active_tasks, queued}]}: the master and every node, as a graph."""
    nodes = [{"id": MASTER, "label": "master", "kind": "master", "status": "healthy",
              "active_tasks": sum(len(w.active) for w in b.pool.by_id.values()),
              "queued": b.tasks.queued_count()}]
    edges = []
    for node in sorted(b.registry.by_name.values(), key=lambda n: n.name):
        active, slots, _, _, workers = b.pool.node_capacity(node.name)
        m = node.metrics
        nodes.append({"id": node.name, "label": node.name, "kind": "node", "node_id": node.id,
                      "status": node.status, "drained": node.drained, "active_tasks": active,
                      "slots": slots, "workers": workers, "ip_address": node.ip_address,
                      "cpu_percent": m.get("cpu_percent"), "memory_percent": m.get("memory_percent"),
                      "reasons": node.reasons})
        edges.append({"source": MASTER, "target": node.name, "active_tasks": active,
                      "status": node.status})
    return {"nodes": nodes, "edges": edges, "generated_at": now}


def cluster_flow(b, params, now):
    """{window? seconds (3600)} → how tasks moved: {links: [{source, target, value}],
    states: {state: n}, nodes: [name]} for tasks created in the window — queued → node →
    outcome, as a Sankey wants it."""
    window = params.get("window", 3600)
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 < window <= 30 * 86400:
        window = 3600
    rows = b.store.conn.execute(
        "SELECT COALESCE(assigned_node, ''), status, COUNT(*) FROM tasks WHERE created_at >= ? "
        "GROUP BY 1, 2", (now - window,)).fetchall()
    links: dict[tuple[str, str], int] = {}
    states: dict[str, int] = {}
    nodes = set()
    for node, status, count in rows:
        states[status] = states.get(status, 0) + count
        if not node:
            links[("submitted", status)] = links.get(("submitted", status), 0) + count
            continue
        nodes.add(node)
        links[("submitted", node)] = links.get(("submitted", node), 0) + count
        links[(node, status)] = links.get((node, status), 0) + count
    return {"window": window, "states": states, "nodes": sorted(nodes),
            "links": [{"source": s, "target": t, "value": v} for (s, t), v in sorted(links.items())]}


def cluster_summary(b, params, now):
    """{} → dashboard figures: nodes per level, tasks per state, queue depth, workers,
    active alerts, tasks finished per minute over the last 15 minutes."""
    stats = b.stats(now)
    per_minute = b.store.conn.execute(
        "SELECT CAST((? - finished_at) / 60 AS INTEGER) AS m, COUNT(*) FROM tasks "
        "WHERE finished_at >= ? GROUP BY m", (now, now - 900)).fetchall()
    series = [0] * 15
    for minute, count in per_minute:
        if 0 <= minute < 15:
            series[14 - minute] = count
    return {"nodes": stats["nodes"], "tasks": b.store.task_counts(),
            "queue_depth": stats["tasks"]["queued"], "workers": stats["workers"],
            "alerts": stats["alerts"], "throughput_per_minute": series,
            "final_states": list(sorted(T.FINAL)), "time": now}


VIEW_METHODS = {
    "cluster.topology": cluster_topology,
    "cluster.flow": cluster_flow,
    "cluster.summary": cluster_summary,
}
