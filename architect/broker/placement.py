"""Placement: which node runs a task (ARCHITECTURE.md §5). Pure: values in, decisions out.

score = 0.40·(1 − cpu/100) + 0.30·(1 − mem/100) + 0.20·(1 − active/slots) + 0.10·health

A node is eligible when it is not offline, not drained, has a connected worker with a free
slot that runs the task type, and its capabilities (the agent's and its workers') include
every requirement. Every decision carries the breakdown; a refusal carries a reason per node.
"""

from __future__ import annotations

from dataclasses import dataclass

from architect.broker.health import HEALTH_FACTOR
from architect.bus.protocol import OFFLINE

WEIGHTS = {"cpu": 0.40, "memory": 0.30, "tasks": 0.20, "health": 0.10}


@dataclass
class Candidate:
    """A node as placement sees it (built by the dispatcher from registry + workers)."""
    name: str
    status: str
    drained: bool
    capabilities: set
    task_types: set
    cpu: float
    memory: float
    active: int
    slots: int
    workers: int


def score(c: Candidate) -> dict:
    """The score and its parts, each already weighted."""
    cpu = min(max(c.cpu, 0.0), 100.0)
    mem = min(max(c.memory, 0.0), 100.0)
    load = (1 - min(c.active / c.slots, 1.0)) if c.slots else 0.0
    parts = {"cpu": WEIGHTS["cpu"] * (1 - cpu / 100),
             "memory": WEIGHTS["memory"] * (1 - mem / 100),
             "tasks": WEIGHTS["tasks"] * load,
             "health": WEIGHTS["health"] * HEALTH_FACTOR.get(c.status, 0.0)}
    out = {k: round(v, 4) for k, v in parts.items()}
    out["total"] = round(sum(parts.values()), 4)
    out["inputs"] = {"cpu_percent": c.cpu, "memory_percent": c.memory, "active": c.active,
                     "slots": c.slots, "status": c.status}
    return out


def total(c: Candidate) -> float:
    """score(c)["total"] without building the breakdown (the dispatch hot path)."""
    cpu = min(max(c.cpu, 0.0), 100.0)
    mem = min(max(c.memory, 0.0), 100.0)
    load = (1 - min(c.active / c.slots, 1.0)) if c.slots else 0.0
    w = WEIGHTS
    return (w["cpu"] * (1 - cpu / 100) + w["memory"] * (1 - mem / 100) + w["tasks"] * load
            + w["health"] * HEALTH_FACTOR.get(c.status, 0.0))


def best(candidates, task_type: str, requirements, pinned: str | None):
    """The best candidate that can take the task now, or None (no breakdowns, no reasons)."""
    top, top_key = None, None
    for c in candidates:
        if why_not(c, task_type, requirements, pinned) is None:
            key = (total(c), -c.active)
            if top is None or key > top_key:
                top, top_key = c, key
    return top


def why_not(c: Candidate, task_type: str | None, requirements, pinned: str | None,
            need_free_slot: bool = True) -> str | None:
    """None if the node can take the task now, else the reason it cannot."""
    if pinned is not None and c.name != pinned:
        return f"task is pinned to node {pinned}"
    if c.status == OFFLINE:
        return "node is offline"
    if c.drained:
        return "node is drained"
    missing = sorted(set(requirements) - c.capabilities)
    if missing:
        return "missing capabilities: " + ", ".join(missing)
    if not c.workers:
        return "no task worker connected"
    if task_type is not None and task_type not in c.task_types:
        return f"its workers do not run task type '{task_type}'"
    if need_free_slot and c.active >= c.slots:
        return f"all {c.slots} slots busy"
    return None


def rank(candidates, task_type: str | None, requirements, pinned: str | None = None,
         need_free_slot: bool = True) -> tuple[list[tuple[Candidate, dict]], dict[str, str]]:
    """Eligible candidates best first with breakdowns, and a reason for every other node."""
    eligible, reasons = [], {}
    for c in candidates:
        reason = why_not(c, task_type, requirements, pinned, need_free_slot)
        if reason is None:
            eligible.append((c, score(c)))
        else:
            reasons[c.name] = reason
    eligible.sort(key=lambda pair: (-pair[1]["total"], pair[0].active, pair[0].name))
    return eligible, reasons
