"""Notifications (issue 14): alerts routed by rules to channels, muted by silences, and
delivered off the broker loop.

Every alert change the broker emits (`alert.<id>`: opened, resolved, acknowledged) comes to
NotifyBook.on_alert(). A **rule** picks alerts (least level, node glob, label globs) and
names the channels they go to; a channel gets one message per alert however many rules
route it there. While an alert fires and nobody acknowledged it, a rule's `repeat_interval`
sends it again; its `send_resolved` says whether the end is told (only where the firing
was). A **silence** (node glob and/or label globs, until a time) mutes what matches: nothing
is sent, a `silenced` row says so; when the silence ends and the alert still fires, it is
sent then. **Maintenance** of a node is a drain plus a silence of kind `maintenance`.

The book is pure state with `now` passed in; it hands Jobs to a Deliverer (notify_channels.py),
whose threads do the I/O and hand results back; the broker loop records each attempt
(the `notifications` table) and retries a failure with exponential backoff up to
`notify_attempts` attempts. A dead or hanging receiver costs a delivery thread its timeout,
never the loop anything.
"""

from __future__ import annotations

import fnmatch
import heapq
import time
from dataclasses import dataclass, field

from architect.broker import notify_channels as C

LEVELS = ("warning", "critical")               # a rule's least level
RANK = {"warning": 1, "critical": 2, "offline": 2}   # offline counts as critical
REPEAT_CHECK = 1.0                             # seconds between repeat / silence-end checks
MAX_RULE_CHANNELS = 20


class Changes(dict):
    """What waits to be written: channels, rules and silences by key (None: removed) and
    delivery rows; falsy when empty (persist.py asks)."""

    def __init__(self):
        super().__init__(channels={}, rules={}, silences={}, rows=[])

    def __bool__(self) -> bool:
        return any(self.values())


@dataclass
class Channel:
    name: str
    kind: str
    config: dict
    created_at: float = 0.0
    created_by: str | None = None

    def public(self, secrets: bool) -> dict:
        return {"name": self.name, "kind": self.kind,
                "config": dict(self.config) if secrets else C.redacted(self.kind, self.config),
                "redacted": not secrets, "created_at": self.created_at,
                "created_by": self.created_by}


@dataclass
class Rule:
    name: str
    channels: list
    min_level: str = "warning"
    node: str = "*"                  # glob on the node's name
    match: dict = field(default_factory=dict)     # label -> glob
    repeat_interval: float = 0.0     # 0: once
    send_resolved: bool = True
    created_at: float = 0.0
    created_by: str | None = None

    def matches(self, labels: dict) -> bool:
        return (RANK.get(labels.get("level"), 2) >= RANK[self.min_level]
                and fnmatch.fnmatchcase(labels.get("node", ""), self.node)
                and _labels_match(self.match, labels))

    def public(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "channels", "min_level", "node", "match",
                                              "repeat_interval", "send_resolved", "created_at",
                                              "created_by")}


@dataclass
class Silence:
    id: int
    node: str | None                 # glob on the node's name (None: any node)
    match: dict
    starts_at: float
    ends_at: float | None            # None: until removed (maintenance)
    comment: str
    created_by: str
    created_at: float
    kind: str = "silence"            # or maintenance

    def active(self, now: float) -> bool:
        return self.starts_at <= now and (self.ends_at is None or now < self.ends_at)

    def mutes(self, labels: dict, now: float) -> bool:
        return self.active(now) and (self.node is None or fnmatch.fnmatchcase(
            labels.get("node", ""), self.node)) and _labels_match(self.match, labels)

    def public(self, now: float) -> dict:
        return {"id": self.id, "node": self.node, "match": self.match, "kind": self.kind,
                "starts_at": self.starts_at, "ends_at": self.ends_at, "comment": self.comment,
                "created_by": self.created_by, "created_at": self.created_at,
                "active": self.active(now),
                "state": "active" if self.active(now) else
                         ("pending" if now < self.starts_at else "expired")}


def _labels_match(globs: dict, labels: dict) -> bool:
    return all(fnmatch.fnmatchcase(str(labels.get(k, "")), str(g)) for k, g in globs.items())


