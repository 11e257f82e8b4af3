"""The work socket's verbs: what the broker does with each message from a task worker.

Handlers take (broker, routing identity, message, now); WORK_HANDLERS maps message classes
to them. Messages to workers go to `broker.work_out` and are sent after the state that
caused them is committed, so a task is never running on a worker without being on disk.
"""

from __future__ import annotations

import logging

from architect.broker import tasks as T
from architect.broker.queues import NAME_RE
from architect.broker.registry import InvalidNode, check_capabilities, check_name
from architect.bus.codec import build
from architect.bus.errors import ProtocolError
from architect.bus.messages import (TaskAck, TaskAcks, TaskCancel, TaskOutput, TaskResult,
                                    TaskResults, TaskStarted, WorkerBye, WorkerPing, WorkerReady)

log = logging.getLogger("architect.broker")
MAX_SLOTS = 1024
MAX_PREFETCH = 1024
MAX_BATCH = 10_000     # results in one `results` message


class BadWorkerMessage(ValueError):
    pass


def _claimed(msg) -> set[tuple[int, int]]:
    out = set()
    for item in msg.running:
        if (not isinstance(item, list) or len(item) != 2 or
                not all(isinstance(x, int) and not isinstance(x, bool) for x in item)):
            raise BadWorkerMessage("running must be a list of [task_id, attempt] pairs")
        out.add((item[0], item[1]))
    return out


def on_hello(b, ident: bytes, msg, now: float) -> None:
    """`ready` (worker started or reconnected) and `wping` (every interval) alike: refresh
    the worker, reconcile the tasks it says it runs with the tasks the broker gave it."""
    try:
        check_name(msg.node)
        caps = check_capabilities(msg.capabilities)
        types = check_capabilities(msg.task_types)
    except InvalidNode as exc:
        raise BadWorkerMessage(str(exc)) from None
    if not 1 <= msg.slots <= MAX_SLOTS or not 0 < len(msg.worker_id) <= 128:
        raise BadWorkerMessage(f"slots must be 1-{MAX_SLOTS} and worker_id 1-128 chars")
    if not 0 <= msg.prefetch <= MAX_PREFETCH:
        raise BadWorkerMessage(f"prefetch must be 0-{MAX_PREFETCH}")
    if len(msg.queues) > 64 or not all(isinstance(q, str) and NAME_RE.match(q)
                                       for q in msg.queues):
        raise BadWorkerMessage("queues must be up to 64 queue names")
    claimed = _claimed(msg)
    known = b.pool.by_id.get(msg.worker_id)
    if known is not None and known.node != msg.node:
        raise BadWorkerMessage(f"worker id {msg.worker_id!r} belongs to node {known.node!r}")
    b.worker_seen(msg.node, msg.hostname, caps, msg.metrics, now)
    worker, new = b.pool.upsert(msg.worker_id, ident, msg.node, msg.slots, caps, types, now,
                                msg.hostname, msg.pid, msg.prefetch, msg.queues)
    if new:
        log.info("worker %s joined: node %s, %d slots, types %s", worker.id, worker.node,
                 worker.slots, ",".join(types))
        b.emit(f"node.{msg.node}.worker_joined", worker.public(now))
    for task_id, attempt in claimed:
        task = b.tasks.active.get(task_id)
        if task is not None and task.attempt == attempt and task.status in (T.ASSIGNED, T.RUNNING) \
                and task.worker_id in (None, worker.id):
            task.worker_id = worker.id        # an orphan after a broker restart: claimed
            task.orphan_deadline = None
            worker.active.add((task_id, attempt))
        elif (task_id, attempt) not in worker.active:
            b.work_out.append((ident, TaskCancel(task_id=task_id, attempt=attempt,
                                                 reason="not assigned to this worker")))
    if type(msg) is WorkerReady:
        # the worker (re)connected: what the broker gave it and it does not list may be in
        # flight to it still (sent after it wrote this `ready`) or lost with its old
        # connection. Either way the same assignment goes again: the worker drops a
        # duplicate, so the attempt runs once. (Requeueing it instead ran it twice when the
        # first copy was in flight: found by the PostgreSQL-restart fault test.)
        # A task it started and no longer lists is lost (a worker keeps a task until its
        # result is acknowledged): requeued.
        for task_id, attempt in list(worker.active - claimed):
            task = b.tasks.active.get(task_id)
            current = task is not None and task.attempt == attempt
            if current and task.status == T.ASSIGNED and task.worker_id == worker.id:
                b.counters.inc("assignments_resent")
                b.work_out.append((ident, b.assign_message(task)))
                continue
            worker.active.discard((task_id, attempt))
            if current:
                b.tasks.lost(task, now, f"worker {worker.id} restarted")
            b.work_out.append((ident, TaskCancel(task_id=task_id, attempt=attempt,
                                                 reason="requeued after worker restart")))


