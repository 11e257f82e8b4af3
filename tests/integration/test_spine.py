"""Tier 3: a real broker and real agent processes on loopback, driven through the CLI."""

import json
import time

import pytest

from tests.helpers import store_rows, wait_for

pytestmark = pytest.mark.slow


def statuses(cluster):
    return {n["name"]: n["status"] for n in cluster.cli_json("nodes")}


def active_alerts(cluster, node):
    return [a for a in cluster.cli_json("alerts") if a["node_name"] == node]


def test_three_agents_healthy_then_offline_then_back(cluster):
    cluster.start_broker()
    for name in ("n1", "n2", "n3"):
        cluster.start_agent(name)
    wait_for(lambda: statuses(cluster) == {"n1": "healthy", "n2": "healthy", "n3": "healthy"},
             15, what="three healthy nodes in `architect nodes --json`")

    killed_at = time.monotonic()
    cluster.kill("agent-n2")
    limit = cluster.timeout + 2 * cluster.interval
    wait_for(lambda: statuses(cluster)["n2"] == "offline" and active_alerts(cluster, "n2"),
             limit + 3, what="n2 offline with an open alert")
    # the broker checks once a second (a quarter of the timeout here), so allow that on top
    assert time.monotonic() - killed_at <= limit + 1.5, "offline detected too late"
    alert = active_alerts(cluster, "n2")[0]
    assert alert["level"] == "offline" and alert["status"] == "active"
    assert statuses(cluster)["n1"] == "healthy" and statuses(cluster)["n3"] == "healthy"

    cluster.start_agent("n2")
    wait_for(lambda: statuses(cluster)["n2"] == "healthy", 10, what="n2 healthy again")
    wait_for(lambda: not active_alerts(cluster, "n2"), 5, what="n2's alert resolved")
    history = [a for a in cluster.cli_json("alerts", "--all") if a["id"] == alert["id"]]
    assert history[0]["status"] == "resolved" and history[0]["resolved_at"]


def test_metric_thresholds_drive_health_and_alerts(cluster, tmp_path):
    cluster.start_broker()
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"cpu_percent": 10, "memory_percent": 10, "disk_percent": 10,
                                   "load_1": 0.1}))
    cluster.start_agent("hot", "--metrics-file", str(metrics))
    wait_for(lambda: cluster.node("hot") and cluster.node("hot")["status"] == "healthy", 10,
             what="healthy")
    metrics.write_text(json.dumps({"cpu_percent": 96, "memory_percent": 10, "disk_percent": 10,
                                   "load_1": 0.1}))
    node = wait_for(lambda: (n := cluster.node("hot")) and n["status"] == "critical" and n, 5,
                    what="critical")
    assert any("CPU" in r for r in node["reasons"])
    alerts = active_alerts(cluster, "hot")
    assert alerts[0]["level"] == "critical"
    # acknowledge through the CLI
    out = cluster.cli("alerts", "ack", str(alerts[0]["id"]), "--by", "tester").stdout
    assert "acknowledged" in out
    assert active_alerts(cluster, "hot")[0]["acknowledged_by"] == "tester"
    metrics.write_text(json.dumps({"cpu_percent": 85, "memory_percent": 10, "disk_percent": 10,
                                   "load_1": 0.1}))
    wait_for(lambda: cluster.node("hot")["status"] == "warning", 5, what="warning")
    levels = [(a["level"], a["status"]) for a in cluster.cli_json("alerts", "--all", "--node", "hot")]
    assert levels == [("warning", "active"), ("critical", "resolved")]


