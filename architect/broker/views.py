"""Read-only cluster views for the UI and REST: topology, task flow, dashboard figures."""

from __future__ import annotations

from architect.broker import tasks as T
from architect.broker.methods import read

MASTER = "master"


def cluster_topology(b, params, ctx):
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
    return {"nodes": nodes, "edges": edges, "generated_at": ctx.now}


def cluster_flow(b, params, ctx):
    """{window? seconds (3600)} → how tasks moved: {links: [{source, target, value}],
    states: {state: n}, nodes: [name]} for tasks created in the window — queued → node →
    outcome, as a Sankey wants it."""
    window = params.get("window", 3600)
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 < window <= 30 * 86400:
        window = 3600
    rows = b.store.task_flow(ctx.now - window, ctx.now)
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


def cluster_summary(b, params, ctx):
    """{} → dashboard figures: nodes per level, tasks per state, queue depth, workers,
    active alerts, tasks finished per minute over the last 15 minutes."""
    stats = b.stats(ctx.now)
    per_minute = b.store.finished_per_minute(ctx.now, ctx.now - 900)
    series = [0] * 15
    for minute, count in per_minute:
        if 0 <= minute < 15:
            series[14 - minute] = count
    return {"nodes": stats["nodes"], "tasks": b.tasks.counts(),
            "queue_depth": stats["tasks"]["queued"], "workers": stats["workers"],
            "alerts": stats["alerts"], "throughput_per_minute": series,
            "final_states": list(sorted(T.FINAL)), "time": ctx.now}


RANGES = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "2d": 2 * 86400,
          "7d": 7 * 86400, "30d": 30 * 86400, "90d": 90 * 86400, "1y": 365 * 86400}


def node_metrics(b, params, ctx):
    """{node, range?: 15m|1h|6h|24h|2d|7d|30d|90d|1y (1h), points? (300), resolution?:
    auto|raw|1m|1h (auto)} → {node, series: [{ts, cpu_percent, memory_percent, disk_percent,
    load_1, samples, and <metric>_min / _max}], resolution, bucket, since, until, window,
    thresholds, heartbeat_age}: downsampled, from the raw samples for short windows, the
    1-minute roll-up up to two days, the 1-hour one beyond (rollup.py)."""
    from architect.broker.params import NotFound, RequestError, get
    key = get(params, "node", (str, int))
    node = b.registry.get(key)
    if node is None:
        raise NotFound(f"no node {key!r}")
    span = RANGES.get(get(params, "range", str, "1h"))
    if span is None:
        raise RequestError(f"range must be one of {', '.join(RANGES)}")
    points = get(params, "points", int, 300)
    if not 2 <= points <= 5000:
        raise RequestError("points must be 2-5000")
    from architect.broker import rollup
    resolution = get(params, "resolution", str, "auto")
    if resolution not in ("auto", *rollup.RESOLUTIONS):
        raise RequestError(f"resolution must be auto or one of {', '.join(rollup.RESOLUTIONS)}")
    chart = rollup.series(b.store, node.id, ctx.now - span, ctx.now, points,
                          None if resolution == "auto" else resolution,
                          getattr(getattr(b, "rollup", None), "retention", None))
    return {"node": node.name, "range": params.get("range", "1h"),
            "series": chart["series"], "resolution": chart["resolution"],
            "bucket": chart["bucket"], "since": ctx.now - span, "until": ctx.now,
            "window": span,
            "thresholds": b.registry.thresholds.as_dict(),
            "heartbeat_age": round(ctx.now - node.last_seen, 3) if node.last_seen else None,
            "status": node.status}


def task_page(b, params, ctx):
    """{status?, node?, task_type?, label?, search?, limit? (25), offset?} → {tasks, total}:
    one page."""
    from architect.broker.params import get
    from architect.broker.task_handlers import _list_filters, task_list
    label, search = _list_filters(params)
    return {"tasks": task_list(b, params, ctx),
            "total": b.store.count_tasks(get(params, "status", str, None),
                                         get(params, "node", str, None),
                                         get(params, "task_type", str, None), label, search)}


def task_timeline(b, params, ctx):
    """{window? seconds (900), limit? (500)} → [task spans] for a task stream per node."""
    from architect.broker.params import get
    window = get(params, "window", (int, float), 900)
    limit = get(params, "limit", int, 500)
    return b.store.timeline(ctx.now - min(max(window, 1), 7 * 86400), min(max(limit, 1), 5000))


def nodes_overview(b, params, ctx):
    """{limit? (12, max 100), spark? seconds (900), points? (30)} → {nodes: [{name, status,
    reasons, drained, heartbeat_age, cpu_percent, memory_percent, cpu, memory}], total,
    shown}: the landing page's node list, problem nodes first (offline, critical, warning,
    then healthy; by name within a level), each with its recent CPU and memory series."""
    import heapq

    from architect.broker.params import RequestError, get
    from architect.bus.protocol import SEVERITY
    limit = get(params, "limit", int, 12)
    spark = get(params, "spark", (int, float), 900)
    points = get(params, "points", int, 30)
    if not 1 <= limit <= 100 or not 60 <= spark <= 86400 or not 2 <= points <= 300:
        raise RequestError("limit must be 1-100, spark 60-86400 seconds, points 2-300")
    nodes = b.registry.by_name.values()
    top = heapq.nsmallest(limit, nodes, key=lambda n: (-SEVERITY.get(n.status, 0), n.name))
    out = []
    for n in top:
        series = b.store.metrics_series(n.id, ctx.now - spark, ctx.now, points)
        m = n.metrics or {}
        out.append({"name": n.name, "status": n.status, "reasons": list(n.reasons or []),
                    "drained": n.drained,
                    "heartbeat_age": round(ctx.now - n.last_seen, 1) if n.last_seen else None,
                    "cpu_percent": m.get("cpu_percent"), "memory_percent": m.get("memory_percent"),
                    "cpu": [p.get("cpu_percent") for p in series],
                    "memory": [p.get("memory_percent") for p in series]})
    return {"nodes": out, "total": len(b.registry.by_name), "shown": len(out)}


VIEW_METHODS = {
    "cluster.nodes_overview": read(nodes_overview),
    "node.metrics": read(node_metrics),
    "task.page": read(task_page),
    "task.timeline": read(task_timeline),
    "cluster.topology": read(cluster_topology),
    "cluster.flow": read(cluster_flow),
    "cluster.summary": read(cluster_summary),
}
