"""Tier 1: who may call which control method (ARCHITECTURE.md §10), and what the audit keeps.

The handler tables are the only list of roles: every entry is pinned here, so a new method
cannot land without being classified (reads vs writes, least role, node access). Pure: no
sockets, no clock.
"""

from __future__ import annotations

import json

import pytest

from architect.broker import accounts, audit, handlers, keys, methods, task_handlers, views
from architect.broker.methods import ADMIN, NODE, OPERATOR, ROLES, VIEWER, WEB_ROLES, Method
from architect.bus.messages import Heartbeat, TaskResult, WorkerReady
from architect.broker.ssh_handlers import SSH_METHODS
from architect.broker.schedule_handlers import SCHEDULE_METHODS
from architect.broker.queue_handlers import QUEUE_METHODS
from architect.broker.backup_handlers import BACKUP_METHODS
from architect.broker.alert_handlers import ALERT_METHODS
from architect.broker.notify_handlers import NOTIFY_METHODS

TABLES = {"schedule_handlers.SCHEDULE_METHODS": SCHEDULE_METHODS,
          "backup_handlers.BACKUP_METHODS": BACKUP_METHODS,
          "alert_handlers.ALERT_METHODS": ALERT_METHODS,
          "notify_handlers.NOTIFY_METHODS": NOTIFY_METHODS,
          "queue_handlers.QUEUE_METHODS": QUEUE_METHODS,"handlers.METHODS": handlers.METHODS, "task_handlers.TASK_METHODS": task_handlers.TASK_METHODS,
          "views.VIEW_METHODS": views.VIEW_METHODS, "keys.KEY_METHODS": keys.KEY_METHODS,
          "accounts.ACCOUNT_METHODS": accounts.ACCOUNT_METHODS, "ssh.SSH_METHODS": SSH_METHODS}
ALL = {name: m for table in TABLES.values() for name, m in table.items()}

# Every method that changes nothing. Anything not listed here must be marked writes=True
# (durable commit before the reply, an audit row): a new method has to be put in one list.
READ_ONLY = {
    "node.list", "node.get", "health.summary", "alert.list", "cluster.stats", "ping",
    "task.get", "task.list", "task.wait", "task.output", "placement.recommend", "task.graph",
    "placement.distribution", "worker.list",
    "node.metrics", "task.page", "task.timeline", "cluster.topology", "cluster.flow",
    "cluster.summary",
    "keys.list", "users.list", "tokens.list", "audit.list",
    "ssh.pool.stats", "ssh.audit", "schedule.list", "schedule.get", "queue.list",
    "backup.status",
    "node.thresholds", "alert_rule.list",
    "notify.channels", "notify.rules", "notify.deliveries", "notify.status", "silence.list",
    "cluster.nodes_overview",
}
WRITES = {
    "node.register", "node.remove", "node.drain", "node.undrain", "alert.ack",
    "task.submit", "task.submit_many", "task.cancel", "placement.assign_optimal",
    "task.retry", "task.retry_many",
    "keys.join", "keys.accept", "keys.revoke", "keys.role", "keys.token",
    "users.add", "users.passwd", "users.remove", "tokens.create", "tokens.revoke",
    "ssh.execute", "ssh.broadcast", "ssh.trust", "ssh.pool.cleanup", "node.set_ssh",
    "schedule.add", "schedule.pause", "schedule.resume", "schedule.remove", "schedule.run",
    "queue.set",
    "backup.run", "backup.schedule",
    "node.set_thresholds", "alert_rule.add", "alert_rule.remove",
    "notify.channel.add", "notify.channel.remove", "notify.channel.test", "notify.rule.add",
    "notify.rule.remove", "silence.add", "silence.remove", "node.maintenance",
}
# least role per method (§10): admin for keys, users, tokens, SSH, removal and the audit
ADMIN_ONLY = {
    "node.remove", "keys.list", "keys.join", "keys.accept", "keys.revoke", "keys.role",
    "keys.token", "users.add", "users.passwd", "users.remove", "users.list", "tokens.create",
    "tokens.list", "tokens.revoke", "audit.list", "ssh.execute", "ssh.broadcast", "ssh.trust",
    "ssh.pool.cleanup", "ssh.audit", "node.set_ssh",
    "backup.run", "backup.schedule", "backup.status",
    "node.set_thresholds", "alert_rule.add", "alert_rule.remove",
    "notify.channel.add", "notify.channel.remove", "notify.channel.test", "notify.rule.add",
    "notify.rule.remove",
}
OPERATOR_WRITES = WRITES - ADMIN_ONLY          # tasks, drain, alerts, node registration
NODE_METHODS = {"node.register", "ping"}      # all a node key may call


