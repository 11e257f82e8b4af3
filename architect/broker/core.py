"""The broker's state and verbs, without sockets: heartbeats in, requests in, decisions out.

The loop (loop.py) feeds it decoded messages and `now`, then calls persist() once per
iteration and sends the replies and events it collected. Tests drive it directly.
"""

from __future__ import annotations

import logging
import os
import time

from architect.broker import (accounts, handlers, identity, keys, queue_handlers,
                              schedule_handlers, task_handlers, views)
from architect.broker import backup_handlers
from architect.broker import notify_handlers
from architect.broker import alert_handlers
from architect.broker.health import Policy
from architect.broker.alerts import AlertBook
from architect.broker.audit import AuditBook
from architect.broker.methods import LOCAL, WEB_ROLES, Caller, Ctx, allowed
from architect.broker.params import Deferred, RequestError
from architect.broker.persist import RowBuffer, Stream
from architect.broker.registry import InvalidNode, Registry, check_name
from architect.broker.rollup import MetricsRollup
from architect.broker.store import BaseStore, Fenced, open_store
from architect.broker.task_core import TaskCore
from architect.broker.ssh_handlers import SSH_METHODS
from architect.broker.ssh_service import SSHService
from architect.bus.messages import Heartbeat, Reply, Request
from architect.config import Config

log = logging.getLogger("architect.broker")

FLUSH_INTERVAL = 1.0       # seconds between heartbeat batch writes
OFFLINE_CHECK_INTERVAL = 1.0
RETENTION_INTERVAL = 3600.0
# finished tasks removed per turn, a turn every 0.25 s while there is more (1,000/s): a
# turn costs 5-20 ms (scripts/bench_retention.py), never a long stall
TASK_PURGE_CHUNK = 250
PURGE_AGAIN = 0.25
class Counters(dict):
    def inc(self, key: str, n: int = 1) -> None:
        self[key] = self.get(key, 0) + n


