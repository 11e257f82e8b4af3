"""Connected task workers as the broker sees them (Paranoid Pirate on the broker side).

A worker is known by its id (also its ZeroMQ routing id). It holds at most `slots` tasks,
plus `prefetch` more queued on it (credit-based flow control: the broker only sends while
active < slots, or < slots + prefetch once no worker anywhere has a free slot). Prefetch is
open only while the worker turns over short tasks: its recent runs average under
PREFETCH_SHORT seconds and it finished one within PREFETCH_WINDOW seconds. A worker busy
with a long task gets nothing queued behind it, so priorities and cancels of waiting tasks
keep their meaning there. A worker silent
for `liveness` seconds is dead: the caller requeues its tasks. Pure state; time passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PREFETCH_SHORT = 0.1     # seconds: a worker whose runs average less may prefetch
PREFETCH_WINDOW = 0.5    # ... while it finished one within this many seconds


@dataclass(eq=False)
class Worker:
    id: str
    identity: bytes
    node: str
    slots: int
    capabilities: set = field(default_factory=set)
    task_types: set = field(default_factory=set)
    active: set = field(default_factory=set)       # (task_id, attempt) it holds
    last_seen: float = 0.0
    connected_at: float = 0.0
    hostname: str = ""
    pid: int = 0
    draining: bool = False   # stopping: finishes what it holds, gets nothing new
    prefetch: int = 0        # tasks it may keep queued beyond its slots
    queues: tuple = ("default",)   # the queues it takes tasks from
    avg_duration: float | None = None   # moving average of its runs' durations
    short_until: float = 0.0            # prefetch is open until then (see the module doc)

    def free(self, now: float | None = None) -> int:
        """Free slots; with `now`, counting the prefetch when it is open."""
        if self.draining:
            return 0
        return self.slots + self.open_prefetch(now) - len(self.active)

    def open_prefetch(self, now: float | None) -> int:
        return self.prefetch if now is not None and now <= self.short_until else 0

    def finished_run(self, duration, now: float) -> None:
        """A result came in: keep the average and open the prefetch while runs are short."""
        if not isinstance(duration, (int, float)) or duration < 0:
            return
        avg = self.avg_duration
        self.avg_duration = avg = duration if avg is None else 0.8 * avg + 0.2 * duration
        if avg < PREFETCH_SHORT:
            self.short_until = now + PREFETCH_WINDOW

    def public(self, now: float) -> dict:
        return {"id": self.id, "node": self.node, "slots": self.slots,
                "prefetch": self.prefetch, "queues": list(self.queues),
                "active": len(self.active), "capabilities": sorted(self.capabilities),
                "task_types": sorted(self.task_types), "hostname": self.hostname,
                "pid": self.pid, "connected_at": self.connected_at,
                "last_seen_age": round(now - self.last_seen, 3)}


class WorkerPool:
    def __init__(self, liveness: float):
        self.liveness = liveness
        self.by_id: dict[str, Worker] = {}
        self.by_identity: dict[bytes, Worker] = {}   # routing id on the work socket
        self.by_node: dict[str, list[Worker]] = {}

    def upsert(self, worker_id: str, identity: bytes, node: str, slots: int, capabilities,
               task_types, now: float, hostname: str = "", pid: int = 0,
               prefetch: int = 0, queues=None) -> tuple[Worker, bool]:
        """Add or refresh a worker; returns (worker, new)."""
        w = self.by_id.get(worker_id)
        new = w is None
        if new:
            w = Worker(worker_id, identity, node, slots, connected_at=now)
            self.by_id[worker_id] = w
            self.by_node.setdefault(node, []).append(w)
        elif w.node != node:  # moved: re-index
            self._unindex(w)
            w.node = node
            self.by_node.setdefault(node, []).append(w)
        if w.identity != identity:
            if self.by_identity.get(w.identity) is w:
                del self.by_identity[w.identity]
            w.identity = identity
        self.by_identity[identity] = w
        w.slots, w.last_seen = slots, now
        w.capabilities, w.task_types = set(capabilities), set(task_types)
        w.hostname, w.pid, w.prefetch = hostname, pid, prefetch
        w.queues = tuple(queues) if queues else ("default",)
        return w, new

    def _unindex(self, w: Worker) -> None:
        peers = self.by_node.get(w.node, [])
        if w in peers:
            peers.remove(w)
        if not peers:
            self.by_node.pop(w.node, None)

    def remove(self, w: Worker) -> None:
        self.by_id.pop(w.id, None)
        if self.by_identity.get(w.identity) is w:
            del self.by_identity[w.identity]
        self._unindex(w)

    def expired(self, now: float) -> list[Worker]:
        return [w for w in self.by_id.values() if now - w.last_seen > self.liveness]

    def node_capacity(self, node: str, now: float | None = None) -> tuple[int, int, set, set, int]:
        """(active, slots, capabilities, task_types, workers) summed over the node's workers
        (with `now`: slots count the open prefetch too)."""
        active = slots = 0
        caps: set = set()
        types: set = set()
        workers = self.by_node.get(node, ())
        for w in workers:
            active += len(w.active)
            slots += len(w.active) if w.draining else w.slots + w.open_prefetch(now)
            caps |= w.capabilities
            types |= w.task_types
        return active, slots, caps, types, len(workers)

    def best_worker(self, node: str, task_type: str, now: float | None = None,
                    queue: str = "default") -> Worker | None:
        """The worker on `node` for a task of this type and queue: the one that lists the
        queue earliest (it serves its queues in order), then the one with most room."""
        best, rank = None, None
        for w in self.by_node.get(node, ()):
            free = w.free(now)
            if free > 0 and task_type in w.task_types and queue in w.queues:
                mine = (w.queues.index(queue), -free)
                if rank is None or mine < rank:
                    best, rank = w, mine
        return best

    def queue_ranks(self, now: float | None = None) -> dict[str, int]:
        """{queue: its earliest place in the queue list of a worker with room}: at equal
        priority, dispatch takes the queue a worker lists first (`--queue high --queue
        default` drains high first)."""
        ranks: dict[str, int] = {}
        for w in self.by_id.values():
            if w.free(now) > 0:
                for i, q in enumerate(w.queues):
                    if i < ranks.get(q, i + 1):
                        ranks[q] = i
        return ranks

    def total_free(self, now: float | None = None) -> int:
        return sum(max(w.free(now), 0) for w in self.by_id.values())