def _current(b, worker_ident: bytes, task_id: int, attempt: int):
    """The task this attempt is, if the sender runs it: the worker it was given to, or
    (an orphan after a broker restart, not claimed yet) a worker on the node it went to."""
    task = b.tasks.active.get(task_id)
    if task is None or task.attempt != attempt or task.status not in (T.ASSIGNED, T.RUNNING):
        return None
    worker = b.worker_by_identity(worker_ident)
    if worker is None:
        return None
    if task.worker_id == worker.id or (task.worker_id is None and
                                       task.assigned_node == worker.node):
        return task
    b.counters.inc("work_rejected")
    log.warning("worker %s sent news of task %d it does not run: ignored", worker.id, task_id,
                extra={"task_id": task_id})
    return None


def on_started(b, ident: bytes, msg: TaskStarted, now: float) -> None:
    task = _current(b, ident, msg.task_id, msg.attempt)
    if task is not None:
        b.tasks.started(task, msg.ts, now)
        b.latency.observe(max(0.0, msg.ts - task.created_at))


def on_output(b, ident: bytes, msg: TaskOutput, now: float) -> None:
    task = _current(b, ident, msg.task_id, msg.attempt)
    if task is None or msg.stream not in ("stdout", "stderr"):
        return
    b.add_output(task, msg, now)


def _take_result(b, worker, ident: bytes, msg: TaskResult, now: float) -> None:
    if msg.state not in (T.SUCCEEDED, T.FAILED, T.TIMED_OUT, T.CANCELLED):
        raise BadWorkerMessage(f"unknown result state {msg.state!r}")
    worker.active.discard((msg.task_id, msg.attempt))
    task = _current(b, ident, msg.task_id, msg.attempt)
    if task is not None:
        worker.finished_run(msg.duration, now)
        if task.status == T.ASSIGNED and msg.started_at is not None:
            # it ended before its `started` went out (the worker sends only the result):
            # the history still shows when it started
            on_started(b, ident, TaskStarted(task_id=msg.task_id, attempt=msg.attempt,
                                             ts=msg.started_at), now)
        result = {"exit_code": msg.exit_code, "stdout": msg.stdout, "stderr": msg.stderr,
                  "truncated": msg.truncated, "result": msg.result, "error": msg.error,
                  "duration": msg.duration, "started_at": msg.started_at,
                  "finished_at": msg.finished_at}
        b.tasks.finish(task, msg.state, result, now)
        b.counters["tasks_finished"] = b.counters.get("tasks_finished", 0) + 1


def on_result(b, ident: bytes, msg: TaskResult, now: float) -> None:
    worker = b.worker_by_identity(ident)
    if worker is None:
        return  # not said hello (yet): no ack, so it sends the result again after its hello
    _take_result(b, worker, ident, msg, now)
    # acknowledged (after commit) even when stale or a duplicate, so the worker forgets it
    b.work_out.append((ident, TaskAck(task_id=msg.task_id, attempt=msg.attempt)))


def on_results(b, ident: bytes, msg: TaskResults, now: float) -> None:
    """A batch of results: each taken as one `result`, one `acks` for all that were valid.
    A bad item is refused alone (it is not acknowledged); the others still count."""
    worker = b.worker_by_identity(ident)
    if worker is None:
        return
    if len(msg.results) > MAX_BATCH:
        raise BadWorkerMessage(f"at most {MAX_BATCH} results in one message")
    acks, bad = [], None
    for item in msg.results:
        try:
            one = build(TaskResult.TYPE, item)
            _take_result(b, worker, ident, one, now)
        except (ProtocolError, BadWorkerMessage) as exc:
            bad = exc
            continue
        acks.append([one.task_id, one.attempt])
    if acks:
        b.work_out.append((ident, TaskAcks(acks=acks)))
    if bad is not None:
        raise BadWorkerMessage(f"results: {bad}")


def on_bye(b, ident: bytes, msg: WorkerBye, now: float) -> None:
    """A worker stopping: first it drains (no new tasks), then it is gone (requeue now)."""
    worker = b.pool.by_id.get(msg.worker_id)
    if worker is None or worker.identity != ident:
        return
    if msg.final:
        b._worker_lost(worker, now, f"worker {worker.id} stopped")
    else:
        worker.draining = True
        log.info("worker %s is stopping: no new tasks for it", worker.id)


WORK_HANDLERS = {
    WorkerBye: on_bye,
    WorkerReady: on_hello,
    WorkerPing: on_hello,
    TaskStarted: on_started,
    TaskOutput: on_output,
    TaskResult: on_result,
    TaskResults: on_results,
}