class Broker(TaskCore):
    def __init__(self, config: Config, now: float | None = None, store: BaseStore | None = None):
        now = time.time() if now is None else now
        self.config = config
        self.security = None  # set by the loop when the bus is secured (CURVE)
        self.fenced = False   # the database refused our leader epoch (several masters)
        self.subscribed: dict = {}  # the events socket's subscriptions (the loop's, shared)
        self.started_at = now
        self.store = store or open_store(config)
        self.registry = Registry(config.thresholds(), config.heartbeat_timeout, started_at=now,
                                 policy=Policy.from_config(config))
        self.registry.load(self.store.load_nodes())
        self.alerts = AlertBook(Policy.from_config(config))
        self.alerts.load(self.store.load_alerts(), self.store.max_id("alerts"))
        alert_handlers.init(self)   # per-node thresholds and custom alert rules
        self.counters = Counters(heartbeats=0, heartbeats_rejected=0, protocol_errors=0,
                                 requests=0, request_errors=0, persist_errors=0, forbidden=0,
                                 identity_rejected=0)
        self.methods = {**handlers.METHODS, **task_handlers.TASK_METHODS, **views.VIEW_METHODS,
                        **SSH_METHODS, **keys.KEY_METHODS, **accounts.ACCOUNT_METHODS,
                        **schedule_handlers.SCHEDULE_METHODS, **queue_handlers.QUEUE_METHODS,
                        **backup_handlers.BACKUP_METHODS, **notify_handlers.NOTIFY_METHODS,
                        **alert_handlers.ALERT_METHODS}
        self.audit = AuditBook()
        self.work_keys: dict[bytes, str] = {}  # secured bus: worker routing id → its key
        self.metrics_rows = RowBuffer()  # samples for the next commit
        self.events: list[tuple[str, dict]] = []
        self.metrics_interval = max(config.heartbeat_interval, 1.0)
        self.rollup = MetricsRollup.from_config(config)   # 1-minute / 1-hour roll-ups
        self.rollup.interval = self.metrics_interval
        self._urgent = self._durable_write = False
        self._write_backoff_until = 0.0
        self._next_flush = now + FLUSH_INTERVAL
        self._next_offline = now + OFFLINE_CHECK_INTERVAL
        self._next_retention = now + 60.0
        self.tasks_now = now
        self._init_tasks(config, now)
        schedule_handlers.init_schedules(self)
        backup_handlers.init_backups(self)
        self.ssh = SSHService(config, now, self.store.max_id("ssh_audit") + 1)
        notify_handlers.init_notify(self, now)   # channels, rules, silences; alerts → messages
        # what persist() writes, in this order, in one transaction (persist.py: each book has
        # take_dirty() / put_back(taken)); a new table is one line here
        self.streams = [
            Stream("nodes", self.registry,
                   lambda st, nodes: st.save_nodes(self.registry.records(nodes))),
            Stream("alerts", self.alerts, lambda st, rows: st.save_alerts(rows), urgent=True),
            alert_handlers.config_stream(self),   # node_thresholds, alert_rules
            Stream("metrics", self.metrics_rows, lambda st, rows: st.insert_metrics(rows)),
            *self.task_streams(),   # tasks + task_events (durable if accepted), task_output
            schedule_handlers.schedule_stream(self),   # schedules and their runs
            Stream("ssh_audit", self.ssh, lambda st, rows: st.save_audit(rows), urgent=True,
                   durable=bool),
            Stream("audit", self.audit, lambda st, rows: st.insert_audit_log(rows),
                   urgent=True, durable=bool),
            notify_handlers.notify_stream(self),   # notification config and delivery attempts
        ]
        log.info("broker state loaded: %d nodes, %d active alerts from %s",
                 len(self.registry.by_name), len(self.alerts.active), self.store.path)

    # --- inputs -------------------------------------------------------------------
    def on_heartbeat(self, hb: Heartbeat, now: float, caller: Caller | None = None) -> None:
        if caller is not None and not identity.heartbeat_ok(self, hb, caller, now):
            return
        try:
            check_name(hb.name)
            node, change, created = self.registry.heartbeat(
                hb.name, hb.metrics, now, hb.hostname, hb.ip_address, hb.capabilities or None)
        except InvalidNode as exc:
            self.counters.inc("heartbeats_rejected")
            log.debug("heartbeat rejected: %s", exc)
            return
        self.counters["heartbeats"] += 1
        if created:
            self.emit(f"node.{node.name}.registered", node.public(now))
        if change is not None:
            self.on_level_change(change, now)
        self.alert_events(alert_handlers.on_sample(self, node, now))   # custom rules
        if now - node.last_sample >= self.metrics_interval * 0.9:  # jitter: keep ~every beat
            node.last_sample = now
            m = node.metrics
            self.metrics_rows.append((node.id, now, m.get("cpu_percent"), m.get("memory_percent"),
                                      m.get("disk_percent"), m.get("load_1"), m.get("load_5"),
                                      m.get("load_15"), m.get("net_bytes_sent"),
                                      m.get("net_bytes_recv"), m.get("process_count")))

    def on_request(self, req: Request, now: float, token=None,
                   caller: Caller = LOCAL) -> Reply | None:
        """The reply, or None when it comes later (see take_deferred). `caller` is who the
        bus says sent it (its key's name and role); the method's role decides."""
        self.counters["requests"] += 1
        self._urgent = True
        entry = self.methods.get(req.method) if isinstance(req.method, str) else None
        if entry is None:
            return self._error(req, "unknown_method", f"no method {req.method!r}")
        if not isinstance(req.params, dict):
            return self._error(req, "bad_request", "params must be a map")
        try:
            caller = self._effective(caller, req.on_behalf)
        except ValueError as exc:
            return self._refuse(req, caller, now, str(exc))
        if not allowed(caller.role, entry):
            return self._refuse(req, caller, now, f"{req.method} needs the role "
                                f"{entry.role}; {caller.name} is {caller.role}")
        if entry.writes:
            self._durable_write = True
        try:
            result = entry.fn(self, req.params, Ctx(now, caller, token, req.id))
            reply = None if isinstance(result, Deferred) else \
                Reply(id=req.id, ok=True, result=result)
        except RequestError as exc:
            reply = self._error(req, exc.code, str(exc))
        except (*self.store.errors, Fenced) as exc:  # the database could not answer: retry
            self.counters.inc("store_read_errors")
            log.warning("%s: the database could not answer (%s)", req.method,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else
                        type(exc).__name__)
            reply = self._error(req, "store_unavailable",
                                "the broker could not read its database; try again")
        except Exception:  # a bug in one handler must not take the broker down
            log.exception("handler %s failed", req.method, extra={"request_id": req.id})
            reply = self._error(req, "internal", f"{req.method} failed inside the broker; see its log")
        if entry.writes:
            self.audit.record(now, caller, req.method, req.params,
                              "accepted" if reply is None else  # answered later (SSH)
                              "ok" if reply.ok else reply.error["code"],
                              None if reply is None or reply.ok else reply.error["message"])
        return reply

    def writes(self, method) -> bool:
        entry = self.methods.get(method) if isinstance(method, str) else None
        return entry is not None and entry.writes

    @staticmethod
    def _effective(caller: Caller, on_behalf) -> Caller:
        """The web server speaks for its users: only an admin key may, and only as a web
        role (viewer, operator, admin)."""
        if on_behalf is None:
            return caller
        if caller.role != "admin":
            raise ValueError(f"{caller.name} may not act on behalf of others")
        user, role = on_behalf.get("user"), on_behalf.get("role")
        addr = on_behalf.get("addr")
        if not isinstance(user, str) or not user or len(user) > 200 or role not in WEB_ROLES:
            raise ValueError("on_behalf needs a user and a role (viewer, operator or admin)")
        return Caller(f"web:{user}", role, caller.name,
                      addr[:100] if isinstance(addr, str) else "")

    def _refuse(self, req: Request, caller: Caller, now: float, why: str) -> Reply:
        self.counters.inc("forbidden")
        self._durable_write = True  # the refusal's audit row is on disk before the reply
        self.audit.record(now, caller, req.method, req.params, "forbidden", why)
        log.warning("refused %s from %s: %s", req.method, caller.label(), why,
                    extra={"request_id": req.id})
        return self._error(req, "forbidden", why)

    def identity_mismatch(self, caller: Caller, claimed: str, what: str, now: float | None = None) -> None:
        """A node key spoke for another node's name: refused, counted, alerted once."""
        now = time.time() if now is None else now
        self.counters.inc("identity_rejected")
        log.warning("key %s claimed to be node %s (%s): refused", caller.name, claimed, what)
        alert = self.alerts.security(caller.name, claimed, what, now)
        if alert is not None:
            self.emit(f"alert.{alert['id']}", {"action": "opened", **alert})

    def _error(self, req: Request, code: str, message: str) -> Reply:
        self.counters["request_errors"] += 1
        return Reply(id=req.id, ok=False, error={"code": code, "message": message})

    # --- state changes --------------------------------------------------------------
    def on_level_change(self, change, now: float) -> None:
        resolved, opened = self.alerts.on_change(change, now)
        node = change.node
        log.info("node %s: %s -> %s %s", node.name, change.old, change.new, change.reasons)
        self.emit(f"node.{node.name}.{change.new}",
                  {"node": node.name, "old": change.old, "new": change.new,
                   "reasons": change.reasons})
        for alert, action in ((resolved, "resolved"), (opened, "opened")):
            if alert is not None:
                self.emit(f"alert.{alert['id']}", {"action": action, **alert})

    def remove_node(self, node, now: float) -> None:
        self.registry.remove(node)
        resolved = self.alerts.node_removed(node.id, now)
        self.store.delete_node(node.id)
        self.emit(f"node.{node.name}.removed", {"node": node.name, "id": node.id})
        if resolved:
            self.emit(f"alert.{resolved['id']}", {"action": "resolved", **resolved})
        self.alert_events((a, "resolved") for a in self.alerts.node_removed_others(node.id, now))
        alert_handlers.node_removed(self, node)

    def alert_events(self, pairs) -> None:
        """Alerts opened / resolved beside level changes (flapping, custom rules): emitted
        exactly as on_level_change emits level alerts."""
        for alert, action in pairs:
            self.emit(f"alert.{alert['id']}", {"action": action, **alert})

    def emit(self, topic: str, data: dict) -> None:
        self.events.append((topic, data))
        if topic.startswith("alert."):   # every alert change, of any kind, may notify
            notify_handlers.on_alert(self, data)

    # --- timers and persistence --------------------------------------------------------
    def tick(self, now: float) -> None:
        self.tasks_now = now
        schedule_handlers.tick_schedules(self, now)   # first: a run's task dispatches at once
        self.tick_tasks(now)
        self.ssh.tick(now)
        notify_handlers.tick_notify(self, now)   # results in, new messages out (threads)
        backup_handlers.tick_backups(self, now)
        if now >= self._next_offline:
            self._next_offline = now + min(OFFLINE_CHECK_INTERVAL, self.registry.timeout / 4)
            for change in self.registry.check_offline(now):
                self.on_level_change(change, now)
        self.alert_events(alert_handlers.tick(self, now))   # flapping over, rules' timers
        if now >= self.rollup.next_at:   # metrics roll-ups, a chunk at a time (rollup.py)
            self.rollup.tick(self.store, now, len(self.registry.by_name),
                             self.metrics_rows[0][1] if self.metrics_rows else None)
        if now >= self._next_retention:
            self._next_retention = now + RETENTION_INTERVAL
            # raw samples go once rolled into minutes (rollup.raw_cutoff)
            cutoff = self.rollup.raw_cutoff(now - self.config.metrics_retention_days * 86400)
            with self.store.transaction():
                purged = self.store.purge_metrics(cutoff)
                purged_audit = self.store.purge_audit(
                    now - self.config.audit_retention_days * 86400)
                task_cutoff = now - self.config.task_retention * 86400
                gone = self.store.purge_tasks(task_cutoff, TASK_PURGE_CHUNK)
                purged_output = self.store.purge_task_output(
                    now - self.config.task_output_retention * 86400)
            purged_tasks = self.tasks.forget(gone, task_cutoff)
            if purged_tasks or purged_output:
                log.info("task retention: removed %d finished tasks, %d output chunks",
                         purged_tasks, purged_output)
                self.counters.inc("tasks_purged", purged_tasks)
                if purged_tasks >= TASK_PURGE_CHUNK or purged_output >= 50_000:
                    self._next_retention = now + PURGE_AGAIN   # more: soon, in chunks
            if purged_audit:
                log.info("audit retention: purged %d rows", purged_audit)
            if purged:
                log.info("metrics retention: purged %d samples older than %.1f days",
                         purged, self.config.metrics_retention_days)
                self._next_retention = now + 1.0  # more to purge: continue soon, in chunks

    def persist(self, now: float, force: bool = False) -> bool:
        """Write what changed in one transaction, once per loop iteration: everything the
        iteration did lands in one commit (group commit). Heartbeat-only changes go at most
        every FLUSH_INTERVAL. Returns False on failure.

        (Holding task-progress commits back a few ms to batch more was measured: it starves
        the workers' slots, as new tasks wait for the commit. Not done.)"""
        urgent = self._urgent or any(s.book.dirty for s in self.streams if s.urgent)
        if not (force or urgent or now >= self._next_flush):
            self.resolve_waiters(now)
            return True
        if now < self._write_backoff_until and not force:
            return False  # the database was locked a moment ago: don't stall the loop again
        taken = [s.book.take_dirty() for s in self.streams]
        encoded = [s.encode(t) if s.encode else t for s, t in zip(self.streams, taken)]
        durable = bool(force or self._durable_write
                       or any(s.durable(t) for s, t in zip(self.streams, taken)))
        self._urgent = self._durable_write = False
        self._next_flush = now + FLUSH_INTERVAL
        if any(taken):
            try:
                # fsync when it holds what we acknowledge (accepted tasks, requests);
                # progress and heartbeats survive a broker crash without it
                with self.store.transaction(durable=durable):
                    for stream, data in zip(self.streams, encoded):
                        stream.write(self.store, data)
            except Exception as exc:
                if isinstance(exc, Fenced):  # another master leads: this broker must stop
                    self.fenced = str(exc) or "fenced"
                    log.error("%s; this broker stops", exc)
                self.counters.inc("persist_errors")
                self._write_backoff_until = now + 1.0
                log.error("could not write state (%s); will retry", exc)
                for stream, data in zip(self.streams, taken):
                    stream.book.put_back(data)
                return False
        for stream, data in zip(self.streams, taken):
            if stream.committed is not None:
                stream.committed(data)
        self.resolve_waiters(now)
        return True

    def take_events(self) -> list[tuple[str, dict]]:
        events, self.events = self.events, []
        return events

    def stats(self, now: float) -> dict:
        nodes = self.registry.by_name.values()
        caps: dict[str, int] = {}
        for n in nodes:
            for c in n.capabilities:
                caps[c] = caps.get(c, 0) + 1
        try:
            db_bytes = os.path.getsize(self.store.path)
        except OSError:
            db_bytes = None
        return {"nodes": {"total": len(self.registry.by_name), **self.registry.counts(),
                          "drained": sum(1 for n in nodes if n.drained)},
                "alerts": {"active": self.alerts.active_count()},
                "tasks": {"active": len(self.tasks.active), "queued": self.tasks.queued_count(),
                          "waiting_retry": len(self.tasks.delayed)},
                "workers": {"connected": len(self.pool.by_id),
                            "slots": sum(w.slots for w in self.pool.by_id.values()),
                            "busy": sum(len(w.active) for w in self.pool.by_id.values())},
                "capabilities": caps, "counters": dict(self.counters),
                "dispatch_latency": self.latency.snapshot(),
                "loop": self.loop_time.snapshot(),
                "ssh": {"totals": self.ssh.pool.stats()["totals"]},
                "uptime": round(now - self.started_at, 3), "started_at": self.started_at,
                "pid": os.getpid(), "db": {"path": self.store.path, "bytes": db_bytes}}

    def close(self) -> None:
        notify_handlers.close_notify(self)
        self.persist(time.time(), force=True)
        self.ssh.close()
        self.store.close()
