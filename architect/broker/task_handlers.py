"""Control methods for tasks and placement: task.*, placement.*, worker.list.

task.retry, task.retry_many and task.graph are in task_workflow_handlers.py; TASK_METHODS
here lists them too (the broker reads the one table)."""

from __future__ import annotations

import re

from architect import tasktypes
from architect.broker import dispatch, placement
from architect.broker import tasks as T
from architect.broker.methods import read, write
from architect.broker.params import NotFound, RequestError, get
from architect.broker.registry import InvalidNode, check_capabilities
from architect.broker.task_workflow_handlers import WORKFLOW_METHODS

MAX_PAYLOAD_KEYS = 256
MAX_BATCH = 10_000
MAX_WAIT = 300.0


def _validate_payload(task_type: str, payload: dict) -> None:
    if task_type in tasktypes.TASK_TYPES:  # the built-in types: shared with the worker
        try:
            tasktypes.validate(task_type, payload)
        except tasktypes.PayloadError as exc:
            raise RequestError(f"payload: {exc}") from None


YEAR = 366 * 86400
MAX_RULES = 64


def _when(params, absolute: str, relative: str, now: float) -> float | None:
    """A time from `absolute` (Unix seconds) or `relative` (seconds from now), not both."""
    at, after = params.get(absolute), params.get(relative)
    if at is not None and after is not None:
        raise RequestError(f"give {absolute} or {relative}, not both")
    for name, value in ((absolute, at), (relative, after)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise RequestError(f"{name} must be a number of seconds")
    if after is not None:
        if not 0 <= after <= YEAR:
            raise RequestError(f"{relative} must be 0 s to 366 days")
        return now + after
    if at is not None and not now - YEAR <= at <= now + YEAR:
        raise RequestError(f"{absolute} must be within a year of now (Unix seconds)")
    return float(at) if at is not None else None


def _rules(params, name: str) -> list | None:
    rules = params.get(name)
    if rules is None:
        return None
    if not isinstance(rules, list) or len(rules) > MAX_RULES or not all(
            (isinstance(r, int) and not isinstance(r, bool) and -255 <= r <= 255) or
            (isinstance(r, str) and 0 < len(r) <= 200) for r in rules):
        raise RequestError(f"{name} must be a list of up to {MAX_RULES} exit codes (-255 to "
                           "255) or exception class names (or \"timeout\")")
    return rules


MAX_DEPENDS = 1000


def _queue(params) -> str | None:
    from architect.broker.queues import QueueError, check_name
    name = params.get("queue")
    if name is None or name == "default":
        return None
    try:
        return check_name(name)
    except QueueError as exc:
        raise RequestError(str(exc)) from None
MAX_LABELS = 32
LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,63}$")


def _labels(params) -> dict | None:
    labels = params.get("labels")
    if labels is None or labels == {}:
        return None
    if not isinstance(labels, dict) or len(labels) > MAX_LABELS or not all(
            isinstance(k, str) and LABEL_KEY.match(k) and isinstance(v, str) and len(v) <= 200
            for k, v in labels.items()):
        raise RequestError(f"labels must be up to {MAX_LABELS} key: value strings (keys: "
                           "letters, digits, _ . / -, up to 64; values up to 200 characters)")
    return labels


def _depends(params) -> list | None:
    deps = params.get("depends_on")
    if deps is None or deps == []:
        return None
    if not isinstance(deps, list) or len(deps) > MAX_DEPENDS or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in deps):
        raise RequestError(f"depends_on must be a list of up to {MAX_DEPENDS} task ids")
    return list(dict.fromkeys(deps))


def dependency_states(b, deps) -> dict:
    """{task id: state} of each dependency; RequestError naming the unknown ones (a task
    can only depend on tasks that exist already, so a cycle cannot be made)."""
    out, unknown = {}, []
    for d in deps or ():
        task = b.tasks.get(d)
        row = None if task is not None else b.store.task(d)
        if task is None and row is None:
            unknown.append(d)
        else:
            out[d] = task.status if task is not None else row["status"]
    if unknown:
        raise RequestError("depends_on names unknown tasks: " + ", ".join(map(str, unknown)))
    return out


