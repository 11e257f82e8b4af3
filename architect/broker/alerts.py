"""Alerts: one opens on every change to a worse level, and resolves when the level recovers.

A node has at most one active level alert. On any level change the active one is resolved;
if the new level is not healthy a new alert opens at that level. Alerts keep their history
and can be acknowledged. Pure state; the loop persists `dirty` alerts.

Other kinds beside level alerts (the `kind` column; None is a level alert):
- "security": a bus key claimed another node's name (one per key and name claimed);
- "flapping": a node's level changed more than Policy.flap_changes times within
  Policy.flap_window seconds. While it flaps its level changes open no level alerts (its
  active one is resolved when the flapping alert opens); it resolves once the level has held
  for a whole window (tick), and a level alert opens then if the node is not healthy;
- "rule": a custom alert rule (alert_rules.py) holds for a node: one per (rule, node),
  `source` is the rule's name.
"""

from __future__ import annotations

from architect.broker import health
from architect.broker.registry import LevelChange


SECURITY = "security"   # alert kind: a bus key claimed another node's name
FLAPPING = "flapping"   # alert kind: a node's level changes too often
RULE = "rule"           # alert kind: a custom alert rule holds (source: the rule's name)


def _security_key(alert: dict) -> tuple[str, str]:
    return alert.get("source") or "", alert["node_name"]


def _blank(alert_id: int, now: float, **fields) -> dict:
    return {"id": alert_id, "node_id": None, "node_name": None, "level": None,
            "previous_level": None, "reasons": [], "message": "", "status": "active",
            "created_at": now, "resolved_at": None, "acknowledged_at": None,
            "acknowledged_by": None, "kind": None, "source": None, **fields}


