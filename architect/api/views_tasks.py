"""REST views: tasks, workers, cluster views, bus discovery, health and metrics."""

from __future__ import annotations

from flask import Response, current_app, jsonify, request

from architect.api.errors import BadRequest
from architect.api.inputs import (field, json_body, path_id, query_flag, query_int,
                                  query_str)
from architect.api.views_nodes import _check_json_list, broker
from architect.bus.protocol import STATES

SUBMIT_FIELDS = {"timeout": float, "max_attempts": int, "retries": int, "retry_backoff": float,
                 "priority": int, "idempotency_key": str, "node": (str, int),
                 "run_at": (int, float), "countdown": (int, float), "expires_at": (int, float),
                 "expires_in": (int, float), "retry_on": list, "no_retry_on": list,
                 "depends_on": list, "pass_results": bool, "unique_key": str,
                 "unique_for": (int, float, str), "labels": dict, "soft_timeout": float, "queue": str}


def _spec(data: dict) -> dict:
    spec = {"task_type": field(data, "task_type", str),
            "payload": field(data, "payload", dict, {}),
            "requirements": _check_json_list(data, "requirements")}
    for name, kind in SUBMIT_FIELDS.items():
        value = field(data, name, kind, None)
        if value is not None:
            spec[name] = value
    user = request.authorization.username if request.authorization else None
    spec["submitted_by"] = f"api:{user}" if user else "api"
    return spec


def list_tasks():
    params = {"status": query_str("status", STATES), "node": query_str("node"),
              "task_type": query_str("task_type"), "label": query_str("label"),
              "search": query_str("q"), "limit": query_int("limit", 100, 1, 1000),
              "offset": query_int("offset", 0, 0, 10**9)}
    tasks = broker().call("task.list", {k: v for k, v in params.items() if v is not None})
    return jsonify({"tasks": tasks, "count": len(tasks)})


MAX_BATCH = 10_000   # tasks in one POST /api/tasks array (the broker's submit_many limit)


def submit_task():
    """One task (an object), or a JSON array of tasks committed together: the answer
    comes once the whole batch is durable; each item is {id, status, created} or, for an
    item that is not a valid task, {error: {code, message}} (the others still go in)."""
    data = json_body(arrays=True)
    if isinstance(data, dict):
        out = broker().call("task.submit", _spec(data))
        return jsonify(out), 201 if out["created"] else 200
    if not data:
        raise BadRequest("the array of tasks is empty")
    if len(data) > MAX_BATCH:
        raise BadRequest(f"at most {MAX_BATCH} tasks in one request, got {len(data)}")
    specs, out = [], [None] * len(data)
    for i, item in enumerate(data):
        try:
            if not isinstance(item, dict):
                raise BadRequest("each task must be a JSON object")
            specs.append((i, _spec(item)))
        except BadRequest as exc:
            out[i] = {"error": {"code": exc.code, "message": f"task {i}: {exc.message}"}}
    if specs:
        done = broker().call("task.submit_many", {"tasks": [s for _, s in specs]})
        for (i, _), item in zip(specs, done):
            if "error" in item:   # the broker's refusal, named like the web's own
                item = {"error": {**item["error"],
                                  "message": f"task {i}: {item['error']['message']}"}}
            out[i] = item
    created = sum(1 for item in out if item.get("created"))
    rejected = sum(1 for item in out if "error" in item)
    return jsonify({"tasks": out, "count": len(out), "created": created,
                    "rejected": rejected}), 201 if created else 200


def get_task(task_id):
    return jsonify(broker().call("task.get", {"id": path_id(task_id, "task"),
                                              "events": query_flag("events")}))


def task_output(task_id):
    chunks = broker().call("task.output", {"id": path_id(task_id, "task"),
                                           "after_seq": query_int("after_seq", -1, -1, 10**9)})
    return jsonify({"output": chunks, "count": len(chunks)})


def cancel_task(task_id):
    return jsonify(broker().call("task.cancel", {"id": path_id(task_id, "task")}))


def task_graph(task_id):
    return jsonify(broker().call("task.graph", {"id": path_id(task_id, "task")}))


def retry_task(task_id):
    return jsonify(broker().call("task.retry", {"id": path_id(task_id, "task")}))


def retry_tasks():
    """Retry every task that ended failed / timed_out in a window: {status?, since?, node?,
    task_type?, queue?, limit?, dry_run?} → {count, ids, dry_run}."""
    data = json_body()
    params = {"status": field(data, "status", str, None), "since": field(data, "since",
                                                                          (int, float), None),
              "node": field(data, "node", str, None), "task_type": field(data, "task_type",
                                                                          str, None),
              "queue": field(data, "queue", str, None),
              "limit": field(data, "limit", int, None), "dry_run": field(data, "dry_run", bool,
                                                                          None)}
    return jsonify(broker().call("task.retry_many",
                                 {k: v for k, v in params.items() if v is not None}))


def assign_optimal():
    data = json_body()
    params = _spec(data)
    if data.get("payload") is None:
        params.pop("payload")
    return jsonify(broker().call("placement.assign_optimal", params))


def list_workers():
    workers = broker().call("worker.list")
    return jsonify({"workers": workers, "count": len(workers)})


def topology():
    return jsonify(broker().call("cluster.topology"))


def flow():
    return jsonify(broker().call("cluster.flow", {"window": query_int("window", 3600, 1, 30 * 86400)}))


def cluster_stats():
    return jsonify(broker().call("cluster.stats"))


def dashboard_stats():
    return jsonify(broker().call("cluster.summary"))


def bus():
    ext = current_app.extensions["architect"]
    info = ext.bus_info()
    if info is None:
        from architect.api.errors import Unavailable
        raise Unavailable("no master is active right now (a failover is under way); nodes "
                          "ask again", code="no_leader")
    return jsonify(info)


def healthz():
    """200 when this master can serve: its broker (or, on a standby, the active one it
    forwards to) answers. `master`: active or standby, the epoch, since when."""
    ext = current_app.extensions["architect"]
    up = ext.broker.reachable()
    master = ext.master_info()
    body = {"status": "ok" if up else "degraded", "broker": "reachable" if up else "unreachable",
            "role": master["role"], "epoch": master["epoch"], "since": master["since"],
            "master": master, "store": ext.store_state()}
    return jsonify(body), 200 if up else 503


def metrics():
    ext = current_app.extensions["architect"]
    data, content_type = ext.metrics.render()
    return Response(data, content_type=content_type)


def openapi():
    from architect.api.openapi import spec
    return jsonify(spec(current_app.extensions["architect"].routes))
