"""Tasks in memory: the state machine (ARCHITECTURE.md §6), the priority queue, retries.

    [waiting →] [scheduled →] queued → assigned → running → succeeded | failed | timed_out |
    cancelled; a waiting task whose dependency did not succeed ends cancelled
    a scheduled or queued task past its expires_at → expired (it never runs)

`attempt` counts runs: it goes up each time the task is assigned. A lost worker's tasks go
back to `queued` while attempt < max_attempts, else end `failed` (reason `lost`). A failed
or timed-out task is retried `retries` times, after an exponential backoff with jitter.
Pure state with `now` passed in; the broker persists `dirty` tasks and `events`.
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict

from architect.broker.queues import QueueBook
# the record and its rules (task_model.py), re-exported: callers read them as tasks.X
from architect.broker.task_model import (COLUMNS, JSON_TASK_COLUMNS,  # noqa: F401
                                         RETRY_BACKOFF_MAX, TASK_COLUMNS, Task, TaskChanges,
                                         backoff_delay, hour_of, retryable)
from architect.bus.protocol import (ASSIGNED, CANCELLED, EXPIRED, FAILED, FINAL,  # noqa: F401
                                    QUEUED, RUNNING, SCHEDULED, STATES, SUCCEEDED, TIMED_OUT,
                                    UNFINISHED, WAITING)

RECENT_FINAL = 20_000  # final tasks kept in memory for quick reads


class TaskBook:
    def __init__(self, rnd: random.Random | None = None):
        self.active: dict[int, Task] = {}            # every non-final task
        self.recent: OrderedDict[int, Task] = OrderedDict()
        self.queues: dict[tuple, list] = {}          # queue_key -> heap of (-priority, id)
        self.delayed: list = []                      # heap of (not_before, id)
        self.expiring: list = []                     # heap of (expires_at, id)
        self.dependents: dict[int, set] = {}         # task id -> waiting tasks that need it
        self.unmet: dict[int, set] = {}              # waiting task id -> its deps not done
        self.keys: dict[str, int] = {}               # idempotency key -> id (active tasks)
        self.next_id = 1
        self.dirty: dict[int, Task] = {}
        self.events: list[tuple] = []
        self.finished: list[Task] = []               # final this iteration (for waiters)
        self.accepted = 0                            # submitted since the last persist
        self.ended: list[tuple] = []                 # (hour, node, state, ±1): the roll-up
        self.deps: list[tuple] = []                  # (task id, dependency id) to record
        self.unique: dict[str, tuple[int, float]] = {}   # unique_key -> (task id, until)
        self.limits = QueueBook()                    # named queues' limits and in-flight sets
        # every final task in the database, counted once at start and then kept: the
        # dashboard's totals never scan a long history
        self.final_counts: dict[str, int] = {}
        self.final_by_node: dict[tuple[str, str], int] = {}
        self.rnd = rnd or random.Random()

    # --- bookkeeping --------------------------------------------------------------------
    def get(self, task_id: int) -> Task | None:
        return self.active.get(task_id) or self.recent.get(task_id)

    def _touch(self, task: Task, now: float, event: str, detail: dict | None = None) -> None:
        self.limits.track(task)
        task.updated_at = now
        self.dirty[task.id] = task
        self.events.append((task.id, now, event, task.attempt, task.assigned_node, detail))

    def load(self, task: Task) -> None:
        """A non-final task read back from the store at start."""
        self.active[task.id] = task
        self.limits.track(task)
        if task.idempotency_key:
            self.keys[task.idempotency_key] = task.id
        if task.status in (QUEUED, SCHEDULED):
            self._enqueue(task)
        if task.expires_at is not None:
            heapq.heappush(self.expiring, (task.expires_at, task.id))

    def _enqueue(self, task: Task) -> None:
        if task.not_before:
            heapq.heappush(self.delayed, (task.not_before, task.id))
        else:
            heapq.heappush(self.queues.setdefault(task.queue_key, []), (-task.priority, task.id))

    def load_tallies(self, counts: dict[str, int], distribution) -> None:
        """The database's final tasks per state, and per (node, state), at start."""
        self.final_counts = {s: n for s, n in counts.items() if s in FINAL}
        self.final_by_node = {(node, s): n for node, s, n in distribution if s in FINAL}

    def forget(self, gone, before: float) -> int:
        """Tasks the retention removed from the database (those final before `before`):
        (node, state, n) → the tallies drop them. Returns how many."""
        total = 0
        for node, state, n in gone:
            total += n
            self.final_counts[state] = self.final_counts.get(state, 0) - n
            if node:
                self.final_by_node[(node, state)] = self.final_by_node.get((node, state), 0) - n
        if total:   # the in-memory copies of removed tasks: gone too
            self.recent = OrderedDict((i, t) for i, t in self.recent.items()
                                      if t.finished_at is None or t.finished_at >= before)
        return total

    def counts(self) -> dict[str, int]:
        """{state: number of tasks}, every task ever (the final ones tallied, the others
        counted in memory)."""
        out = {s: n for s, n in self.final_counts.items() if n}
        for t in self.active.values():
            out[t.status] = out.get(t.status, 0) + 1
        return out

    def distribution(self) -> list[tuple[str, str, int]]:
        """(node, state, count) of every task ever assigned."""
        out = {k: n for k, n in self.final_by_node.items() if n}
        for t in self.active.values():
            if t.assigned_node is not None:
                key = (t.assigned_node, t.status)
                out[key] = out.get(key, 0) + 1
        return [(node, s, n) for (node, s), n in sorted(out.items())]

    def _dependency_ended(self, task: Task, dep_id: int, dep_state: str, now: float) -> None:
        """One of a waiting task's dependencies is final."""
        if task.status != WAITING:
            return
        if dep_state != SUCCEEDED:
            for d in self.unmet.pop(task.id, ()):
                self.dependents.get(d, set()).discard(task.id)
            task.error = f"dependency {dep_id} {dep_state}"
            self._finalize(task, CANCELLED, now, {"reason": task.error})
            return
        unmet = self.unmet.get(task.id)
        if unmet is not None:
            unmet.discard(dep_id)
            if unmet:
                return
            del self.unmet[task.id]
        task.status = SCHEDULED if task.not_before and task.not_before > now else QUEUED
        if task.status == QUEUED:
            task.not_before = None
        self._enqueue(task)
        if task.expires_at is not None:
            heapq.heappush(self.expiring, (task.expires_at, task.id))
        self._touch(task, now, task.status, {"after": WAITING})

    def wait_on(self, task: Task, dep_status: dict, now: float) -> None:
        """A waiting task read back at start: register what it still waits for."""
        for d in task.depends_on or ():
            state = dep_status.get(d)
            if state in FINAL:
                self._dependency_ended(task, d, state, now)
                if task.status != WAITING:
                    return
            else:
                self.unmet.setdefault(task.id, set()).add(d)
                self.dependents.setdefault(d, set()).add(task.id)
        if task.status == WAITING and not self.unmet.get(task.id):
            self.unmet.pop(task.id, None)
            task.status = QUEUED
            self._enqueue(task)
            self._touch(task, now, QUEUED, {"after": WAITING})

    def _finalize(self, task: Task, status: str, now: float, detail: dict | None = None) -> None:
        self.final_counts[status] = self.final_counts.get(status, 0) + 1
        if task.assigned_node is not None:
            key = (task.assigned_node, status)
            self.final_by_node[key] = self.final_by_node.get(key, 0) + 1
        self.ended.append((hour_of(task.created_at), task.assigned_node or "", status, 1))
        task.status = status
        task.finished_at = now
        task.not_before = None
        self.active.pop(task.id, None)
        if task.idempotency_key:
            self.keys.pop(task.idempotency_key, None)
        self.recent[task.id] = task
        while len(self.recent) > RECENT_FINAL:
            self.recent.popitem(last=False)
        self.finished.append(task)
        self._touch(task, now, status, detail)
        for waiting_id in sorted(self.dependents.pop(task.id, ())):
            waiting = self.active.get(waiting_id)
            if waiting is not None:
                self._dependency_ended(waiting, task.id, status, now)

    # --- transitions ----------------------------------------------------------------------
    def unique_task(self, key: str, now: float) -> int | None:
        """The task submitted with this unique_key whose window is still open, if any."""
        found = self.unique.get(key)
        if found is None:
            return None
        if found[1] <= now:
            del self.unique[key]
            return None
        return found[0]

    def submit(self, task: Task, now: float, dep_status: dict | None = None) -> Task:
        """A new task. dep_status: the state of each task in task.depends_on (the caller
        looked them up): all succeeded, it goes on as usual; one not (yet) final, it waits;
        one ended otherwise, it is cancelled at once, naming it."""
        task.id = self.next_id
        self.next_id += 1
        if task.unique_key and task.unique_until:
            if len(self.unique) > 100_000:      # bounded: drop the windows that closed
                self.unique = {k: v for k, v in self.unique.items() if v[1] > now}
            self.unique[task.unique_key] = (task.id, task.unique_until)
        if task.depends_on:
            self.deps.extend((task.id, d) for d in task.depends_on)
            unmet = {d for d in task.depends_on if (dep_status or {}).get(d) != SUCCEEDED}
            broken = next((d for d in task.depends_on
                           if (dep_status or {}).get(d) in FINAL and d in unmet), None)
            if broken is not None or unmet:
                task.created_at = now
                task.status = WAITING
                self.active[task.id] = task
                if task.idempotency_key:
                    self.keys[task.idempotency_key] = task.id
                self._touch(task, now, WAITING, {"submitted_by": task.submitted_by,
                                                 "depends_on": sorted(unmet)})
                self.accepted += 1
                if broken is not None:
                    self._dependency_ended(task, broken, dep_status[broken], now)
                else:
                    self.unmet[task.id] = unmet
                    for d in unmet:
                        self.dependents.setdefault(d, set()).add(task.id)
                return task
        task.created_at = now
        task.status = SCHEDULED if task.not_before and task.not_before > now else QUEUED
        if task.status == QUEUED:
            task.not_before = None
        self.active[task.id] = task
        if task.idempotency_key:
            self.keys[task.idempotency_key] = task.id
        self._enqueue(task)
        if task.expires_at is not None:
            heapq.heappush(self.expiring, (task.expires_at, task.id))
        detail = {"submitted_by": task.submitted_by}
        if task.status == SCHEDULED:
            detail["run_at"] = task.not_before
        self._touch(task, now, task.status, detail)
        self.accepted += 1
        return task

    def assign(self, task: Task, node: str, worker_id: str, breakdown: dict, now: float) -> None:
        task.status = ASSIGNED
        task.attempt += 1
        task.assigned_node, task.worker_id = node, worker_id
        task.placement = breakdown
        task.assigned_at = now
        task.started_at = None
        task.orphan_deadline = None
        self._touch(task, now, ASSIGNED, {"worker": worker_id, "score": breakdown.get("total")})

    def unassign(self, task: Task, now: float, why: str) -> None:
        """Sending to the worker failed: back to the queue, this attempt never ran."""
        task.status = QUEUED
        task.attempt -= 1
        task.worker_id = None
        self._enqueue(task)
        self._touch(task, now, QUEUED, {"reason": why})

    def started(self, task: Task, ts: float, now: float) -> None:
        if task.status == ASSIGNED:
            task.status = RUNNING
            task.started_at = ts
            self._touch(task, now, RUNNING)

    def finish(self, task: Task, state: str, result: dict, now: float) -> None:
        """A worker's result. Failed / timed-out tasks with retries left go back to wait."""
        task.result = result
        task.error = result.get("error")
        if task.started_at is None:
            task.started_at = result.get("started_at") or now
        if task.cancel_requested and state not in (SUCCEEDED,):
            state = CANCELLED
        if state in (FAILED, TIMED_OUT) and task.retry_count < task.retries and \
                retryable(task, state, result):
            task.retry_count += 1
            delay = backoff_delay(task.retry_backoff, task.retry_count, self.rnd)
            task.status = QUEUED
            task.worker_id = None
            task.not_before = now + delay
            self._enqueue(task)
            self._touch(task, now, "retry", {"after": state, "error": task.error,
                                             "delay": round(delay, 3),
                                             "retry": task.retry_count})
            return
        self._finalize(task, state, now, {"error": task.error} if task.error else None)

    def lost(self, task: Task, now: float, why: str) -> None:
        """Its worker died or forgot it: requeue while attempts remain, else fail (lost)."""
        task.worker_id = None
        if task.cancel_requested:
            task.error = "cancelled (worker lost)"
            self._finalize(task, CANCELLED, now, {"reason": why})
        elif task.attempt < task.max_attempts:
            task.status = QUEUED
            self._enqueue(task)
            self._touch(task, now, QUEUED, {"reason": why, "lost_attempt": task.attempt})
        else:
            task.error = f"lost: {why} (after {task.attempt} attempts)"
            self._finalize(task, FAILED, now, {"reason": "lost", "detail": why})

    def cancel(self, task: Task, now: float) -> bool:
        """Cancel: a waiting task ends now (True); a running one needs its worker (False)."""
        if task.status in (QUEUED, SCHEDULED, WAITING):
            for d in self.unmet.pop(task.id, ()):
                self.dependents.get(d, set()).discard(task.id)
            task.error = "cancelled"
            self._finalize(task, CANCELLED, now)
            return True
        if not task.cancel_requested:
            task.cancel_requested = True
            self._touch(task, now, "cancel_requested")
        return False

    def retry(self, task: Task, now: float, by: str | None = None) -> None:
        """A final task given another run by hand (failed, timed out, or lost): back to the
        queue as the same task, its history kept (a `retried` event says what it was), its
        automatic retries counted afresh, and room for at least one more attempt."""
        was, error = task.status, task.error
        self.final_counts[was] = self.final_counts.get(was, 0) - 1
        if task.assigned_node is not None:
            key = (task.assigned_node, was)
            self.final_by_node[key] = self.final_by_node.get(key, 0) - 1
        self.ended.append((hour_of(task.created_at), task.assigned_node or "", was, -1))
        self.recent.pop(task.id, None)
        task.status = QUEUED
        task.finished_at = task.not_before = task.worker_id = None
        task.error = None
        task.retry_count = 0
        task.cancel_requested = False
        task.max_attempts = max(task.max_attempts, task.attempt + 1)
        task.expires_at = None     # a task retried by hand runs, whatever its expiry was
        self.active[task.id] = task
        if task.idempotency_key:
            self.keys[task.idempotency_key] = task.id
        self._enqueue(task)
        self._touch(task, now, "retried", {"by": by, "was": was, "error": error})

    def force_final(self, task: Task, state: str, now: float, error: str) -> None:
        task.error = error
        self._finalize(task, state, now, {"reason": error})

    # --- the queue --------------------------------------------------------------------
    def promote_delayed(self, now: float) -> None:
        while self.delayed and self.delayed[0][0] <= now:
            _, task_id = heapq.heappop(self.delayed)
            task = self.active.get(task_id)
            if task is not None and task.status in (QUEUED, SCHEDULED) and \
                    task.not_before is not None:
                task.not_before = None
                if task.status == SCHEDULED:
                    task.status = QUEUED
                    self._touch(task, now, QUEUED, {"after": SCHEDULED})
                heapq.heappush(self.queues.setdefault(task.queue_key, []),
                               (-task.priority, task.id))

    def expire_due(self, now: float) -> None:
        """A task still waiting (scheduled or queued) at its expires_at ends expired."""
        while self.expiring and self.expiring[0][0] <= now:
            expires_at, task_id = heapq.heappop(self.expiring)
            task = self.active.get(task_id)
            if task is not None and task.status in (QUEUED, SCHEDULED) and \
                    task.expires_at == expires_at:
                task.error = "expired: it was still waiting at its expires_at"
                self._finalize(task, EXPIRED, now, {"expires_at": expires_at})

    def head(self, key: tuple) -> Task | None:
        """The next task of one queue, dropping entries that are no longer queued."""
        heap = self.queues.get(key)
        while heap:
            task = self.active.get(heap[0][1])
            if task is not None and task.status == QUEUED and task.not_before is None:
                return task
            heapq.heappop(heap)
        if heap is not None and not heap:
            del self.queues[key]
        return None

    def pop(self, key: tuple) -> None:
        heapq.heappop(self.queues[key])

    def queued_count(self) -> int:
        return sum(1 for t in self.active.values() if t.status == QUEUED)

    # --- unit of work: persist() takes the changes, and puts them back if the write fails
    def take_dirty(self) -> TaskChanges:
        """(dirty tasks, events, how many of them are new submissions)."""
        changes = TaskChanges(list(self.dirty.values()), self.events, self.accepted, self.ended,
                              self.deps)
        self.dirty, self.events, self.accepted, self.ended, self.deps = {}, [], 0, [], []
        return changes

    def put_back(self, changes: TaskChanges) -> None:
        """Changes taken for a write that failed: pending again, ahead of newer events."""
        for taken in changes.tasks:
            task = self.get(taken.id)
            if task is not None:
                self.dirty[task.id] = task
        self.events = changes.events + self.events
        self.accepted += changes.accepted
        self.ended = changes.ended + self.ended
        self.deps = changes.deps + self.deps

    def take_finished(self) -> list[Task]:
        done, self.finished = self.finished, []
        return done