def parse_spec(b, params: dict, submitter: str | None = None,
               now: float | None = None) -> T.Task:
    """A submitted task from its params, validated; raises RequestError naming the field."""
    now = b.tasks_now if now is None else now
    task_type = get(params, "task_type", str)
    if not task_type or len(task_type) > 64:
        raise RequestError("task_type must be 1-64 characters")
    payload = get(params, "payload", dict, {})
    _validate_payload(task_type, payload)
    try:
        requirements = check_capabilities(get(params, "requirements", list, []))
    except InvalidNode as exc:
        raise RequestError(f"requirements: {exc}") from None
    node = get(params, "node", (str, int), None)
    if node is not None:
        found = b.registry.get(node)
        if found is None:
            raise NotFound(f"no node {node!r} to pin the task to")
        node = found.name
    timeout = get(params, "timeout", float, None)
    if timeout is not None and not 0 < timeout <= 7 * 86400:
        raise RequestError("timeout must be between 0 and 604800 seconds")
    soft = get(params, "soft_timeout", float, None)
    if soft is not None and not (0 < soft <= 7 * 86400 and (timeout is None or soft < timeout)):
        raise RequestError("soft_timeout must be over 0 and below timeout (seconds)")
    max_attempts = get(params, "max_attempts", int, 3)
    retries = get(params, "retries", int, 0)
    backoff = get(params, "retry_backoff", float, 1.0)
    priority = get(params, "priority", int, 0)
    if not 1 <= max_attempts <= 100 or not 0 <= retries <= 100 or not 0 <= backoff <= 3600:
        raise RequestError("max_attempts must be 1-100, retries 0-100, retry_backoff 0-3600")
    if not -1000 <= priority <= 1000:
        raise RequestError("priority must be between -1000 and 1000")
    key = get(params, "idempotency_key", str, None)
    if key is not None and not 0 < len(key) <= 200:
        raise RequestError("idempotency_key must be 1-200 characters")
    unique_key = get(params, "unique_key", str, None)
    unique_for = params.get("unique_for")
    if (unique_key is None) != (unique_for is None):
        raise RequestError("unique_key and unique_for go together")
    if unique_key is not None:
        if not 0 < len(unique_key) <= 200:
            raise RequestError("unique_key must be 1-200 characters")
        if isinstance(unique_for, str):
            from architect.broker.schedules import ScheduleError, parse_every
            try:
                unique_for = parse_every(unique_for)
            except ScheduleError:
                raise RequestError("unique_for must be seconds, or 30s, 5m, 2h, 1d") from None
        if isinstance(unique_for, bool) or not isinstance(unique_for, (int, float)) or \
                not 0 < unique_for <= YEAR:
            raise RequestError("unique_for must be 1 s to 366 days")
    run_at = _when(params, "run_at", "countdown", now)
    expires_at = _when(params, "expires_at", "expires_in", now)
    if expires_at is not None and expires_at <= max(now, run_at or now):
        raise RequestError("expires_at must be after now and after run_at")
    return T.Task(id=0, task_type=task_type, payload=payload, requirements=requirements,
                  node=node, priority=priority, max_attempts=max_attempts, retries=retries,
                  retry_backoff=float(backoff), timeout=float(timeout) if timeout else None,
                  idempotency_key=key, submitted_by=get(params, "submitted_by", str, None) or submitter,
                  not_before=run_at, expires_at=expires_at,
                  retry_on=_rules(params, "retry_on"), no_retry_on=_rules(params, "no_retry_on"),
                  depends_on=_depends(params),
                  pass_results=get(params, "pass_results", bool, False),
                  unique_key=unique_key,
                  unique_until=now + float(unique_for) if unique_key is not None else None,
                  labels=_labels(params),
                  soft_timeout=float(soft) if soft is not None else None,
                  queue=_queue(params))