def test_no_method_is_in_two_tables():
    """The broker merges the tables with {**a, **b}: a name in two would silently lose one."""
    names = [name for table in TABLES.values() for name in table]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_the_broker_dispatches_exactly_the_tables(tmp_path):
    from architect import config as config_mod
    from architect.broker.core import Broker
    cfg = config_mod.load(env={"ARCHITECT_DATA_DIR": str(tmp_path / "data")},
                          config_file=tmp_path / "none.json")
    broker = Broker(cfg, now=1000.0)
    try:
        assert broker.methods == ALL
    finally:
        broker.close()


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_entry_is_a_method_with_a_valid_role(name):
    entry = ALL[name]
    assert type(entry) is Method, (name, entry)
    assert callable(entry.fn), name
    # a method names the least *web* role; node access is the separate `node` flag
    assert entry.role in WEB_ROLES, (name, entry.role)
    assert isinstance(entry.writes, bool) and isinstance(entry.node, bool), name
    assert isinstance(name, str) and name == name.strip() and name


def test_the_table_is_pinned_reads_and_writes():
    assert READ_ONLY.isdisjoint(WRITES)
    assert set(ALL) == READ_ONLY | WRITES, (
        "classify the new method: add it to READ_ONLY or WRITES here",
        sorted(set(ALL) ^ (READ_ONLY | WRITES)))
    assert {n for n, m in ALL.items() if not m.writes} == READ_ONLY
    assert {n for n, m in ALL.items() if m.writes} == WRITES


def test_the_least_roles_are_pinned():
    assert {n for n, m in ALL.items() if m.role == ADMIN} == ADMIN_ONLY
    assert {n for n, m in ALL.items() if m.writes and m.role == OPERATOR} == OPERATOR_WRITES
    # a viewer writes nothing
    assert not any(m.writes and m.role == VIEWER for m in ALL.values())
    assert {n for n, m in ALL.items() if m.node} == NODE_METHODS


def test_every_read_method_is_open_to_viewers_except_admin_views():
    for name in READ_ONLY - ADMIN_ONLY:
        assert ALL[name].role == VIEWER, name


def _m(role, node=False):
    return Method(lambda b, p, n: None, role, False, node)


@pytest.mark.parametrize("caller,need,node_ok,expected", [
    # viewer / operator / admin by rank
    ("viewer", VIEWER, False, True), ("viewer", OPERATOR, False, False),
    ("viewer", ADMIN, False, False),
    ("operator", VIEWER, False, True), ("operator", OPERATOR, False, True),
    ("operator", ADMIN, False, False),
    ("admin", VIEWER, False, True), ("admin", OPERATOR, False, True),
    ("admin", ADMIN, False, True),
    # node: only what is marked node=True, whatever its role
    ("node", VIEWER, False, False), ("node", OPERATOR, False, False),
    ("node", ADMIN, False, False),
    ("node", VIEWER, True, True), ("node", OPERATOR, True, True),
    # node=True does not widen it for others: a viewer still may not call an operator method
    ("viewer", OPERATOR, True, False),
    # unknown roles get nothing
    ("", VIEWER, False, False), ("root", VIEWER, False, False), (None, VIEWER, True, False),
    ("Admin", VIEWER, False, False),
])
def test_allowed_matrix(caller, need, node_ok, expected):
    assert methods.allowed(caller, _m(need, node_ok)) is expected


def test_allowed_over_the_real_table():
    for name, entry in ALL.items():
        assert methods.allowed(ADMIN, entry), name
        assert methods.allowed(NODE, entry) == (name in NODE_METHODS), name
        assert methods.allowed(OPERATOR, entry) == (name not in ADMIN_ONLY), name
        assert methods.allowed(VIEWER, entry) == (name in READ_ONLY - ADMIN_ONLY), name


