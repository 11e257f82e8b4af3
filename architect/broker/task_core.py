"""The broker's task side: worker pool, task book, waiters, timers. Mixed into Broker.

Everything here runs on the broker loop thread. Messages for workers collect in
`work_out` and deferred replies in `_ready_waits`; the loop sends both after persist().
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from architect.broker import dispatch
from architect.broker import tasks as T
from architect.broker.params import DEFERRED
from architect.broker.looptime import LoopTimer
from architect.broker.persist import RowBuffer, Stream
from architect.broker.workers import WorkerPool
from architect.bus.messages import BrokerPing, Reply, TaskAssign, TaskCancel

log = logging.getLogger("architect.broker")

OUTPUT_CAP = 1 << 20          # streamed output kept per task attempt
CANCEL_BACKSTOP = 30.0        # a cancel the worker never answers ends the task after this
TIMEOUT_BACKSTOP = 30.0       # seconds past its timeout before the broker ends a task itself


class Histogram:
    """Submit-to-start latency of tasks, in Prometheus-style cumulative buckets (seconds)."""
    BOUNDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self):
        self.counts = [0] * (len(self.BOUNDS) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.BOUNDS):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.sum += value

    def snapshot(self) -> dict:
        return {"bounds": list(self.BOUNDS), "counts": list(self.counts), "sum": self.sum,
                "count": sum(self.counts)}


@dataclass
class Waiter:
    token: object
    req_id: object
    ids: list
    single: bool
    deadline: float
    pending: set
    any: bool = False     # answer once any of the ids is final, with the final ones

    def waiting(self, now: float) -> bool:
        if now >= self.deadline or not self.pending:
            return False
        return len(self.pending) == len(self.ids) if self.any else True


class TaskCore:
    def _init_tasks(self, config, now: float) -> None:
        interval = config.worker_heartbeat_interval
        self.worker_interval = interval
        self.pool = WorkerPool(liveness=interval * config.worker_liveness)
        self.tasks = T.TaskBook()
        self.latency = Histogram()
        self.loop_time = LoopTimer()    # the loop's iterations (loop.py), for stats
        self.work_out: list[tuple[bytes, object]] = []
        self.output_rows = RowBuffer()  # task_output rows for the next commit
        self._output_bytes: dict[tuple[int, int], int] = {}
        self.waiters: list[Waiter] = []
        self._waits_by_task: dict[int, list[Waiter]] = {}
        self._ready_waits: list[tuple[object, Reply]] = []
        self._next_ping = now
        self._next_backstop = now
        # tasks in flight when the broker stopped: their workers get this long to claim them
        orphan_deadline = now + 2 * self.pool.liveness + 5.0
        self.tasks.next_id = self.store.max_id("tasks") + 1
        self.tasks.load_tallies(self.store.task_counts(), self.store.distribution())
        for row in self.store.load_queues():
            self.tasks.limits.load(row, now)
        for key, task_id, until in self.store.open_unique_windows(now):
            self.tasks.unique[key] = (task_id, until)
        for row in self.store.load_unfinished_tasks():
            task = T.Task(**row)
            if task.status in (T.ASSIGNED, T.RUNNING):
                task.orphan_deadline = orphan_deadline
                task.worker_id = None
            self.tasks.load(task)
        for task in [t for t in self.tasks.active.values() if t.status == T.WAITING]:
            self.tasks.wait_on(task, {d: self._state_of(d) for d in task.depends_on or ()},
                               now)
        if self.tasks.active:
            log.info("reloaded %d unfinished tasks", len(self.tasks.active))

    # --- helpers the handlers use ------------------------------------------------------
    def worker_seen(self, node_name: str, hostname: str, caps, metrics, now: float) -> None:
        node = self.registry.by_name.get(node_name)
        if node is None:
            node, _ = self.registry.register(node_name, now, hostname, "", caps, source="worker")
            self.emit(f"node.{node.name}.registered", node.public(now))
        change = self.registry.worker_heartbeat(node, metrics, now)
        if change is not None:
            self.on_level_change(change, now)

    def _state_of(self, task_id: int) -> str | None:
        task = self.tasks.get(task_id)
        if task is not None:
            return task.status
        row = self.store.task(task_id)
        return row["status"] if row else None

    def _inputs(self, task) -> list:
        """What a task that passes results gets: each dependency's return value (python) or
        its stdout (shell), in depends_on order."""
        out = []
        for d in task.depends_on or ():
            dep = self.tasks.get(d)
            result = dep.result if dep is not None else (self.store.task(d) or {}).get("result")
            result = result or {}
            out.append(result.get("result") if result.get("result") is not None
                       else result.get("stdout"))
        return out

    def worker_by_identity(self, ident: bytes):
        return self.pool.by_identity.get(ident)

    def task_public(self, task_id: int) -> dict | None:
        task = self.tasks.get(task_id)
        if task is not None:
            data = task.public()
        else:
            data = self.store.task(task_id)
            if data is None:
                return None
            data["final"] = data["status"] in T.FINAL
        if data["status"] == T.QUEUED and task is not None:
            data["waiting_reasons"] = dispatch.explain(task, self.registry, self.pool)
            held = self.tasks.limits.blocked(task.queue or "default", self.tasks_now)
            if held:
                data["waiting_reason"] = held
        return data

    def task_by_key(self, key: str) -> dict | None:
        task_id = self.tasks.keys.get(key)
        if task_id is not None:
            return self.tasks.active[task_id].public()
        row = self.store.task_by_key(key)
        # finished in this iteration: the book knows its state before the store does
        task = self.tasks.get(row["id"]) if row is not None else None
        return task.public() if task is not None else row

    def add_output(self, task, msg, now: float) -> None:
        key = (task.id, task.attempt)
        used = self._output_bytes.get(key, 0)
        if used >= OUTPUT_CAP:
            return
        data = msg.data[: OUTPUT_CAP - used]
        self._output_bytes[key] = used + len(data)
        self.output_rows.append((task.id, task.attempt, msg.seq, msg.stream, data, now))
        self.emit(f"task.{task.id}.output", {"id": task.id, "attempt": task.attempt,
                                             "stream": msg.stream, "data": data, "seq": msg.seq})

    def send_cancel(self, task, reason: str = "cancelled") -> None:
        worker = self.pool.by_id.get(task.worker_id) if task.worker_id else None
        if worker is not None:
            self.work_out.append((worker.identity, TaskCancel(task_id=task.id,
                                                              attempt=task.attempt, reason=reason)))

    def is_final(self, task_id: int) -> bool | None:
        """True / False, or None for an unknown task."""
        task = self.tasks.get(task_id)
        if task is not None:
            return task.status in T.FINAL
        row = self.store.task(task_id)
        return None if row is None else row["status"] in T.FINAL

    def defer_wait(self, ctx, ids: list, single: bool, deadline: float, any_: bool = False):
        """The tasks if all are final (or the deadline is now), else a Deferred: the reply
        goes to ctx's requester when they are, or at the deadline. any_: the final ones
        among ids as soon as there is one (an empty list at the deadline)."""
        if any_:
            ids = list(dict.fromkeys(ids))   # each once: "none final yet" counts them
        pending = {i for i in ids if not self.is_final(i)}
        waiter = Waiter(ctx.token, ctx.req_id, ids, single, deadline, pending, any_)
        if not waiter.waiting(ctx.now):
            return self._wait_result(waiter)
        self.waiters.append(waiter)
        for task_id in waiter.pending:
            self._waits_by_task.setdefault(task_id, []).append(waiter)
        return DEFERRED

    # --- timers --------------------------------------------------------------------------
    def tick_tasks(self, now: float) -> None:
        self.tasks.promote_delayed(now)
        self.tasks.expire_due(now)
        for worker in self.pool.expired(now):
            self._worker_lost(worker, now, f"worker {worker.id} missed its heartbeats")
        if now >= self._next_backstop:
            self._next_backstop = now + 1.0
            for task in list(self.tasks.active.values()):
                self._backstops(task, now)
        for worker, task in dispatch.dispatch(self.tasks, self.pool, self.registry, now):
            self.work_out.append((worker.identity, self.assign_message(task)))
        if now >= self._next_ping:
            self._next_ping = now + self.worker_interval
            ping = BrokerPing(ts=now)
            self.work_out.extend((w.identity, ping) for w in self.pool.by_id.values())

    def assign_message(self, task) -> TaskAssign:
        """What goes to the worker that runs this attempt (sent again, the same, when a
        reconnecting worker does not list it: the worker drops a duplicate)."""
        payload = task.payload
        if task.pass_results and task.depends_on:
            payload = {**payload, "inputs": self._inputs(task)}
        return TaskAssign(task_id=task.id, attempt=task.attempt, task_type=task.task_type,
                          payload=payload, timeout=task.timeout, soft_timeout=task.soft_timeout)

    def _backstops(self, task, now: float) -> None:
        if task.orphan_deadline is not None and now >= task.orphan_deadline:
            task.orphan_deadline = None
            self.tasks.lost(task, now, "no worker claimed it after the broker restarted")
        elif task.status == T.RUNNING and task.timeout and task.started_at and \
                now > task.started_at + task.timeout + TIMEOUT_BACKSTOP:
            self.send_cancel(task, "timeout")
            self._drop_from_worker(task)
            self.tasks.force_final(task, T.TIMED_OUT, now, f"timed out after {task.timeout:g}s "
                                   "(the worker did not report it)")
        elif task.cancel_requested and task.status in (T.ASSIGNED, T.RUNNING) and \
                now > task.updated_at + CANCEL_BACKSTOP:
            self._drop_from_worker(task)
            self.tasks.force_final(task, T.CANCELLED, now, "cancelled (the worker did not confirm)")

    def _drop_from_worker(self, task) -> None:
        worker = self.pool.by_id.get(task.worker_id) if task.worker_id else None
        if worker is not None:
            worker.active.discard((task.id, task.attempt))

    def _worker_lost(self, worker, now: float, why: str) -> None:
        log.warning("%s; requeueing its %d tasks", why, len(worker.active))
        self.pool.remove(worker)
        self.emit(f"node.{worker.node}.worker_lost", {"worker": worker.id, "reason": why})
        for task_id, attempt in worker.active:
            task = self.tasks.active.get(task_id)
            if task is not None and task.attempt == attempt:
                self.tasks.lost(task, now, why)

    def unsendable(self, ident: bytes, msg) -> None:
        """The loop could not route `msg` to `ident` (the worker is gone)."""
        if isinstance(msg, TaskAssign):
            task = self.tasks.active.get(msg.task_id)
            if task is not None and task.attempt == msg.attempt and task.status == T.ASSIGNED:
                self._drop_from_worker(task)
                self.tasks.unassign(task, self.tasks_now, "worker unreachable")

    # --- persistence and deferred replies ------------------------------------------------
    def task_streams(self) -> list[Stream]:
        """What persist() writes for tasks: rows and events together (durable when it
        holds a submission; events published after the commit), and streamed output."""
        return [
            Stream("tasks", self.tasks, _write_task_changes, encode=_encode_task_changes,
                   urgent=True,
                   durable=lambda changes: changes.accepted > 0,
                   committed=lambda changes: self.publish_task_events(changes.events)),
            Stream("task_output", self.output_rows, lambda st, rows: st.insert_output(rows),
                   urgent=True),
            Stream("queues", self.tasks.limits, lambda st, changes: st.save_queues(changes),
                   urgent=True),
        ]

    def publish_task_events(self, events: list[tuple]) -> None:
        """Every committed transition as `task.<id>.<event>` (queued, assigned, running,
        retry, cancel_requested, and the final states). Skipped while nobody subscribes: at
        thousands of tasks a second the event dicts are real work."""
        if not self.subscribed:
            return
        for task_id, _ts, event, attempt, node, detail in events:
            self.emit(f"task.{task_id}.{event}", {"id": task_id, "event": event,
                                                  "attempt": attempt, "node": node,
                                                  "detail": detail})

    def resolve_waiters(self, now: float) -> None:
        for task in self.tasks.take_finished():
            self._output_bytes.pop((task.id, task.attempt), None)
            for waiter in self._waits_by_task.pop(task.id, ()):
                waiter.pending.discard(task.id)
        keep = []
        for w in self.waiters:
            if w.waiting(now):
                keep.append(w)
                continue
            for task_id in w.pending:
                peers = self._waits_by_task.get(task_id)
                if peers and w in peers:
                    peers.remove(w)
            self._ready_waits.append((w.token, Reply(id=w.req_id, ok=True,
                                                     result=self._wait_result(w))))
        self.waiters = keep

    def _wait_result(self, w: Waiter):
        if w.any:
            return [self.task_public(i) for i in w.ids if i not in w.pending]
        result = [self.task_public(i) for i in w.ids]
        return result[0] if w.single else result

    def take_deferred(self) -> list[tuple[object, Reply]]:
        out, self._ready_waits = self._ready_waits, []
        return out


def _encode_task_changes(changes: T.TaskChanges) -> tuple[list[tuple], list[tuple], dict]:
    ended: dict[tuple, int] = {}
    for hour, node, state, delta in changes.ended:
        ended[(hour, node, state)] = ended.get((hour, node, state), 0) + delta
    return [t.row() for t in changes.tasks], changes.events, ended, changes.deps


def _write_task_changes(store, encoded: tuple) -> None:
    rows, events, ended, deps = encoded
    store.save_tasks(rows)
    store.insert_task_events(events)
    if deps:
        store.add_task_deps(deps)
    if ended:
        store.add_task_rollup([(h, node, state, n) for (h, node, state), n in ended.items()])
