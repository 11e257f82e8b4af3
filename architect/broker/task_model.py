"""A task as the broker holds it and the database stores it: the Task record, its columns
(`tasks`), what one commit of the book hands to the store (TaskChanges), and the pure rules
about a task's attempts (retryable, backoff_delay, hour_of). The state machine that moves
tasks is TaskBook (tasks.py). Pure: no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import NamedTuple

from architect.bus.protocol import FINAL, QUEUED, TIMED_OUT
from architect.fastjson import dumps

RETRY_BACKOFF_MAX = 300.0
JSON = {"json": True}          # field metadata: a JSON-encoded column of `tasks`
IN_MEMORY = {"column": False}  # field metadata: not a column (kept in memory only)


@dataclass(eq=False)
class Task:
    id: int
    task_type: str
    payload: dict = field(metadata=JSON)
    requirements: list = field(default_factory=list, metadata=JSON)
    node: str | None = None                 # pinned node name
    priority: int = 0
    status: str = QUEUED
    attempt: int = 0
    max_attempts: int = 3
    retries: int = 0
    retry_count: int = 0
    retry_backoff: float = 1.0
    timeout: float | None = None
    idempotency_key: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    assigned_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    assigned_node: str | None = None
    worker_id: str | None = None
    placement: dict | None = field(default=None, metadata=JSON)
    result: dict | None = field(default=None, metadata=JSON)
    error: str | None = None
    not_before: float | None = None
    cancel_requested: bool = False
    submitted_by: str | None = None
    expires_at: float | None = None         # still waiting then: it ends expired, never run
    retry_on: list | None = field(default=None, metadata=JSON)      # exit codes / exception
    no_retry_on: list | None = field(default=None, metadata=JSON)   # names (see retryable)
    depends_on: list | None = field(default=None, metadata=JSON)    # task ids (workflows)
    pass_results: bool = False              # their results go to it as `inputs`
    unique_key: str | None = None           # a second submit with this key before
    unique_until: float | None = None       # unique_until gets this task back
    labels: dict | None = field(default=None, metadata=JSON)        # {key: value}, to filter
    soft_timeout: float | None = None       # shell: SIGTERM then, before the hard timeout
    queue: str | None = None                # its queue (None: "default"), see queues.py
    # after a broker restart: claim window
    orphan_deadline: float | None = field(default=None, metadata=IN_MEMORY)
    # cached JSON of immutable columns
    _json: dict = field(default_factory=dict, repr=False, metadata=IN_MEMORY)

    @property
    def queue_key(self) -> tuple:
        return (self.queue or "default", self.task_type, tuple(self.requirements), self.node)

    def public(self) -> dict:
        out = {k: getattr(self, k) for k in COLUMNS}
        out["final"] = self.status in FINAL
        return out

    def row(self) -> tuple:
        """The `tasks` row in TASK_COLUMNS order, JSON columns encoded (payload and
        requirements once: they never change), booleans as 0 / 1."""
        cache = self._json
        if not cache:
            cache["payload"] = dumps(self.payload)
            cache["requirements"] = dumps(self.requirements)
        row = list(_values(self))
        row[_PAYLOAD], row[_REQUIREMENTS] = cache["payload"], cache["requirements"]
        for i in _OTHER_JSON:
            if row[i] is not None:
                row[i] = dumps(row[i])
        row[_CANCEL] = int(row[_CANCEL])
        row[_PASS] = int(row[_PASS])
        return tuple(row)


# The columns of `tasks`, once: the Task fields, minus those kept in memory only. The store
# writes Task.row() under these names and reads rows back as Task(**row).
TASK_COLUMNS = tuple(f.name for f in fields(Task) if f.metadata.get("column", True))
JSON_TASK_COLUMNS = tuple(f.name for f in fields(Task) if f.metadata.get("json"))
COLUMNS = TASK_COLUMNS
_values = attrgetter(*TASK_COLUMNS)
_PAYLOAD, _REQUIREMENTS, _CANCEL, _PASS = (TASK_COLUMNS.index(c) for c in (
    "payload", "requirements", "cancel_requested", "pass_results"))
_OTHER_JSON = tuple(TASK_COLUMNS.index(c) for c in JSON_TASK_COLUMNS
                    if c not in ("payload", "requirements"))


class TaskChanges(NamedTuple):
    """What the book hands to persist(): the dirty tasks, the transition events, how many
    tasks were submitted (accepted: the commit must be durable), and the roll-up of the
    tasks that ended ((hour created, node or '', final state, +1), or -1 for a final task
    retried by hand). Falsy when empty."""
    tasks: list[Task]
    events: list[tuple]
    accepted: int
    ended: list = []
    deps: list = []          # (task id, dependency id) of the tasks submitted with depends_on

    def __bool__(self) -> bool:
        return bool(self.tasks or self.events)


def retryable(task: Task, state: str, result: dict) -> bool:
    """Whether a failure may be retried automatically: not when it matches no_retry_on,
    only when it matches retry_on (when given). Items are exit codes (ints), python
    exception class names (the error's "Name: ..." start) or "timeout"."""
    def matches(items) -> bool:
        name = (result.get("error") or "").split(":", 1)[0].strip()
        for item in items:
            if isinstance(item, bool):
                continue
            if isinstance(item, int) and result.get("exit_code") == item:
                return True
            if isinstance(item, str) and ((item == "timeout" and state == TIMED_OUT) or
                                          (item == name and name)):
                return True
        return False
    if task.no_retry_on and matches(task.no_retry_on):
        return False
    return not task.retry_on or matches(task.retry_on)


def hour_of(ts: float) -> int:
    """The start of the hour `ts` is in (the roll-up's bucket)."""
    return int(ts // 3600) * 3600


def backoff_delay(base: float, retry_number: int, rnd: random.Random) -> float:
    """Exponential backoff with jitter: base·2^(n−1), scaled by a random 0.5–1.0, capped."""
    return min(base * (2 ** (retry_number - 1)), RETRY_BACKOFF_MAX) * rnd.uniform(0.5, 1.0)
