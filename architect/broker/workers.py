"""Connected task workers as the broker sees them (Paranoid Pirate on the broker side).

A worker is known by its id (also its ZeroMQ routing id). It holds at most `slots` tasks
(credit-based flow control: the broker only sends while active < slots). A worker silent
for `liveness` seconds is dead: the caller requeues its tasks. Pure state; time passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

    @property
    def free(self) -> int:
        return 0 if self.draining else self.slots - len(self.active)

    def public(self, now: float) -> dict:
        return {"id": self.id, "node": self.node, "slots": self.slots,
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
               task_types, now: float, hostname: str = "", pid: int = 0) -> tuple[Worker, bool]:
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
        w.hostname, w.pid = hostname, pid
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

    def node_capacity(self, node: str) -> tuple[int, int, set, set, int]:
        """(active, slots, capabilities, task_types, workers) summed over the node's workers."""
        active = slots = 0
        caps: set = set()
        types: set = set()
        workers = self.by_node.get(node, ())
        for w in workers:
            active += len(w.active)
            slots += len(w.active) if w.draining else w.slots
            caps |= w.capabilities
            types |= w.task_types
        return active, slots, caps, types, len(workers)

    def best_worker(self, node: str, task_type: str) -> Worker | None:
        best = None
        for w in self.by_node.get(node, ()):
            if w.free > 0 and task_type in w.task_types and (best is None or w.free > best.free):
                best = w
        return best

    def total_free(self) -> int:
        return sum(max(w.free, 0) for w in self.by_id.values())
