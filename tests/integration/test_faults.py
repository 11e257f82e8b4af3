"""F5: the database locked by another process; F6: online backup while tasks run, restore."""

import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.helpers import free_port_block, wait_for

pytestmark = pytest.mark.slow


def start_server(cluster):
    port = free_port_block(1)
    cluster.spawn("server", "server", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(f"{url}/healthz", timeout=1).status_code == 200, 30,
             what="server up")
    return url


def test_database_locked_for_10s_gives_503_then_recovers(cluster):
    url = start_server(cluster)
    pid = cluster.rpc("cluster.stats")["pid"]
    requests.post(f"{url}/api/nodes", json={"name": "before", "ip_address": "127.0.0.1"})
    db = cluster.tmp / "data" / "architect.db"
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        conn = sqlite3.connect(db, timeout=5, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")  # the write lock: the broker cannot commit
        locked.set()
        release.wait(15)
        conn.execute("ROLLBACK")
        conn.close()
    holder = threading.Thread(target=hold_lock)
    holder.start()
    locked.wait(5)
    statuses, reads = [], []
    try:
        deadline = time.monotonic() + 10
        i = 0
        while time.monotonic() < deadline:
            r = requests.post(f"{url}/api/nodes", json={"name": f"during-{i}",
                                                        "ip_address": "127.0.0.1"}, timeout=15)
            statuses.append(r.status_code)
            assert r.status_code in (503,), (r.status_code, r.text)
            body = r.json()
            assert set(body) == {"error"} and body["error"]["code"] in (
                "store_unavailable", "broker_unavailable") and body["error"]["message"]
            g = requests.get(f"{url}/api/nodes", timeout=15)
            reads.append(g.status_code)
            i += 1
            time.sleep(0.5)
    finally:
        release.set()
        holder.join()
    assert statuses and all(s == 503 for s in statuses)
    assert reads and all(s in (200, 503) for s in reads) and 200 in reads
    # resumes by itself, same process
    r = wait_for(lambda: (r := requests.post(f"{url}/api/nodes", json={
        "name": "after", "ip_address": "127.0.0.1"}, timeout=10)).status_code in (200, 201) and r,
        20, what="writes accepted again")
    assert cluster.rpc("cluster.stats")["pid"] == pid
    names = {n["name"] for n in requests.get(f"{url}/api/nodes").json()["nodes"]}
    assert {"before", "after"} <= names
    assert "Traceback" not in cluster.log("server")


def test_online_backup_while_tasks_run_and_restore(cluster, tmp_path):
    cluster.start_broker()
    cluster.start_worker("b1", "-c", "4")
    cluster.wait_workers(1)
    ids = [s["id"] for s in cluster.rpc("task.submit_many", {"tasks": [
        {"task_type": "shell", "payload": {"command": f"sleep 0.0{i % 10}; echo {i}"}}
        for i in range(300)]})]
    out = tmp_path / "backup.db"
    result = cluster.cli("backup", str(out), "--json")
    assert '"integrity": "ok"' in result.stdout
    conn = sqlite3.connect(out)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    copied = conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
    conn.close()
    assert copied == 300  # every accepted task is in the copy
    cluster.rpc("task.wait", {"ids": ids, "timeout": 60}, timeout=70)
    # restore refuses while a broker runs
    refused = cluster.cli("restore", str(out), check=False)
    assert refused.returncode == 1 and "stop it first" in refused.stderr
    cluster.stop_all()
    done = cluster.cli("restore", str(out))
    assert "restored" in done.stdout and "before-restore" in done.stdout
    cluster.start_broker()
    # the restored state: the backup's tasks are there (unfinished ones resume)
    tasks = cluster.rpc("task.list", {"limit": 1000})
    assert len(tasks) == 300