def _submit_one(b, params, ctx) -> dict:
    spec = parse_spec(b, params, ctx.caller.name, ctx.now)
    if spec.idempotency_key:
        existing = b.task_by_key(spec.idempotency_key)
        if existing is not None:
            return {"id": existing["id"], "status": existing["status"], "created": False}
    if spec.unique_key:
        first = b.tasks.unique_task(spec.unique_key, ctx.now)
        if first is not None:
            found = b.task_public(first)
            return {"id": first, "status": found["status"] if found else None,
                    "created": False, "unique": True}
    task = b.tasks.submit(spec, ctx.now, dependency_states(b, spec.depends_on))
    b.counters["tasks_submitted"] = b.counters.get("tasks_submitted", 0) + 1
    return {"id": task.id, "status": task.status, "created": True}


def task_submit(b, params, ctx):
    """{task_type, payload, requirements?, node?, timeout?, max_attempts?, retries?,
    retry_backoff?, priority?, idempotency_key?} → {id, status, created}. Committed to disk
    before this reply; the same idempotency_key returns the existing task (created false)."""
    return _submit_one(b, params, ctx)


def task_submit_many(b, params, ctx):
    """{tasks: [spec, ...]} → [{id, status, created} | {error: {code, message}}], in order.
    One commit for the whole batch."""
    specs = get(params, "tasks", list)
    if len(specs) > MAX_BATCH:
        raise RequestError(f"at most {MAX_BATCH} tasks per batch")
    out = []
    for spec in specs:
        try:
            if not isinstance(spec, dict):
                raise RequestError("each task must be an object")
            out.append(_submit_one(b, spec, ctx))
        except RequestError as exc:
            out.append({"error": {"code": exc.code, "message": str(exc)}})
    return out


def _task(b, params) -> dict:
    task_id = get(params, "id", int)
    data = b.task_public(task_id)
    if data is None:
        raise NotFound(f"no task {task_id}")
    return data


def task_get(b, params, ctx):
    """{id, events?: bool} → the task (status, node, attempt, result, placement, …); a queued
    task nobody can take carries `waiting_reasons` {node: why}."""
    data = _task(b, params)
    if get(params, "events", bool, False):
        data["events"] = b.store.task_events(data["id"])
    return data


def task_list(b, params, ctx):
    """{status?, node?, task_type?, label? ("key=value"), search?, limit? (100), offset?}
    → [task] newest first."""
    status = get(params, "status", str, None)
    if status is not None and status not in T.STATES:
        raise RequestError(f"status must be one of {', '.join(T.STATES)}")
    limit, offset = get(params, "limit", int, 100), get(params, "offset", int, 0)
    if not 1 <= limit <= 1000 or offset < 0:
        raise RequestError("limit must be 1-1000 and offset >= 0")
    label, search = _list_filters(params)
    return b.store.list_tasks(status, get(params, "node", str, None),
                              get(params, "task_type", str, None), limit, offset, label, search)


def _list_filters(params) -> tuple[str | None, str | None]:
    """label ("key=value") and search (a substring of the command or function, node,
    labels or error) of the task list."""
    label, search = get(params, "label", str, None), get(params, "search", str, None)
    if label is not None and ("=" not in label or not LABEL_KEY.match(label.split("=")[0])):
        raise RequestError("label must be key=value")
    if search is not None and not 0 < len(search) <= 200:
        raise RequestError("search must be 1-200 characters")
    return label, search or None


def task_cancel(b, params, ctx):
    """{id} → the task. A queued task is cancelled at once; a running one is stopped by its
    worker (SIGTERM, then SIGKILL) and ends `cancelled`. A finished task is left as it is."""
    task_id = get(params, "id", int)
    task = b.tasks.active.get(task_id)
    if task is None:
        return _task(b, params)
    if not b.tasks.cancel(task, ctx.now):
        b.send_cancel(task)
    return task.public()


def task_wait(b, params, ctx):
    """{id | ids: [..], timeout? (30, max 300), any?: bool} → the task (or list) once final,
    or as it is when the timeout passes (check `final`). With ids and any: the list of those
    that are final, as soon as there is one (empty when the timeout passes first): a client
    collecting many results asks once for all it still waits for."""
    ids = get(params, "ids", list, None)
    single = ids is None
    ids = [get(params, "id", int)] if single else ids
    if not ids or len(ids) > MAX_BATCH or not all(isinstance(i, int) and not isinstance(i, bool)
                                                  for i in ids):
        raise RequestError(f"ids must be 1-{MAX_BATCH} task ids")
    timeout = min(get(params, "timeout", float, 30.0), MAX_WAIT)
    any_ = get(params, "any", bool, False)
    if any_ and single:
        raise RequestError("any needs ids (a list)")
    for task_id in ids:
        if b.is_final(task_id) is None:
            raise NotFound(f"no task {task_id}")
    return b.defer_wait(ctx, ids, single, ctx.now + max(timeout, 0.0), any_)