def labels_of(alert: dict, node_labels: dict | None = None) -> dict:
    """An alert's labels: alertname (NodeWarning / NodeCritical / NodeOffline, NodeFlapping,
    IdentityMismatch, a custom rule's name), node, level, severity, kind; a node's own labels
    too (they never replace these)."""
    level = alert.get("level") or "critical"
    kind = alert.get("kind") or "health"
    name = alert.get("alertname") or {"security": "IdentityMismatch",
                                       "flapping": "NodeFlapping"}.get(kind) or (
        alert.get("source") if kind == "rule" and alert.get("source") else None) or \
        f"Node{level.capitalize()}"
    out = {str(k): str(v) for k, v in (node_labels or {}).items()}
    out.update({"alertname": str(name), "node": alert.get("node_name") or "",
                "level": level, "severity": "warning" if RANK.get(level, 2) < 2 else "critical",
                "kind": kind})
    if alert.get("source"):
        out["source"] = str(alert["source"])
    return out


@dataclass
class Target:
    rule: Rule
    last_sent: float | None = None   # the firing message's last send (None: not yet)


@dataclass
class Firing:
    alert: dict
    labels: dict
    targets: dict                    # channel name -> Target
    acked: bool = False


@dataclass
class Job:
    """One message to one channel; attempt counts from 1."""
    delivery: int
    channel: str
    kind: str
    config: dict
    message: dict
    event: str                       # firing, resolved, repeat, test
    rule: str | None
    alert_id: int | None
    node: str | None
    attempt: int = 1


