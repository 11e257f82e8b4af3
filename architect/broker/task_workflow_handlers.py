"""Control methods over workflows and ended tasks: task.retry and task.retry_many (run a
failed, timed-out or expired task again, as the same task) and task.graph (the DAG of tasks
one task is part of). task_handlers.TASK_METHODS includes WORKFLOW_METHODS."""

from __future__ import annotations

from architect.broker import tasks as T
from architect.broker.methods import read, write
from architect.broker.params import NotFound, RequestError, get

RETRYABLE = (T.FAILED, T.TIMED_OUT, T.EXPIRED)   # a lost task ends failed (reason lost)
MAX_RETRY_MANY = 10_000


def _retry_one(b, task_id: int, ctx) -> T.Task:
    task = b.tasks.get(task_id)
    if task is None:
        row = b.store.task(task_id)
        if row is None:
            raise NotFound(f"no task {task_id}")
        task = T.Task(**row)
    if task.status not in RETRYABLE:
        raise RequestError(f"task {task_id} is {task.status}: only a failed, timed-out or "
                           "expired task can be retried" + (" (submit it again)" if task.status == T.SUCCEEDED
                                               else ""), code="conflict")
    b.tasks.retry(task, ctx.now, ctx.caller.name)
    b.counters["tasks_retried"] = b.counters.get("tasks_retried", 0) + 1
    return task


def task_retry(b, params, ctx):
    """{id} → the task, queued again: a failed or timed-out task (a lost one ends failed) gets
    another run as the same task, its history kept (event `retried`), its automatic retries
    counted afresh. conflict for a task in any other state."""
    return _retry_one(b, get(params, "id", int), ctx).public()


def task_retry_many(b, params, ctx):
    """{status? (failed and timed_out), since? seconds (86400), node?, task_type?, queue?,
    limit? (1000, max 10000), dry_run?} → {count, ids, dry_run}: every task that ended that
    way in that window, newest first, retried (or, with dry_run, only counted)."""
    status = params.get("status")
    statuses = RETRYABLE if status is None else (status,)
    if status is not None and status not in RETRYABLE:
        raise RequestError(f"status must be one of {', '.join(RETRYABLE)}")
    since = params.get("since", 86400)
    if isinstance(since, bool) or not isinstance(since, (int, float)) or not 0 < since <= 366 * 86400:
        raise RequestError("since must be 1 s to 366 days (seconds)")
    limit = get(params, "limit", int, 1000)
    if not 1 <= limit <= MAX_RETRY_MANY:
        raise RequestError(f"limit must be 1-{MAX_RETRY_MANY}")
    dry_run = get(params, "dry_run", bool, False)
    ids = b.store.ended_task_ids(statuses, ctx.now - since, get(params, "node", str, None),
                                 get(params, "task_type", str, None), limit,
                                 get(params, "queue", str, None))
    # a task retried but not committed yet is not final in memory: leave it be
    ids = [i for i in ids if (t := b.tasks.get(i)) is None or t.status in statuses]
    if not dry_run:
        for task_id in ids:
            _retry_one(b, task_id, ctx)
    return {"count": len(ids), "ids": ids, "dry_run": dry_run}


MAX_GRAPH = 2000


def task_graph(b, params, ctx):
    """{id} → {nodes: [{id, status, task_type, label, error}], edges: [{source, target}],
    truncated}: the workflow the task is part of (what it depends on and what depends on it,
    transitively), at most 2,000 tasks. An edge goes from a dependency to its dependent."""
    root = get(params, "id", int)
    if b.task_public(root) is None:
        raise NotFound(f"no task {root}")
    seen, edges, frontier = {root}, set(), [root]
    while frontier and len(seen) < MAX_GRAPH:
        pairs = b.store.task_deps(frontier, True) + b.store.task_deps(frontier, False)
        # what is submitted but not committed yet is in memory only
        for t in list(b.tasks.active.values()):
            for d in t.depends_on or ():
                if t.id in frontier or d in frontier:
                    pairs.append((t.id, d))
        frontier = []
        for task_id, dep in pairs:
            edges.add((dep, task_id))
            for x in (task_id, dep):
                if x not in seen and len(seen) < MAX_GRAPH:
                    seen.add(x)
                    frontier.append(x)
    nodes = []
    for task_id in sorted(seen):
        t = b.task_public(task_id) or {"id": task_id, "status": None, "task_type": None,
                                       "payload": {}}
        payload = t.get("payload") or {}
        label = payload.get("function") or payload.get("command") or \
            " ".join(payload.get("argv") or []) or t.get("task_type") or "?"
        nodes.append({"id": task_id, "status": t.get("status"), "task_type": t.get("task_type"),
                      "label": f"#{task_id} {label}"[:80], "error": t.get("error")})
    return {"nodes": nodes, "edges": [{"source": s, "target": t} for s, t in sorted(edges)
                                      if s in seen and t in seen],
            "truncated": len(seen) >= MAX_GRAPH}


WORKFLOW_METHODS = {
    "task.graph": read(task_graph),
    "task.retry": write(task_retry),
    "task.retry_many": write(task_retry_many),
}