def test_roles_and_at_least():
    assert ROLES == (NODE, VIEWER, OPERATOR, ADMIN)
    assert WEB_ROLES == (VIEWER, OPERATOR, ADMIN)
    from architect.bus import security
    assert security.ROLES == ROLES   # the key store's roles are the broker's
    assert methods.at_least(ADMIN, OPERATOR) and methods.at_least(OPERATOR, OPERATOR)
    assert not methods.at_least(VIEWER, OPERATOR) and not methods.at_least(NODE, VIEWER)


def test_caller_label():
    assert methods.Caller("alpha", NODE, "alpha").label() == "alpha"
    assert methods.Caller("web:bob", VIEWER, "local").label() == "web:bob (via local)"
    assert methods.LOCAL.role == ADMIN


# --- audit.redact / target_of ----------------------------------------------------------------
def test_redact_removes_secrets_at_any_depth_and_any_case():
    params = {"name": "bob", "password": "hunter2-long", "Token": "arch_abc",
              "nested": {"secret": "s", "password_hash": "$argon2id$...", "keep": "ok"},
              "list": [{"password": "p1"}, {"token": "t2"}, "plain"]}
    out = audit.redact(params)
    text = json.dumps(out)
    for secret in ("hunter2-long", "arch_abc", '"s"', "$argon2id$", "p1", "t2"):
        assert secret not in text, (secret, out)
    assert out["password"] == out["Token"] == "[redacted]"
    assert out["nested"] == {"secret": "[redacted]", "password_hash": "[redacted]", "keep": "ok"}
    assert out["list"] == [{"password": "[redacted]"}, {"token": "[redacted]"}, "plain"]
    assert out["name"] == "bob"
    assert params["password"] == "hunter2-long"   # the caller's params are not changed


def test_redact_bounds_sizes():
    long = "x" * 10_000
    out = audit.redact({"command": long, "many": list(range(500)),
                        "wide": {f"k{i}": i for i in range(500)},
                        "deep": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}},
                        "raw": b"\x00" * 100, "obj": object(), "n": 1.5, "t": True, "z": None,
                        "k" * 1000: "long key"})
    assert len(out["command"]) < 600 and out["command"].startswith("x" * 500)
    assert "10000" in out["command"]                          # says how long it was
    assert len(out["many"]) == audit.MAX_ITEMS + 1 and "450 more" in out["many"][-1]
    assert len(out["wide"]) == audit.MAX_ITEMS + 1 and out["wide"]["…"] == "450 more"
    deep = json.dumps(out["deep"], ensure_ascii=False)
    assert deep.count("{") <= 5 and "…" in deep, deep
    assert out["raw"] == "<100 bytes>"
    assert isinstance(out["obj"], str) and len(out["obj"]) <= audit.MAX_VALUE
    assert (out["n"], out["t"], out["z"]) == (1.5, True, None)
    assert all(len(k) <= 64 for k in out)
    text = json.dumps(out)                                    # always JSON-safe
    assert len(text) < 20_000


def test_redact_keeps_an_empty_secret_visible_as_empty():
    # nothing to hide: an empty password shows as given (the row says none was sent)
    assert audit.redact({"password": "", "token": None}) == {"password": "", "token": None}


@pytest.mark.parametrize("params,target", [
    ({"node": "alpha", "name": "x"}, "alpha"),
    ({"name": "bob"}, "bob"),
    ({"id": 7}, "7"),
    ({"ids": [1, 2, 3]}, "1,2,3"),
    ({"node_id": 4}, "4"),
    ({"ids": list(range(20))}, "0,1,2,3,4,5,6,7,8,9…"),
    ({"id": True}, None),
    ({}, None),
    ({"node": "n" * 500}, "n" * 128),
])
def test_target_of(params, target):
    assert audit.target_of(params) == target


def test_audit_book_records_redacted_rows():
    book = audit.AuditBook()
    caller = methods.Caller("web:ann", ADMIN, "local", "127.0.0.1")
    book.record(5.0, caller, "users.add", {"name": "bob", "password": "pw-123456"}, "ok")
    book.record(6.0, caller, "node.remove", {"node": "n1"}, "forbidden", "x" * 2000)
    rows = book.take_dirty()
    assert [r["method"] for r in rows] == ["users.add", "node.remove"]
    assert rows[0]["params"]["password"] == "[redacted]" and rows[0]["target"] == "bob"
    assert rows[0]["who"] == "web:ann" and rows[0]["via"] == "local" and rows[0]["error"] is None
    assert rows[1]["outcome"] == "forbidden" and len(rows[1]["error"]) == 500
    assert book.take_dirty() == []
    book.put_back(rows)
    assert len(book.take_dirty()) == 2