class NotifyBook:
    def __init__(self, attempts: int = 5, backoff: float = 2.0, external_url: str = ""):
        self.attempts, self.backoff, self.external_url = attempts, backoff, external_url
        self.channels: dict[str, Channel] = {}
        self.rules: dict[str, Rule] = {}
        self.silences: dict[int, Silence] = {}
        self.firing: dict[int, Firing] = {}
        self.retries: list = []            # heap of (due, seq, Job)
        self.outbox: list[Job] = []        # for the Deliverer
        self.in_flight = 0
        self.next_delivery = self.next_row = self.next_silence = 1
        self._seq = 0
        self._next_check = 0.0
        self.dirty = Changes()
        self.node_labels = lambda name: None   # the registry's labels of a node, if any

    # --- loading -------------------------------------------------------------------------
    def load(self, state: dict, active_alerts, now: float, alert_of=None) -> None:
        """From the store (load_notify). alert_of(id): an alert by id, resolved ones too
        (for a resolved notice whose retry was pending when the broker stopped)."""
        for row in state["channels"]:
            self.channels[row["name"]] = Channel(**row)
        for row in state["rules"]:
            self.rules[row["name"]] = Rule(**row)
        for row in state["silences"]:
            self.silences[row["id"]] = Silence(**row)
        self.next_silence = state["max_silence"] + 1
        self.next_row = state["max_row"] + 1
        self.next_delivery = state["max_delivery"] + 1
        for alert in active_alerts:   # firing before a restart: assume told, repeat later
            self._track(alert, now, sent=True)
        for row in state.get("retries", ()):
            self._resume(row, alert_of or (lambda _id: None), now)

    def _resume(self, row: dict, alert_of, now: float) -> None:
        """A retry that was waiting when the broker stopped: the next attempt of the same
        delivery, rebuilt from its channel and alert as they are now, due when it was."""
        ch = self.channels.get(row["channel"])
        if ch is None:
            return                              # the channel went: nothing to retry
        if row["event"] == "test":
            alert = {"id": 0, "node_name": "test", "level": "warning",
                     "alertname": "TestNotification", "reasons": ["test"],
                     "message": "a test notification from Architect (retried after a "
                                "broker restart)", "created_at": row["at"]}
            kind = "test"
        else:
            firing = self.firing.get(row["alert_id"])
            alert = firing.alert if firing is not None else alert_of(row["alert_id"])
            if alert is None:
                return                          # gone with retention
            kind = "resolved" if row["event"] == "resolved" else "firing"
        labels = labels_of(alert, self.node_labels(alert.get("node_name")))
        job = Job(row["delivery"], ch.name, ch.kind, dict(ch.config),
                  C.payload(kind, alert, labels, ch.name, self.external_url), row["event"],
                  row["rule"], row["alert_id"], row["node"], attempt=row["attempt"] + 1)
        self._seq += 1
        heapq.heappush(self.retries, (max(row["retry_at"], now), self._seq, job))

    # --- alerts in ---------------------------------------------------------------------------
    def on_alert(self, alert: dict, now: float | None = None) -> None:
        action = alert.get("action")
        now = time.time() if now is None else now
        if action == "opened":
            firing = self._track(alert, now, sent=False)
            for channel, target in firing.targets.items():
                self._fire(firing, channel, target, now, "firing")
        elif action == "resolved":
            firing = self.firing.pop(alert.get("id"), None)
            if firing is None:
                return
            firing.alert = dict(alert)
            for channel, target in firing.targets.items():
                if target.last_sent is not None and target.rule.send_resolved:
                    self._send(firing, channel, target.rule, now, "resolved")
        elif action == "acknowledged" and alert.get("id") in self.firing:
            self.firing[alert["id"]].acked = True
            if alert.get("status") == "resolved":     # a security alert ends when seen
                self.firing.pop(alert["id"], None)

    def _track(self, alert: dict, now: float, sent: bool) -> Firing:
        labels = labels_of(alert, self.node_labels(alert.get("node_name")))
        targets: dict = {}
        for rule in sorted(self.rules.values(), key=lambda r: r.name):
            if rule.matches(labels):
                for channel in rule.channels:
                    targets.setdefault(channel, Target(rule, now if sent else None))
        firing = Firing(dict(alert), labels, targets, bool(alert.get("acknowledged_at")))
        self.firing[alert["id"]] = firing
        return firing

    def silenced_by(self, labels: dict, now: float) -> Silence | None:
        return next((s for s in self.silences.values() if s.mutes(labels, now)), None)

    def _fire(self, firing: Firing, channel: str, target: Target, now: float, event: str) -> None:
        silence = self.silenced_by(firing.labels, now)
        if silence is not None:
            if target.last_sent is None and event == "firing":
                self._row(self._new_delivery(), 0, channel, event, target.rule.name,
                          firing, "silenced", f"silence {silence.id}: {silence.comment}", now)
            return
        target.last_sent = now
        self._send(firing, channel, target.rule, now, event)

    def _new_delivery(self) -> int:
        self.next_delivery += 1
        return self.next_delivery - 1

    def _send(self, firing: Firing, channel: str, rule: Rule, now: float, event: str) -> None:
        ch = self.channels.get(channel)
        delivery = self._new_delivery()
        if ch is None:
            self._row(delivery, 0, channel, event, rule.name, firing, "failed",
                      "no such channel (removed?)", now)
            return
        message = C.payload("resolved" if event == "resolved" else "firing", firing.alert,
                            firing.labels, channel, self.external_url)
        self.outbox.append(Job(delivery, channel, ch.kind, dict(ch.config), message, event,
                               rule.name, firing.alert.get("id"),
                               firing.labels.get("node")))

    def test(self, channel: Channel, who: str, now: float) -> int:
        alert = {"id": 0, "node_name": "test", "level": "warning", "alertname": "TestNotification",
                 "message": f"a test notification from Architect, sent by {who}",
                 "reasons": ["test"], "created_at": now}
        labels = labels_of(alert)
        delivery = self._new_delivery()
        self.outbox.append(Job(delivery, channel.name, channel.kind, dict(channel.config),
                               C.payload("test", alert, labels, channel.name, self.external_url),
                               "test", None, None, None))
        return delivery

    # --- time ------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Due retries to the outbox; repeats, and alerts whose silence ended."""
        while self.retries and self.retries[0][0] <= now:
            self.outbox.append(heapq.heappop(self.retries)[2])
        if now < self._next_check:
            return
        self._next_check = now + REPEAT_CHECK
        for sid in [i for i, s in self.silences.items()
                    if s.ends_at is not None and s.ends_at <= now]:
            del self.silences[sid]            # expired: kept in the database only
        for firing in list(self.firing.values()):
            if firing.acked:
                continue
            for channel, target in firing.targets.items():
                if target.last_sent is None:
                    if self.silenced_by(firing.labels, now) is None:
                        self._fire(firing, channel, target, now, "firing")
                elif target.rule.repeat_interval and \
                        now - target.last_sent >= target.rule.repeat_interval:
                    self._fire(firing, channel, target, now, "repeat")

    def take_outbox(self) -> list[Job]:
        jobs, self.outbox = self.outbox, []
        self.in_flight += len(jobs)
        return jobs

    def result(self, job: Job, error: str | None, note: str, started: float, ended: float) -> None:
        """A delivery thread's answer: recorded; a failure retried while attempts remain."""
        self.in_flight -= 1
        retry_at = None
        if error is not None and job.attempt < self.attempts:
            retry_at = ended + self.backoff * 2 ** (job.attempt - 1)
            nxt = Job(**{**job.__dict__, "attempt": job.attempt + 1})
            self._seq += 1
            heapq.heappush(self.retries, (retry_at, self._seq, nxt))
        self.dirty["rows"].append({
            "id": self._next_row_id(), "delivery": job.delivery, "attempt": job.attempt,
            "channel": job.channel, "kind": job.kind, "event": job.event, "rule": job.rule,
            "alert_id": job.alert_id, "node": job.node,
            "outcome": "sent" if error is None else "failed", "error": error,
            "detail": note[:500] if note else None, "at": ended,
            "duration": round(ended - started, 3), "retry_at": retry_at})

    def dropped(self, job: Job, why: str, now: float) -> None:
        self.in_flight -= 1
        self.dirty["rows"].append({
            "id": self._next_row_id(), "delivery": job.delivery, "attempt": job.attempt,
            "channel": job.channel, "kind": job.kind, "event": job.event, "rule": job.rule,
            "alert_id": job.alert_id, "node": job.node, "outcome": "failed", "error": why,
            "detail": None, "at": now, "duration": 0.0, "retry_at": None})

    def _next_row_id(self) -> int:
        self.next_row += 1
        return self.next_row - 1

    def _row(self, delivery, attempt, channel, event, rule, firing, outcome, why, now) -> None:
        ch = self.channels.get(channel)
        self.dirty["rows"].append({
            "id": self._next_row_id(), "delivery": delivery, "attempt": attempt,
            "channel": channel, "kind": ch.kind if ch else None, "event": event, "rule": rule,
            "alert_id": firing.alert.get("id"), "node": firing.labels.get("node"),
            "outcome": outcome, "error": why[:500], "detail": None, "at": now,
            "duration": 0.0, "retry_at": None})

    # --- configuration ---------------------------------------------------------------------
    def set_channel(self, ch: Channel) -> None:
        self.channels[ch.name] = ch
        self.dirty["channels"][ch.name] = ch

    def remove_channel(self, name: str) -> None:
        self.channels.pop(name, None)
        self.dirty["channels"][name] = None

    def set_rule(self, rule: Rule) -> None:
        self.rules[rule.name] = rule
        self.dirty["rules"][rule.name] = rule

    def remove_rule(self, name: str) -> None:
        self.rules.pop(name, None)
        self.dirty["rules"][name] = None

    def add_silence(self, **fields) -> Silence:
        s = Silence(id=self.next_silence, **fields)
        self.next_silence += 1
        self.silences[s.id] = s
        self.dirty["silences"][s.id] = s
        return s

    def expire_silence(self, s: Silence, now: float) -> Silence:
        if s.ends_at is None or s.ends_at > now:
            s.ends_at = max(now, s.starts_at)
            self.dirty["silences"][s.id] = s
        return s

    # --- unit of work (persist.py) ----------------------------------------------------------
    def take_dirty(self) -> dict:
        taken, self.dirty = self.dirty, Changes()
        return taken

    def put_back(self, taken: dict) -> None:
        for key in ("channels", "rules", "silences"):
            for k, v in taken[key].items():
                self.dirty[key].setdefault(k, v)
        self.dirty["rows"][:0] = taken["rows"]