class AlertBook:
    def __init__(self, policy: health.Policy | None = None):
        self.policy = policy or health.Policy()
        self.changes: dict[int, tuple] = {}    # node_id -> times of its recent level changes
        self.history: dict[int, list] = {}     # node_id -> its recent (old, new) levels
        self.flapping: dict[int, dict] = {}    # node_id -> active flapping alert
        self.rule_open: dict[tuple[str, int], dict] = {}  # (rule name, node_id) -> alert
        self.active: dict[int, dict] = {}      # node_id -> active alert
        self.by_id: dict[int, dict] = {}       # active alerts by alert id
        self.next_id = 1
        self.dirty: list[dict] = []
        self.security_open: dict[tuple[str, str], dict] = {}  # (key, claimed) -> alert

    def load(self, active_rows: list[dict], max_id: int) -> None:
        self.next_id = max_id + 1
        for row in active_rows:
            if row.get("kind") == SECURITY:
                self.security_open[_security_key(row)] = row
            elif row.get("kind") == FLAPPING:
                self.flapping[row["node_id"]] = row
                self.changes[row["node_id"]] = ()   # stable from the (re)start on
            elif row.get("kind") == RULE:
                self.rule_open[(row.get("source") or "", row["node_id"])] = row
            else:
                self.active[row["node_id"]] = row
            self.by_id[row["id"]] = row

    def security(self, key: str, claimed: str, what: str, now: float) -> dict | None:
        """A bus key claimed a node name that is not its own: one active alert per (key,
        claimed name) until acknowledged. Returns the alert when a new one opens."""
        if (key, claimed) in self.security_open:
            return None
        alert = {"id": self.next_id, "node_id": None, "node_name": claimed, "level": "critical",
                 "previous_level": None, "reasons": [f"key {key} claimed node {claimed} ({what})"],
                 "message": f"bus key {key!r} claimed to be node {claimed!r} ({what}): refused",
                 "status": "active", "created_at": now, "resolved_at": None,
                 "acknowledged_at": None, "acknowledged_by": None, "kind": SECURITY,
                 "source": key}
        self.next_id += 1
        self.security_open[(key, claimed)] = alert
        self.by_id[alert["id"]] = alert
        self.dirty.append(alert)
        return alert

    def on_change(self, change: LevelChange, now: float) -> tuple[dict | None, dict | None]:
        """Apply a level change; returns (resolved alert, opened alert). The opened one is a
        flapping alert when this change makes the node flap; a flapping node's changes
        open and resolve nothing."""
        node = change.node
        times, flaps = health.flap_step(self.changes.get(node.id, ()), now, self.policy)
        self.changes[node.id] = times
        seen = self.history.setdefault(node.id, [])
        seen.append((change.old, change.new))
        del seen[:-(self.policy.flap_changes + 1)]
        if node.id in self.flapping:
            return None, None
        if flaps:
            recent = seen[-len(times):]
            path = " -> ".join([recent[0][0]] + [new for _old, new in recent])
            resolved = self._resolve(node.id, now)
            opened = _blank(self.next_id, now, node_id=node.id, node_name=node.name,
                            level=_worst(change.old, change.new), previous_level=change.old,
                            kind=FLAPPING, reasons=[
                                f"level changed {len(times)} times in "
                                f"{self.policy.flap_window:g}s: {path}"],
                            message=f"{node.name} is flapping: its level changed "
                                    f"{len(times)} times within {self.policy.flap_window:g}s "
                                    f"(now {change.new}); no level alerts until it holds "
                                    f"for {self.policy.flap_window:g}s")
            self._open(opened)
            self.flapping[node.id] = opened
            return resolved, opened
        resolved = self._resolve(node.id, now)
        opened = None
        if change.new != health.HEALTHY:
            verb = "worse" if health.worsened(change.old, change.new) else "better"
            opened = {"id": self.next_id, "node_id": node.id, "node_name": node.name,
                      "level": change.new, "previous_level": change.old,
                      "reasons": list(change.reasons),
                      "message": f"{node.name} is {change.new} (was {change.old}, {verb}): "
                                 + "; ".join(change.reasons),
                      "status": "active", "created_at": now, "resolved_at": None,
                      "acknowledged_at": None, "acknowledged_by": None}
            self.next_id += 1
            self.active[node.id] = opened
            self.by_id[opened["id"]] = opened
            self.dirty.append(opened)
        return resolved, opened

    def _resolve(self, node_id: int, now: float) -> dict | None:
        alert = self.active.pop(node_id, None)
        if alert is None:
            return None
        self.by_id.pop(alert["id"], None)
        alert["status"] = "resolved"
        alert["resolved_at"] = now
        self.dirty.append(alert)
        return alert

    def node_removed(self, node_id: int, now: float) -> dict | None:
        return self._resolve(node_id, now)

    def node_removed_others(self, node_id: int, now: float) -> list[dict]:
        """Its flapping and rule alerts, resolved (the level alert: node_removed)."""
        self.changes.pop(node_id, None)
        self.history.pop(node_id, None)
        out = [self._close(self.flapping.pop(node_id), now)] if node_id in self.flapping else []
        for key in [k for k in self.rule_open if k[1] == node_id]:
            out.append(self._close(self.rule_open.pop(key), now))
        return out

    def _open(self, alert: dict) -> dict:
        self.next_id += 1
        self.by_id[alert["id"]] = alert
        self.dirty.append(alert)
        return alert

    def _close(self, alert: dict, now: float) -> dict:
        self.by_id.pop(alert["id"], None)
        alert["status"], alert["resolved_at"] = "resolved", now
        self.dirty.append(alert)
        return alert

    def tick(self, nodes: dict, now: float) -> list[tuple[dict, str]]:
        """Flapping nodes whose level held for a whole window: their flapping alert resolves
        and, if the node is not healthy, a level alert opens. nodes: id → registry Node.
        → [(alert, "resolved" | "opened")]."""
        out: list[tuple[dict, str]] = []
        for node_id, alert in list(self.flapping.items()):
            times = self.changes.get(node_id) or ()
            last = times[-1] if times else alert["created_at"]
            if not health.flap_over(max(last, alert["created_at"]), now, self.policy):
                continue
            del self.flapping[node_id]
            self.changes[node_id] = ()
            out.append((self._close(alert, now), "resolved"))
            node = nodes.get(node_id)
            if node is not None and node.status != health.HEALTHY:
                opened = _blank(self.next_id, now, node_id=node.id, node_name=node.name,
                                level=node.status, previous_level=node.status,
                                reasons=list(node.reasons),
                                message=f"{node.name} is {node.status} (no longer "
                                        "flapping): " + "; ".join(node.reasons))
                self.active[node.id] = self._open(opened)
                out.append((opened, "opened"))
        return out

    def open_rule(self, rule: str, node, level: str, reasons: list, message: str,
                  now: float) -> dict | None:
        """A rule holds for a node: its alert opens (None when one is open already)."""
        if (rule, node.id) in self.rule_open:
            return None
        alert = _blank(self.next_id, now, node_id=node.id, node_name=node.name, level=level,
                       reasons=list(reasons), message=message, kind=RULE, source=rule)
        self.rule_open[(rule, node.id)] = self._open(alert)
        return alert

    def resolve_rule(self, rule: str, node_id: int, now: float) -> dict | None:
        alert = self.rule_open.pop((rule, node_id), None)
        return None if alert is None else self._close(alert, now)

    def active_count(self) -> int:
        return len(self.active) + len(self.flapping) + len(self.rule_open)

    def acknowledge(self, alert: dict, who: str, now: float) -> dict:
        """Acknowledge an alert (active or historical row); idempotent."""
        live = self.by_id.get(alert["id"], alert)
        if not live.get("acknowledged_at"):
            live["acknowledged_at"] = now
            live["acknowledged_by"] = who
            if live.get("kind") == SECURITY and live["status"] == "active":
                live["status"], live["resolved_at"] = "resolved", now  # seen: done
                self.by_id.pop(live["id"], None)
                self.security_open.pop(_security_key(live), None)
            self.dirty.append(live)
        return live

    def take_dirty(self) -> list[dict]:
        dirty, self.dirty = self.dirty, []
        seen, out = set(), []
        for alert in reversed(dirty):
            if alert["id"] not in seen:
                seen.add(alert["id"])
                out.append(alert)
        return out

    def put_back(self, alerts: list[dict]) -> None:
        """Alerts taken for a write that failed: written with the next one."""
        self.dirty.extend(alerts)


def _worst(a: str, b: str) -> str:
    return a if health.SEVERITY[a] >= health.SEVERITY[b] else b
