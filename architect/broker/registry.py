"""Nodes in memory: registration, heartbeats, health levels, offline detection.

Pure state: methods take `now` and return what changed; the loop persists and publishes.
Levels go through health.assess (hysteresis: a node's Hold); a node may have its own
thresholds (`node_thresholds`, set from the alert config, see alert_rules.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from architect.broker import health
from architect.bus.protocol import NODE_NAME_RE, RESERVED_NAMES
from architect.config import Thresholds
METRIC_KEYS = ("cpu_percent", "memory_percent", "disk_percent", "load_1", "load_5", "load_15",
               "net_bytes_sent", "net_bytes_recv", "process_count", "uptime", "boot_time")
MAX_CAPABILITIES = 64


class InvalidNode(ValueError):
    """A registration or heartbeat with an invalid field; the message names it."""


def check_name(name) -> str:
    if not isinstance(name, str) or not NODE_NAME_RE.fullmatch(name):
        raise InvalidNode(f"name {name!r} must be 1-128 letters, digits, '_' or '-'")
    if name in RESERVED_NAMES:
        raise InvalidNode(f"name {name!r} is reserved (it is an API path); choose another")
    return name


def check_capabilities(caps) -> list[str]:
    if not isinstance(caps, list) or len(caps) > MAX_CAPABILITIES or not all(
            isinstance(c, str) and 0 < len(c) <= 64 for c in caps):
        raise InvalidNode(f"capabilities must be a list of at most {MAX_CAPABILITIES} "
                          "non-empty strings (64 chars max)")
    return sorted(set(caps))


def clean_metrics(metrics: dict) -> dict:
    out = {}
    for key in METRIC_KEYS:
        value = metrics.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not math.isfinite(value)):
            raise InvalidNode(f"metric {key!r} must be a finite number")
        out[key] = value
    return out


@dataclass(eq=False)
class Node:
    id: int
    name: str
    hostname: str = ""
    ip_address: str = ""
    capabilities: list = field(default_factory=list)
    ssh: dict | None = None
    status: str = health.OFFLINE
    reasons: list = field(default_factory=list)
    drained: bool = False
    registered_at: float = 0.0
    last_seen: float = 0.0
    metrics: dict = field(default_factory=dict)
    source: str = "register"
    last_sample: float = 0.0
    agent_seen: float = 0.0   # last heartbeat from a node agent (not from a worker)
    hold: health.Hold = field(default_factory=health.Hold)  # hysteresis between samples

    def record(self) -> dict:
        """The row for the `nodes` table."""
        return {"id": self.id, "name": self.name, "hostname": self.hostname,
                "ip_address": self.ip_address, "capabilities": self.capabilities,
                "ssh": self.ssh, "status": self.status, "reasons": self.reasons,
                "drained": int(self.drained), "registered_at": self.registered_at,
                "last_seen": self.last_seen, "last_metrics": self.metrics, "source": self.source}

    def public(self, now: float) -> dict:
        """What the API, CLI and UI show."""
        out = self.record()
        out.pop("last_metrics")
        out["drained"] = self.drained
        out["metrics"] = self.metrics
        out["heartbeat_age"] = round(now - self.last_seen, 3) if self.last_seen else None
        return out


@dataclass
class LevelChange:
    node: Node
    old: str
    new: str
    reasons: list


class Registry:
    def __init__(self, thresholds: Thresholds, timeout: float, started_at: float = 0.0,
                 policy: health.Policy | None = None):
        self.thresholds = thresholds
        self.policy = policy or health.Policy()
        self.node_thresholds: dict[str, Thresholds] = {}  # name → its own (overrides applied)
        self.timeout = timeout
        self.started_at = started_at  # offline grace: a restarted broker waits one timeout
        self.by_name: dict[str, Node] = {}
        self.by_id: dict[int, Node] = {}
        self.next_id = 1
        self.dirty: set[Node] = set()

    def load(self, rows: list[dict]) -> None:
        for row in rows:
            node = Node(id=row["id"], name=row["name"], hostname=row["hostname"] or "",
                        ip_address=row["ip_address"] or "",
                        capabilities=row["capabilities"] or [], ssh=row["ssh"],
                        status=row["status"] or health.OFFLINE, reasons=row["reasons"] or [],
                        drained=bool(row["drained"]), registered_at=row["registered_at"] or 0.0,
                        last_seen=row["last_seen"] or 0.0, metrics=row["last_metrics"] or {},
                        source=row["source"] or "register")
            node.agent_seen = node.last_seen if node.source != "worker" else 0.0
            self._add(node)
            self.next_id = max(self.next_id, node.id + 1)

    def _add(self, node: Node) -> None:
        self.by_name[node.name] = node
        self.by_id[node.id] = node

    def get(self, key) -> Node | None:
        """By id (int or digits) or by name."""
        if isinstance(key, bool):
            return None
        if isinstance(key, int) or (isinstance(key, str) and key.isascii() and key.isdigit()
                                    and len(key) <= 18):
            node = self.by_id.get(int(key))
            if node is not None:
                return node
        return self.by_name.get(key) if isinstance(key, str) else None

    def register(self, name: str, now: float, hostname: str = "", ip_address: str = "",
                 capabilities: list | None = None, ssh: dict | None = None,
                 source: str = "register") -> tuple[Node, bool]:
        """Add or update a node; returns (node, created)."""
        node = self.by_name.get(check_name(name))
        if capabilities is not None:
            capabilities = check_capabilities(capabilities)
        created = node is None
        if created:
            node = Node(id=self.next_id, name=name, registered_at=now, source=source,
                        status=health.HEALTHY, reasons=["waiting for the first heartbeat"])
            self.next_id += 1
            self._add(node)
        node.hostname = hostname or node.hostname
        node.ip_address = ip_address or node.ip_address
        if capabilities is not None:
            node.capabilities = capabilities
        if ssh is not None:
            node.ssh = ssh
        self.dirty.add(node)
        return node, created

    def remove(self, node: Node) -> None:
        self.by_name.pop(node.name, None)
        self.by_id.pop(node.id, None)
        self.dirty.discard(node)

    def heartbeat(self, name: str, metrics: dict, now: float, hostname: str = "",
                  ip_address: str = "", capabilities: list | None = None
                  ) -> tuple[Node, LevelChange | None, bool]:
        """Apply one heartbeat; returns (node, level change or None, created)."""
        metrics = clean_metrics(metrics)
        node = self.by_name.get(name)
        created = False
        if node is None:
            node, created = self.register(name, now, hostname, ip_address, capabilities,
                                          source="heartbeat")
        else:
            if hostname and hostname != node.hostname:
                node.hostname = hostname
            if ip_address and ip_address != node.ip_address:
                node.ip_address = ip_address
            if capabilities is not None and capabilities != node.capabilities:
                node.capabilities = check_capabilities(capabilities)
        node.metrics = metrics
        node.last_seen = node.agent_seen = now
        self.dirty.add(node)
        return node, self._grade(node), created

    def worker_heartbeat(self, node: Node, metrics: dict, now: float) -> LevelChange | None:
        """A task worker's ping keeps its node alive. Its metrics grade the node only when
        no node agent has reported within the timeout (a node running just a worker)."""
        node.last_seen = now
        if now - node.agent_seen <= self.timeout:
            return None
        try:
            metrics = clean_metrics(metrics) if isinstance(metrics, dict) else {}
        except InvalidNode:
            metrics = {}
        node.metrics = metrics or node.metrics
        if now - node.last_sample >= 1.0:
            self.dirty.add(node)
        return self._grade(node)

    def thresholds_for(self, node: Node) -> Thresholds:
        return self.node_thresholds.get(node.name, self.thresholds)

    def _grade(self, node: Node) -> LevelChange | None:
        """One sample of the node's metrics through the hysteresis."""
        level, reasons, node.hold = health.assess(node.status, node.hold, node.metrics,
                                                  self.thresholds_for(node), self.policy)
        return self._set_level(node, level, reasons)

    def _set_level(self, node: Node, level: str, reasons: list) -> LevelChange | None:
        old = node.status
        node.reasons = reasons
        if level == old:
            return None
        node.hold = health.Hold()
        node.status = level
        self.dirty.add(node)
        return LevelChange(node, old, level, reasons)

    def check_offline(self, now: float) -> list[LevelChange]:
        changes = []
        for node in self.by_name.values():
            if node.status == health.OFFLINE:
                continue
            seen = max(node.last_seen, node.registered_at, self.started_at)
            if health.is_offline(seen, now, self.timeout):
                change = self._set_level(node, health.OFFLINE,
                                         [health.offline_reason(node.last_seen or seen, now)])
                changes.append(change)
        return changes

    def counts(self) -> dict:
        out = {level: 0 for level in health.LEVELS}
        for node in self.by_name.values():
            out[node.status] += 1
        return out

    def take_dirty(self) -> list[Node]:
        dirty, self.dirty = list(self.dirty), set()
        return dirty

    def put_back(self, nodes: list[Node]) -> None:
        """Nodes taken for a write that failed: dirty again, unless removed meanwhile."""
        self.dirty.update(n for n in nodes if n.name in self.by_name)

    def records(self, nodes: list[Node]) -> list[dict]:
        """The `nodes` rows of the given nodes that are still registered."""
        return [n.record() for n in nodes if n.name in self.by_name]
