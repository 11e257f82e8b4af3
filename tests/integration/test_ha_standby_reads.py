"""A standby with no active master to forward to answers reads from the database (marked
X-Architect-Source: database) and refuses writes with 503 no_leader; once it leads, it
answers as the broker again.

To hold the failover open for as long as the test needs, the test itself holds the lease's
advisory lock on a plain connection (one the standby does not cut off), as a master that
hangs without its session ending would."""

from __future__ import annotations

import psycopg
import pytest
import requests

from architect.broker.lease import LEASE_LOCK
from tests.ha import Masters
from tests.helpers import wait_for

pytestmark = pytest.mark.slow


def test_reads_from_the_database_while_nobody_leads(pg_server, tmp_path):
    url = pg_server.create_database()
    ha = Masters(tmp_path, url, count=2)
    blocker = None
    try:
        ha.start_master(0)
        ha.wait_active(20)
        ha.start_node("n1")
        ha.wait_workers(1)
        task = ha.api("/api/tasks", "POST", i=0, json={
            "task_type": "shell", "payload": {"command": "echo from-the-db"}}).json()
        wait_for(lambda: ha.api(f"/api/tasks/{task['id']}", i=0).json()["status"] == "succeeded",
                 20, what="the task done")
        live = ha.api("/api/nodes", i=0).json()["nodes"]
        ha.nodes.stop_all()                 # nothing changes from here on
        ha.kill(0)                          # the leader is gone ...
        blocker = psycopg.connect(url, autocommit=True)
        assert blocker.execute("SELECT pg_try_advisory_lock(%s)", (LEASE_LOCK,)).fetchone()[0]
        ha.start_master(1)                  # ... and this one cannot take over

        def from_db():
            r = requests.get(ha.urls[1] + "/api/nodes", timeout=10)
            return r.status_code == 200 and r.headers.get("X-Architect-Source") == "database" \
                and r
        nodes = wait_for(from_db, 20, what="nodes read from the database").json()["nodes"]
        assert [(n["name"], n["id"]) for n in nodes] == [(n["name"], n["id"]) for n in live]
        got = requests.get(f"{ha.urls[1]}/api/tasks/{task['id']}", timeout=10)
        assert got.status_code == 200 and got.headers["X-Architect-Source"] == "database"
        assert got.json()["status"] == "succeeded" and "from-the-db" in \
            got.json()["result"]["stdout"]
        listed = requests.get(f"{ha.urls[1]}/api/tasks?status=succeeded", timeout=10).json()
        assert task["id"] in [t["id"] for t in listed["tasks"]]
        health = requests.get(ha.urls[1] + "/healthz", timeout=10)
        assert health.status_code == 503 and health.json()["role"] == "standby"
        refused = requests.post(ha.urls[1] + "/api/tasks", timeout=10, json={
            "task_type": "shell", "payload": {"command": "true"}})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "no_leader"
        assert requests.get(ha.urls[1] + "/api/bus", timeout=10).status_code == 503
        with psycopg.connect(url, autocommit=True) as conn:   # the refused write left nothing
            assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 1

        blocker.close()                     # the lock is free: the standby takes over
        blocker = None
        assert ha.wait_active(15) == 1
        r = ha.api("/api/nodes", i=1)
        assert r.status_code == 200 and "X-Architect-Source" not in r.headers
        assert "Traceback" not in ha.log(1)
    finally:
        if blocker is not None:
            blocker.close()
        ha.stop_all()


def test_a_standby_forwards_the_callers_role_not_its_own(pg_server, tmp_path):
    """A viewer's token sent to the standby is a viewer at the active broker: its write is
    refused and nothing changes, while an operator's goes through."""
    url = pg_server.create_database()
    ha = Masters(tmp_path, url, count=2)
    try:
        active = ha.start()
        standby = 1 - active
        tokens = {role: ha.api("/api/tokens", "POST", i=active, json={
            "role": role, "name": f"ha-{role}"}).json()["token"] for role in ("viewer", "operator")}
        task = {"task_type": "shell", "payload": {"command": "echo through-the-standby"}}
        for body in (task, [task, task]):
            refused = requests.post(ha.urls[standby] + "/api/tasks", json=body, timeout=10,
                                    headers={"Authorization": f"Bearer {tokens['viewer']}"})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 0
            audit = conn.execute("SELECT who, role, outcome FROM audit WHERE method LIKE "
                                 "'task.submit%' ORDER BY id").fetchall()
        assert audit and all(r[1] == "viewer" and r[2] == "forbidden" for r in audit), audit
        ok = requests.post(ha.urls[standby] + "/api/tasks", json=task, timeout=10,
                           headers={"Authorization": f"Bearer {tokens['operator']}"})
        assert ok.status_code == 201, ok.text
    finally:
        ha.stop_all()