def task_output(b, params, ctx):
    """{id, attempt?, after_seq?, after_id?} → [{id, attempt, seq, stream, data, ts}] streamed
    output in arrival order; follow a task with after_id = the last chunk's id."""
    task = _task(b, params)
    return b.store.task_output(task["id"], get(params, "attempt", int, None),
                               get(params, "after_seq", int, -1), get(params, "after_id", int, 0))


def placement_recommend(b, params, ctx):
    """{count? (3), requirements?, task_type?} → [{node, score, breakdown, can_run_now, reason}]
    best first, over nodes that are up, not drained and have the capabilities."""
    count = get(params, "count", int, 3)
    if not 1 <= count <= 1000:
        raise RequestError("count must be 1-1000")
    reqs = get(params, "requirements", list, [])
    task_type = get(params, "task_type", str, None)
    cands = dispatch.candidates(b.registry, b.pool)
    ranked = []
    for c in cands:
        hard = placement.why_not(c, None, reqs, None, need_free_slot=False)
        if hard is not None and not hard.startswith("no task worker"):
            continue
        now_reason = placement.why_not(c, task_type, reqs, None)
        s = placement.score(c)
        ranked.append({"node": c.name, "score": s["total"], "breakdown": s,
                       "can_run_now": now_reason is None, "reason": now_reason})
    ranked.sort(key=lambda r: (-r["score"], r["node"]))
    return ranked[:count]


def placement_assign_optimal(b, params, ctx):
    """{task_type, requirements?, payload?, …submit fields} → {node, score, breakdown} of
    the best node now; with a payload the task is also submitted pinned there (`task`).
    No node: {node: null, reasons: {node: why}}."""
    task_type = get(params, "task_type", str)
    reqs = get(params, "requirements", list, [])
    eligible, reasons = placement.rank(dispatch.candidates(b.registry, b.pool), task_type, reqs)
    if not eligible:
        return {"node": None, "score": None, "breakdown": None, "reasons": reasons,
                "message": "no node can take this task now" if reasons else "no nodes"}
    cand, breakdown = eligible[0]
    out = {"node": cand.name, "score": breakdown["total"], "breakdown": breakdown,
           "alternatives": [{"node": c.name, "score": s["total"]} for c, s in eligible[1:5]]}
    if params.get("payload") is not None:
        out["task"] = _submit_one(b, dict(params, node=cand.name), ctx)
    return out


def placement_distribution(b, params, ctx):
    """{} → {nodes: {node: {state: count, active}}, totals: {state: count}}."""
    nodes: dict[str, dict] = {}
    for name, status, count in b.tasks.distribution():
        nodes.setdefault(name, {})[status] = count
    for name in b.registry.by_name:
        entry = nodes.setdefault(name, {})
        active, slots, _, _, workers = b.pool.node_capacity(name)
        entry.update(active=active, slots=slots, workers=workers)
    return {"nodes": nodes, "totals": b.tasks.counts(), "queued": b.tasks.queued_count()}


def worker_list(b, params, ctx):
    """{} → [worker] connected task workers with slots and active counts."""
    return [w.public(ctx.now) for w in sorted(b.pool.by_id.values(), key=lambda w: w.id)]


TASK_METHODS = {
    "task.submit": write(task_submit),
    "task.submit_many": write(task_submit_many),
    "task.get": read(task_get),
    "task.list": read(task_list),
    "task.cancel": write(task_cancel),
    "task.wait": read(task_wait),
    "task.output": read(task_output),
    "placement.recommend": read(placement_recommend),
    "placement.assign_optimal": write(placement_assign_optimal),
    "placement.distribution": read(placement_distribution),
    "worker.list": read(worker_list),
    **WORKFLOW_METHODS,
}
