"""Alerts: one opens on every change to a worse level, and resolves when the level recovers.

A node has at most one active alert. On any level change the active one is resolved; if
the new level is not healthy a new alert opens at that level. Alerts keep their history
and can be acknowledged. Pure state; the loop persists `dirty` alerts.
"""

from __future__ import annotations

from architect.broker import health
from architect.broker.registry import LevelChange


SECURITY = "security"   # alert kind: a bus key claimed another node's name


def _security_key(alert: dict) -> tuple[str, str]:
    return alert.get("source") or "", alert["node_name"]


class AlertBook:
    def __init__(self):
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
        """Apply a level change; returns (resolved alert, opened alert)."""
        node = change.node
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