# --- on_behalf and identities (pure: a stub broker) ---------------------------------------------
def test_only_an_admin_key_may_speak_for_a_web_user():
    from architect.broker.core import Broker
    effective = Broker._effective
    admin = methods.Caller("local", ADMIN, "local", "127.0.0.1")
    who = effective(admin, {"user": "ann", "role": "viewer", "addr": "10.0.0.9"})
    assert (who.name, who.role, who.via, who.addr) == ("web:ann", VIEWER, "local", "10.0.0.9")
    assert effective(admin, None) is admin
    assert effective(admin, {"user": "ann", "role": "admin", "addr": "x" * 500}).addr == "x" * 100
    for caller in (methods.Caller("alpha", NODE, "alpha"), methods.Caller("op", OPERATOR, "op"),
                   methods.Caller("v", VIEWER, "v")):
        with pytest.raises(ValueError):
            effective(caller, {"user": "ann", "role": "viewer"})
    for behalf in ({"user": "ann", "role": "node"}, {"user": "ann", "role": "root"},
                   {"user": "", "role": "admin"}, {"user": None, "role": "admin"},
                   {"user": "a" * 201, "role": "admin"}, {"role": "admin"}, {"user": "ann"}):
        with pytest.raises(ValueError):
            effective(admin, behalf)


class StubBroker:
    def __init__(self):
        from architect.broker.core import Counters
        self.counters = Counters()
        self.work_keys: dict = {}
        self.mismatches: list = []

        class Pool:
            by_id: dict = {}
        self.pool = Pool()

    def identity_mismatch(self, caller, claimed, what, now=None):
        self.mismatches.append((caller.name, claimed, what))


def _hello(node):
    return WorkerReady(worker_id="w", node=node, slots=1)


def test_heartbeats_only_under_the_keys_own_name():
    from architect.broker.identity import heartbeat_ok
    b = StubBroker()
    hb = Heartbeat(name="bravo", ts=1.0, metrics={})
    assert heartbeat_ok(b, hb, methods.Caller("bravo", NODE, "bravo"), 1.0)
    assert heartbeat_ok(b, hb, methods.Caller("local", ADMIN, "local"), 1.0)   # the master's agent
    assert not heartbeat_ok(b, hb, methods.Caller("alpha", NODE, "alpha"), 1.0)
    assert not heartbeat_ok(b, hb, methods.Caller("ops", OPERATOR, "ops"), 1.0)
    assert b.mismatches == [("alpha", "bravo", "heartbeat")]      # an operator key: no alert
    assert b.counters["heartbeats_rejected"] == 2


def test_a_worker_routing_id_is_bound_to_the_first_key():
    from architect.broker.identity import work_ok
    b = StubBroker()
    alpha, bravo = methods.Caller("alpha", NODE, "alpha"), methods.Caller("bravo", NODE, "bravo")
    assert work_ok(b, b"id-1", _hello("alpha"), alpha, 1.0)
    assert b.work_keys == {b"id-1": "alpha"}
    result = TaskResult(task_id=1, attempt=1, state="succeeded")
    assert work_ok(b, b"id-1", result, alpha, 1.0)
    # another key with that id, even for its own node, or a result: refused
    assert not work_ok(b, b"id-1", _hello("bravo"), bravo, 1.0)
    assert not work_ok(b, b"id-1", result, bravo, 1.0)
    # a node key's hello for another node, on a fresh id: refused, and the id is not bound
    assert not work_ok(b, b"id-2", _hello("alpha"), bravo, 1.0)
    assert b"id-2" not in b.work_keys
    # viewer and operator keys never work
    for role in (VIEWER, OPERATOR):
        assert not work_ok(b, b"id-3", _hello("x"), methods.Caller("k", role, "k"), 1.0)
    assert b"id-3" not in b.work_keys
    # the master's own key may run a worker for any node name
    assert work_ok(b, b"id-4", _hello("anything"), methods.Caller("local", ADMIN, "local"), 1.0)
    assert b.counters["work_rejected"] == 5
    assert [m[:2] for m in b.mismatches] == [("bravo", "a worker of alpha"),
                                             ("bravo", "a worker of alpha"), ("bravo", "alpha")]
