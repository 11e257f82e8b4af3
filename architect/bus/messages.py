"""Message classes. Each type is a dataclass; `TYPE` is its wire name.

The envelope on the wire is one msgpack map: ``{"v": 1, "type": TYPE, **fields}``.
Field types are checked on decode from the annotations (see codec.py). Add a type by
defining a dataclass here and decorating it with ``@message``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

REGISTRY: dict[str, type] = {}


def message(cls):
    """Register a dataclass as a wire message under its TYPE."""
    cls = dataclass(cls)
    REGISTRY[cls.TYPE] = cls
    return cls


@message
class Heartbeat:
    """Agent → broker (PUB/SUB :5555). The node's identity and its latest metrics.

    metrics: cpu_percent, memory_percent, disk_percent, load_1, load_5, load_15,
    net_bytes_sent, net_bytes_recv, process_count, uptime, boot_time (numbers).
    """
    TYPE = "heartbeat"
    name: str
    ts: float
    metrics: dict
    hostname: str = ""
    ip_address: str = ""
    capabilities: list = field(default_factory=list)
    seq: int = 0


@message
class Request:
    """Client → broker (DEALER/ROUTER :5557). Call `method` with `params`; `id` is echoed."""
    TYPE = "request"
    id: Any
    method: str
    params: dict = field(default_factory=dict)
    # {user, role, addr}: the web server (holding the master's admin key) calls for a web
    # user; the broker then checks that user's role. Refused from any other caller.
    on_behalf: Optional[dict] = None


@message
class Reply:
    """Broker → client. `ok` true: `result` holds the answer; false: `error` = {code, message}."""
    TYPE = "reply"
    id: Any
    ok: bool
    result: Any = None
    error: Optional[dict] = None


@message
class Event:
    """Broker → subscribers (PUB :5558), sent after a topic frame such as `node.web-1.offline`."""
    TYPE = "event"
    topic: str
    ts: float
    data: dict = field(default_factory=dict)


# --- work socket (:5556): task workers (DEALER) <-> broker (ROUTER) -----------------------

@message
class WorkerReady:
    """Worker → broker, on start and after every reconnect. Everything the broker needs to
    (re)build its view of the worker: identity, node, slots (max concurrent tasks),
    capabilities, task types, the (task_id, attempt) pairs it is running, and results it
    still holds unacknowledged (resent separately as `result` messages)."""
    TYPE = "ready"
    worker_id: str
    node: str
    slots: int
    capabilities: list = field(default_factory=list)
    task_types: list = field(default_factory=list)
    running: list = field(default_factory=list)
    hostname: str = ""
    pid: int = 0
    metrics: dict = field(default_factory=dict)
    # how many tasks beyond `slots` it takes and keeps queued, so a slot that frees starts
    # its next task at once; the broker fills free slots anywhere before it prefetches
    prefetch: int = 0
    # the queues it takes tasks from, first first (empty: "default" only)
    queues: list = field(default_factory=list)


@message
class WorkerPing(WorkerReady):
    """Worker → broker every worker heartbeat interval; same fields as `ready`, so a broker
    that restarted learns the worker from its next ping."""
    TYPE = "wping"


@message
class WorkerBye:
    """Worker → broker when it stops. final false: "send me nothing new" (it finishes what it
    runs, up to its shutdown grace); final true: "I am gone": the broker requeues whatever
    this worker still held, at once, instead of waiting out the liveness window."""
    TYPE = "bye"
    worker_id: str
    final: bool = False


@message
class BrokerPing:
    """Broker → worker every interval. A worker that hears nothing from the broker for
    `liveness` intervals reconnects and sends `ready` again (Paranoid Pirate). `leaving`:
    the broker is stopping (several masters: another may take over): reconnect now, asking
    the dashboards where the active broker is, instead of waiting out the liveness."""
    TYPE = "bping"
    ts: float
    leaving: bool = False


@message
class TaskAssign:
    """Broker → worker: run this task. `timeout` seconds (None: no limit); `soft_timeout`
    seconds: a shell task's process group gets SIGTERM then, to clean up, and sees the
    value in $ARCHITECT_SOFT_TIMEOUT."""
    TYPE = "task"
    task_id: int
    attempt: int
    task_type: str
    payload: dict
    timeout: Optional[float] = None
    soft_timeout: Optional[float] = None


@message
class TaskStarted:
    """Worker → broker: the task's process/function has started."""
    TYPE = "started"
    task_id: int
    attempt: int
    ts: float


@message
class TaskOutput:
    """Worker → broker: a chunk of a running task's stdout or stderr."""
    TYPE = "output"
    task_id: int
    attempt: int
    stream: str
    data: str
    seq: int = 0


@message
class TaskResult:
    """Worker → broker: the task ended. `state` is succeeded, failed, timed_out or
    cancelled. The worker resends it until the broker answers `ack`."""
    TYPE = "result"
    task_id: int
    attempt: int
    state: str
    exit_code: Optional[int] = None
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    result: Any = None
    error: Optional[str] = None
    duration: float = 0.0
    started_at: Optional[float] = None
    finished_at: Optional[float] = None


@message
class TaskResults:
    """Worker → broker: several results at once (those that ended in one turn of the
    worker's loop). Each item is a `result` message's fields, without `v` and `type`; the
    broker answers with one `acks`."""
    TYPE = "results"
    results: list


@message
class TaskAcks:
    """Broker → worker: the results of these [task_id, attempt] pairs are committed."""
    TYPE = "acks"
    acks: list


@message
class TaskAck:
    """Broker → worker: the result of (task_id, attempt) is committed; forget it."""
    TYPE = "ack"
    task_id: int
    attempt: int


@message
class TaskCancel:
    """Broker → worker: stop (task_id, attempt): SIGTERM its process group, SIGKILL after
    the grace period, report state `cancelled`."""
    TYPE = "cancel"
    task_id: int
    attempt: int
    reason: str = "cancelled"
