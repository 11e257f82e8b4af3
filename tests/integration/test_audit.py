"""The audit of control requests (ARCHITECTURE.md §10: "every state-changing request leaves
an `audit` row (who, from where, what, outcome) before its reply"), on a real `architect
server` with a CURVE-secured bus.

Every method the broker's tables mark `writes` is called once; right after each reply a NEW
read-only SQLite connection must find its row (the broker commits before it replies). Every
read method is called too, and leaves none. The rows are read back through `architect audit`
and GET /api/audit.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
import zmq

from architect.broker import accounts, handlers, keys, task_handlers, views
from architect.bus.errors import RemoteError
from architect.broker.ssh_handlers import SSH_METHODS
from architect.broker.schedule_handlers import SCHEDULE_METHODS
from architect.broker.queue_handlers import QUEUE_METHODS
from architect.broker.backup_handlers import BACKUP_METHODS
from architect.broker.alert_handlers import ALERT_METHODS
from architect.broker.notify_handlers import NOTIFY_METHODS
from tests.helpers import Cluster, db_rows, free_port_block, wait_for

pytestmark = pytest.mark.slow

ADMIN = ("admin", "audit-admin-pw")
CREDS = {"ARCHITECT_USER": ADMIN[0], "ARCHITECT_PASSWORD": ADMIN[1]}
TABLE = {**handlers.METHODS, **task_handlers.TASK_METHODS, **views.VIEW_METHODS,
         **keys.KEY_METHODS, **accounts.ACCOUNT_METHODS, **SSH_METHODS, **SCHEDULE_METHODS,
         **QUEUE_METHODS, **BACKUP_METHODS, **ALERT_METHODS, **NOTIFY_METHODS}
WRITES = sorted(n for n, m in TABLE.items() if m.writes)
READS = sorted(n for n, m in TABLE.items() if not m.writes)
NODE = "au-n1"
# answered later (the command runs on the SSH pool's threads, the backup on its own thread):
# audited when accepted, before the work runs (TESTING.md S4)
DEFERRED = {"ssh.execute", "ssh.broadcast", "ssh.trust", "backup.run"}


class Audited:
    def __init__(self, cluster: Cluster, base: str):
        self.cluster, self.base = cluster, base
        self.db_path = cluster.tmp / "data" / "architect.db"
        self.ctx: dict = {}

    def rows(self, sql: str, params=()) -> list[dict]:
        """Through a connection opened for this query only, read-only."""
        return db_rows(self.db_path, sql, params)

    def last_id(self) -> int:
        return self.rows("SELECT COALESCE(MAX(id), 0) AS n FROM audit")[0]["n"]


@pytest.fixture(scope="module")
def au(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("audit"), extra_env={"ARCHITECT_BUS_CURVE": "on"})
    try:
        base = cluster.start_server(env=CREDS)
        a = Audited(cluster, base)
        # an alert to acknowledge: a node registered with no heartbeat goes offline
        cluster.rpc("node.register", {"name": "au-alerting"})
        a.ctx["alert"] = wait_for(lambda: next((x["id"] for x in cluster.rpc("alert.list")
                                               if x["node_name"] == "au-alerting"), None), 20,
                                  what="an offline alert")
        a.ctx["closed_port"] = free_port_block(1)   # nothing listens: SSH fails at once
        # a task to retry: it expires while it waits (no worker here)
        a.ctx["expired"] = cluster.rpc("task.submit", {
            "task_type": "shell", "payload": {"command": "true"}, "expires_in": 0.1})["id"]
        wait_for(lambda: cluster.rpc("task.get", {"id": a.ctx["expired"]})["status"] ==
                 "expired", 10, what="a task expired")
        yield a
    finally:
        cluster.stop_all()


def write_calls(a: Audited) -> list[tuple[str, object]]:
    """Each write method once, in an order where each finds what it needs; params may be a
    function of what earlier replies returned (a.ctx)."""
    key_pub = zmq.curve_keypair()[0].decode()
    task = {"task_type": "shell", "payload": {"command": "echo audited"}}
    return [
        ("node.register", {"name": NODE, "hostname": "h1", "ip_address": "127.0.0.1"}),
        ("node.set_ssh", lambda: {"node": NODE, "ssh": {"user": "nobody",
                                                        "port": a.ctx["closed_port"]}}),
        ("node.drain", {"node": NODE}),
        ("node.undrain", {"node": NODE}),
        ("alert.ack", lambda: {"id": a.ctx["alert"], "by": "audit-test"}),
        ("task.submit", task),
        ("task.submit_many", {"tasks": [task, task]}),
        ("task.cancel", lambda: {"id": a.ctx["task.submit"]["id"]}),
        ("task.retry", lambda: {"id": a.ctx["expired"]}),
        ("task.retry_many", {"since": 3600, "dry_run": True}),
        ("schedule.add", {**task, "name": "au-sched", "every": 3600}),
        ("schedule.pause", {"name": "au-sched"}),
        ("schedule.resume", {"name": "au-sched"}),
        ("schedule.run", {"name": "au-sched"}),
        ("schedule.remove", {"name": "au-sched"}),
        ("queue.set", {"name": "au-queue", "concurrency": 3}),
        ("placement.assign_optimal", {**task, "requirements": []}),
        ("keys.join", {"name": "au-key", "public_key": key_pub}),
        ("keys.accept", {"name": "au-key"}),
        ("keys.role", {"name": "au-key", "role": "viewer"}),
        ("keys.revoke", {"name": "au-key"}),
        ("keys.token", {"uses": 2, "ttl": 600}),
        ("users.add", {"name": "au-user", "role": "viewer", "password": "au-password-1"}),
        ("users.passwd", {"name": "au-user", "password": "au-password-2", "role": "operator"}),
        ("users.remove", {"name": "au-user"}),
        ("tokens.create", {"role": "viewer", "name": "au-token"}),
        ("tokens.revoke", lambda: {"id": a.ctx["tokens.create"]["id"]}),
        ("ssh.execute", {"node": NODE, "command": "true", "timeout": 3}),
        ("ssh.broadcast", {"command": "true", "nodes": [NODE], "timeout": 3}),
        ("ssh.trust", {"node": NODE}),
        ("ssh.pool.cleanup", {}),
        ("node.set_thresholds", {"node": NODE, "thresholds": {"cpu": {"warning": 70,
                                                                      "critical": 90}}}),
        ("alert_rule.add", {"name": "au-rule", "expr": "cpu_percent > 95% for 5m",
                            "level": "warning", "node": "au-*"}),
        ("alert_rule.remove", {"name": "au-rule"}),
        # a webhook whose URL and header carry secrets (nothing listens on port 9)
        ("notify.channel.add", {"name": "au-hook", "kind": "webhook", "timeout": 1,
                                "url": f"http://127.0.0.1:9/hook/{WEBHOOK_SECRET}",
                                "headers": {"Authorization": f"Bearer {HEADER_SECRET}"}}),
        ("notify.channel.test", {"name": "au-hook"}),
        ("notify.rule.add", {"name": "au-notify", "channels": ["au-hook"],
                             "min_level": "critical", "node": "au-*"}),
        ("notify.rule.remove", {"name": "au-notify"}),
        ("notify.channel.remove", {"name": "au-hook"}),
        ("silence.add", {"node": NODE, "duration": "1h", "comment": "audit test"}),
        ("silence.remove", lambda: {"id": a.ctx["silence.add"]["id"]}),
        ("node.maintenance", {"node": NODE, "on": True, "duration": "1h",
                              "comment": "audit test"}),
        ("backup.run", {}),
        ("backup.schedule", {"every": "1d", "keep_days": 30}),
        ("node.remove", {"node": NODE}),
    ]


WEBHOOK_SECRET, HEADER_SECRET = "au-webhook-path-secret", "au-header-secret"
SECRETS = ("au-password-1", "au-password-2", WEBHOOK_SECRET, HEADER_SECRET)


def test_every_write_method_leaves_its_row_on_disk_before_the_reply(au):
    calls = write_calls(au)
    assert sorted(m for m, _ in calls) == WRITES, "a write method is not exercised here"
    seen = {}
    for method, params in calls:
        params = params() if callable(params) else params
        before = au.last_id()
        try:
            result, outcome = au.cluster.rpc(method, params, timeout=20), "ok"
            au.ctx[method] = result
        except RemoteError as exc:
            result, outcome = None, exc.code
        # the reply is here: the row must be too, for a connection opened only now
        new = au.rows("SELECT * FROM audit WHERE id > ? ORDER BY id", (before,))
        assert [r["method"] for r in new] == [method], (method, new)
        row = new[0]
        seen[method] = row
        assert (row["who"], row["role"], row["via"]) == ("local", "admin", "local"), row
        assert row["addr"] == "127.0.0.1", row
        if outcome == "ok" and method in DEFERRED:
            outcome = "accepted"
        assert row["outcome"] == outcome, (method, row, result)
        assert row["ts"] and abs(row["ts"] - time.time()) < 60
        logged = json.loads(row["params"])
        assert isinstance(logged, dict)
        assert not any(s in row["params"] for s in SECRETS), row
        if "password" in params:
            assert logged["password"] == "[redacted]", row
    # most of them did what they were asked (the SSH ones may fail: nothing listens there)
    ok = {m for m, r in seen.items() if r["outcome"] in ("ok", "accepted")}
    assert set(WRITES) - {"ssh.trust", "placement.assign_optimal"} <= ok, \
        {m: (r["outcome"], r["error"]) for m, r in seen.items() if m not in ok}
    assert seen["node.drain"]["target"] == NODE and seen["users.add"]["target"] == "au-user"
    assert seen["task.cancel"]["target"] == str(au.ctx["task.submit"]["id"])
    # and what they did is there as well
    assert not au.rows("SELECT name FROM users WHERE name = 'au-user'")
    assert au.rows("SELECT revoked_at FROM tokens WHERE id = ?",
                   (au.ctx["tokens.create"]["id"],))[0]["revoked_at"]
    assert not au.rows("SELECT id FROM nodes WHERE name = ?", (NODE,))
    # a channel's secrets stay out of its audit row (notify_handlers._scrub), and the
    # backup asked for is on disk
    hook = json.loads(seen["notify.channel.add"]["params"])
    assert hook["url"] == "http://127.0.0.1:9/***" and hook["headers"] == {
        "Authorization": "***"}, hook
    assert seen["notify.channel.add"]["target"] == "au-hook"
    backup = au.ctx["backup.run"]
    assert backup["bytes"] > 0 and au.cluster.tmp in Path(backup["backup"]).parents, backup
    assert Path(backup["backup"]).is_file()


def read_calls(a: Audited) -> list[tuple[str, dict]]:
    task_id = a.cluster.rpc("task.submit", {"task_type": "shell",
                                            "payload": {"command": "echo r"}})["id"]
    a.cluster.rpc("schedule.add", {"task_type": "shell", "payload": {"command": "echo r"},
                                   "name": "au-read", "every": 3600})
    return [
        ("task.graph", {"id": task_id}), ("schedule.list", {}),
        ("schedule.get", {"name": "au-read"}), ("queue.list", {}),
        ("node.list", {}), ("node.get", {"node": "au-alerting"}), ("health.summary", {}),
        ("alert.list", {"all": True}), ("cluster.stats", {}), ("ping", {}),
        ("task.get", {"id": task_id}), ("task.list", {}), ("task.wait", {"id": task_id,
                                                                          "timeout": 0.1}),
        ("task.output", {"id": task_id}), ("placement.recommend", {"count": 3}),
        ("placement.distribution", {}), ("worker.list", {}),
        ("node.metrics", {"node": "au-alerting"}), ("task.page", {}), ("task.timeline", {}),
        ("cluster.topology", {}), ("cluster.flow", {}), ("cluster.summary", {}),
        ("keys.list", {}), ("users.list", {}), ("tokens.list", {}), ("audit.list", {}),
        ("ssh.pool.stats", {}), ("ssh.audit", {}),
        ("cluster.nodes_overview", {}), ("backup.status", {}),
        ("node.thresholds", {"node": "au-alerting"}), ("alert_rule.list", {}),
        ("notify.channels", {}), ("notify.rules", {}), ("notify.deliveries", {}),
        ("notify.status", {}), ("silence.list", {"all": True}),
    ]


def test_reads_leave_no_row(au):
    calls = read_calls(au)
    assert sorted(m for m, _ in calls) == READS, "a read method is not exercised here"
    before = au.last_id()
    for method, params in calls:
        au.cluster.rpc(method, params, timeout=10)   # each answers
    assert au.last_id() == before, au.rows("SELECT method FROM audit WHERE id > ?", (before,))
    # reads through the web leave none either
    for path in ("/api/nodes", "/api/tasks", "/api/audit", "/api/users", "/api/keys"):
        assert requests.get(au.base + path, auth=ADMIN, timeout=10).status_code == 200
    assert au.last_id() == before


def test_a_web_write_is_audited_as_its_user_before_the_http_reply(au):
    before = au.last_id()
    created = requests.post(au.base + "/api/tasks", auth=ADMIN, timeout=10,
                            json={"task_type": "shell", "payload": {"command": "echo web-audit"}})
    assert created.status_code == 201, created.text
    rows = au.rows("SELECT * FROM audit WHERE id > ?", (before,))
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["who"], row["role"], row["via"], row["method"], row["outcome"]) == \
        ("web:admin", "admin", "local", "task.submit", "ok"), row
    assert row["addr"] == "127.0.0.1" and "web-audit" in row["params"]
    # a refused one too: a viewer
    au.cluster.cli("users", "add", "au-viewer", "--role", "viewer", "--password", "au-viewer-pw")
    before = au.last_id()
    refused = requests.get(au.base + "/api/audit", auth=("au-viewer", "au-viewer-pw"), timeout=10)
    assert refused.status_code == 403
    rows = au.rows("SELECT who, role, method, outcome FROM audit WHERE id > ?", (before,))
    assert rows == [{"who": "web:au-viewer", "role": "viewer", "method": "audit.list",
                     "outcome": "forbidden"}]


def test_the_cli_and_the_api_read_the_audit(au):
    submitted = au.cluster.rpc("task.submit", {"task_type": "shell",
                                               "payload": {"command": "echo cli-audit"}})
    rows = au.cluster.cli_json("audit", "--method", "task.submit")
    assert rows and all(r["method"] == "task.submit" for r in rows)
    assert any("cli-audit" in json.dumps(r["params"]) for r in rows)
    assert rows == sorted(rows, key=lambda r: -r["id"])            # newest first
    assert set(rows[0]) >= {"id", "ts", "who", "role", "via", "addr", "method", "target",
                            "params", "outcome", "error"}
    assert au.cluster.cli_json("audit", "--since", "1h", "--who", "local", "--limit", "1")[0][
        "who"] == "local"
    assert au.cluster.cli_json("audit", "--since", "2999-01-01") == []
    assert au.cluster.cli_json("audit", "--who", "nobody-at-all") == []
    text = au.cluster.cli("audit", "--method", "task.submit", "--limit", "3").stdout
    assert "task.submit" in text and "local" in text
    # the REST view: by user and method
    requests.post(au.base + "/api/tasks", auth=ADMIN, timeout=10,
                  json={"task_type": "shell", "payload": {"command": "echo api-audit"}})
    listed = requests.get(au.base + "/api/audit", auth=ADMIN, timeout=10,
                          params={"who": "web:admin", "method": "task.submit"}).json()
    assert listed["count"] == len(listed["audit"]) >= 1
    assert all(r["who"] == "web:admin" and r["method"] == "task.submit" for r in listed["audit"])
    assert any("api-audit" in json.dumps(r["params"]) for r in listed["audit"])
    one = requests.get(au.base + "/api/audit", auth=ADMIN, timeout=10, params={"limit": 1}).json()
    assert one["count"] == 1
    assert requests.get(au.base + "/api/audit", auth=ADMIN, timeout=10,
                        params={"limit": 0}).status_code == 400
    assert submitted["id"]