def test_broker_kill9_restart_keeps_state_and_agents_resume(cluster):
    cluster.start_broker()
    cluster.start_agent("a1")
    cluster.start_agent("a2")
    wait_for(lambda: statuses(cluster) == {"a1": "healthy", "a2": "healthy"}, 15,
             what="two healthy nodes")
    cluster.kill("agent-a2")
    wait_for(lambda: active_alerts(cluster, "a2"), cluster.timeout + 4, what="a2 offline alert")
    cluster.rpc("node.drain", {"node": "a1"})
    # what the restart must find is on disk before the crash (no fixed wait for a flush)
    db = cluster.tmp / "data" / "architect.db"

    def on_disk():
        nodes = {r["name"]: (r["drained"], r["status"])
                 for r in store_rows(cluster.env, db, "SELECT name, drained, status FROM nodes")}
        offline = store_rows(cluster.env, db, "SELECT id FROM alerts WHERE node_name = 'a2' AND "
                                 "status = 'active' AND level = 'offline'")
        return nodes.get("a1", (0,))[0] == 1 and nodes.get("a2", (0, ""))[1] == "offline" \
            and offline
    wait_for(on_disk, 10, what="a1 drained and a2 offline (with its alert) in the database")
    old_pid = cluster.rpc("cluster.stats")["pid"]

    cluster.kill("broker")
    cluster._rpc.close()
    cluster._rpc = None
    cluster.start_broker()
    stats = cluster.rpc("cluster.stats")
    assert stats["pid"] != old_pid
    nodes = {n["name"]: n for n in cluster.cli_json("nodes")}
    assert set(nodes) == {"a1", "a2"}, "nodes lost in the restart"
    assert nodes["a1"]["drained"] is True
    alerts = active_alerts(cluster, "a2")
    assert alerts and alerts[0]["level"] == "offline", "alert history lost in the restart"
    # the surviving agent was not restarted: its heartbeats must arrive at the new broker
    wait_for(lambda: cluster.rpc("cluster.stats")["counters"]["heartbeats"] >= 3, 10,
             what="heartbeats from the old agent at the new broker")
    assert cluster.node("a1")["status"] == "healthy"
    assert cluster.node("a1")["heartbeat_age"] < 2


def test_cli_node_commands_and_errors(cluster):
    cluster.start_broker()
    cluster.start_agent("w1", "--capability", "gpu", real_metrics=True)  # psutil for real
    wait_for(lambda: (cluster.node("w1") or {}).get("metrics"), 10, what="w1's first heartbeat")
    shown = cluster.cli_json("nodes", "show", "w1")
    assert "gpu" in shown["capabilities"] and "python" in shown["capabilities"]
    assert shown["metrics"]["memory_percent"] > 0 and shown["metrics"]["uptime"] > 0
    assert cluster.cli_json("nodes", "show", str(shown["id"]))["name"] == "w1"
    text = cluster.cli("nodes").stdout
    assert "w1" in text and "STATUS" in text
    assert cluster.cli_json("nodes", "drain", "w1")["drained"] is True
    assert cluster.cli_json("nodes", "undrain", "w1")["drained"] is False
    missing = cluster.cli("nodes", "show", "nope", check=False)
    assert missing.returncode == 1 and "no node 'nope'" in missing.stderr
    stats = cluster.cli_json("cluster", "stats")
    assert stats["nodes"]["total"] == 1
    health = cluster.cli_json("nodes", "health")
    assert health["total"] == 1 and health["thresholds"]["cpu"] == {"warning": 80.0, "critical": 95.0}
    cluster.kill("agent-w1")
    assert cluster.cli_json("nodes", "remove", "w1")["removed"] == "w1"
    assert cluster.cli_json("nodes") == []


def test_invalid_config_is_one_line_error(cluster):
    result = cluster.cli("nodes", check=False, env={"ARCHITECT_CPU_WARNING": "abc"})
    assert result.returncode != 0
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert "cpu_warning" in lines[0] and "ARCHITECT_CPU_WARNING" in lines[0]
    (cluster.tmp / "config.json").write_text("{not json")
    result = cluster.cli("nodes", check=False)
    assert result.returncode != 0 and "config.json" in result.stderr


def test_cli_without_broker_says_so(cluster):
    result = cluster.cli("nodes", check=False, env={"ARCHITECT_REQUEST_TIMEOUT": "0.5"})
    assert result.returncode == 1
    assert "no reply from the broker" in result.stderr and "Traceback" not in result.stderr


def test_agent_daemon_status_stop(cluster):
    cluster.start_broker()
    started = cluster.cli("agent", "--name", "d1", "--daemon")
    assert "background" in started.stdout
    wait_for(lambda: cluster.node("d1"), 10, what="daemon agent registered")
    status = cluster.cli("agent", "--status")
    assert "running" in status.stdout
    stopped = cluster.cli("agent", "--stop")
    assert "stopped" in stopped.stdout
    assert cluster.cli("agent", "--status", check=False).returncode == 1
    wait_for(lambda: cluster.node("d1")["status"] == "offline", cluster.timeout + 4,
             what="stopped daemon goes offline")
