"""Walk the cluster setup guide (../shared/seed/CLUSTER_SETUP.md) as a user would: deploy.sh,
the guide's curl commands, the node agent and task worker scripts, deploy.sh stop.

Deviation, on purpose: the guide registers worker-1 at 192.168.1.100; here it is 127.0.0.1,
because tests never contact addresses outside this machine (the SSH calls would)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.helpers import free_port_block, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# the guide runs `python3`: whatever is on PATH (the scripts re-run themselves with .venv)
PY3 = shutil.which("python3") or sys.executable


def curl(*args: str) -> dict:
    out = subprocess.run(["curl", "-s", "-S", "--max-time", "30", *args], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def seed_env(tmp_path):
    if not shutil.which("curl"):
        pytest.fail("this test needs curl (apt-get install curl)")
    base = free_port_block(5)
    env = dict(os.environ, ARCHITECT_DATA_DIR=str(tmp_path / "data"),
               ARCHITECT_STATE_DIR=str(tmp_path / "state"), ARCHITECT_BUS_PORT=str(base),
               ARCHITECT_PORT=str(base + 4), ARCHITECT_CONFIG=str(tmp_path / "config.json"),
               ARCHITECT_HEARTBEAT_INTERVAL="0.5")
    env.pop("ARCHITECT_DASHBOARD_URL", None)
    yield env, f"http://127.0.0.1:{base + 4}"
    subprocess.run(["./deploy.sh", "stop"], cwd=ROOT, env=env, capture_output=True, timeout=60)
    for script in ("distributed/node_agent.py", "workers/task_worker.py"):
        subprocess.run([PY3, script, "--stop"], cwd=ROOT, env=env, capture_output=True,
                       timeout=60)


def test_walk_the_setup_guide(seed_env, tmp_path):
    env, url = seed_env
    # Step 2: start the dashboard as a daemon
    started = subprocess.run(["./deploy.sh", "--daemon"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    wait_for(lambda: requests.get(f"{url}/healthz", timeout=2).status_code == 200, 30,
             what="dashboard up")
    assert subprocess.run(["./deploy.sh", "status"], cwd=ROOT, env=env,
                          capture_output=True).returncode == 0

    # Step 3: the worker's config file, exactly as the guide writes it
    (tmp_path / "config.json").write_text(json.dumps({
        "dashboard_url": url, "node_name": "worker-1", "capabilities": ["python", "docker", "git"]}))
    # Step 4 and 5: node agent and task worker, as daemons, with status
    agent = subprocess.run([PY3, "distributed/node_agent.py", "--dashboard", url,
                            "--daemon"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert agent.returncode == 0, agent.stderr
    worker = subprocess.run([PY3, "workers/task_worker.py", "--daemon"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert worker.returncode == 0, worker.stderr
    for script in ("distributed/node_agent.py", "workers/task_worker.py"):
        status = subprocess.run([PY3, script, "--status"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "running" in status.stdout

    # Node registration (manual), as the guide's curl (with a loopback address)
    node = curl("-X", "POST", f"{url}/api/nodes", "-H", "Content-Type: application/json", "-d",
                json.dumps({"name": "worker-1", "hostname": "worker1.local",
                            "ip_address": "127.0.0.1", "capabilities": ["python", "docker"]}))
    assert node["name"] == "worker-1"
    nodes = wait_for(lambda: (n := curl(f"{url}/api/nodes")) and len(n["nodes"]) >= 2 and n, 20,
                     what="local node and worker-1 listed")
    assert {"worker-1"} <= {n["name"] for n in nodes["nodes"]}
    health = curl(f"{url}/api/nodes/health")
    assert health["total"] == nodes["count"] and "healthy" in health["counts"]
    assert "alerts" in curl(f"{url}/api/nodes/alerts")
    recs = curl(f"{url}/api/nodes/recommend?count=3")["recommendations"]
    assert recs and all("breakdown" in r and "score" in r for r in recs)
    assert "nodes" in curl(f"{url}/api/nodes/distribution")
    best = curl("-X", "POST", f"{url}/api/tasks/assign-optimal", "-H",
                "Content-Type: application/json", "-d",
                json.dumps({"task_type": "shell", "requirements": ["python", "docker"]}))
    assert best["node"] in {n["name"] for n in nodes["nodes"]} and best["breakdown"]["total"] > 0
    topo = curl(f"{url}/api/cluster/topology")
    assert {"master", "worker-1"} <= {n["id"] for n in topo["nodes"]} and topo["edges"]
    assert "links" in curl(f"{url}/api/cluster/flow")
    assert curl(f"{url}/api/cluster/stats")["nodes"]["total"] >= 2
    assert "nodes" in curl(f"{url}/api/stats")
    assert "totals" in curl(f"{url}/api/ssh/pool/stats")
    assert "closed" in curl("-X", "POST", f"{url}/api/ssh/pool/cleanup")
    executed = curl("-X", "POST", f"{url}/api/ssh/execute", "-H", "Content-Type: application/json",
                    "-d", json.dumps({"node_id": 1, "command": "uptime"}))
    assert set(executed) >= {"exit_code", "stdout", "stderr", "error"}
    broadcast = curl("-X", "POST", f"{url}/api/ssh/broadcast", "-H",
                     "Content-Type: application/json", "-d", json.dumps({"command": "df -h"}))
    assert broadcast["count"] == len(broadcast["results"]) >= 2

    # a shell task from curl runs on the worker started with workers/task_worker.py
    wait_for(lambda: any(w["node"] == "worker-1" for w in curl(f"{url}/api/workers")["workers"]),
             20, what="task_worker.py connected")
    task = curl("-X", "POST", f"{url}/api/tasks", "-H", "Content-Type: application/json", "-d",
                json.dumps({"task_type": "shell", "payload": {"command": "echo from-seed; uname"},
                            "node": "worker-1"}))
    assert task["status"] == "queued"
    done = wait_for(lambda: (t := curl(f"{url}/api/tasks/{task['id']}")) and t["final"] and t, 30,
                    what="task finished")
    assert done["status"] == "succeeded" and done["assigned_node"] == "worker-1"
    assert done["result"]["stdout"].startswith("from-seed\n") and done["result"]["exit_code"] == 0

    # stop the node side, then the dashboard
    for script in ("distributed/node_agent.py", "workers/task_worker.py"):
        assert subprocess.run([PY3, script, "--stop"], cwd=ROOT, env=env,
                              capture_output=True, timeout=60).returncode == 0
    stopped = subprocess.run(["./deploy.sh", "stop"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    def refused() -> bool:
        try:
            requests.get(f"{url}/healthz", timeout=2)
        except requests.ConnectionError:
            return True
        return False
    wait_for(refused, 10, what="the dashboard to refuse connections after deploy.sh stop")
    assert subprocess.run(["./deploy.sh", "status"], cwd=ROOT, env=env,
                          capture_output=True).returncode == 1


def test_app_py_as_in_the_systemd_unit(tmp_path):
    """python3 app.py --host --port (here on loopback) serves the dashboard and the API."""
    base = free_port_block(5)
    env = dict(os.environ, ARCHITECT_DATA_DIR=str(tmp_path / "data"),
               ARCHITECT_STATE_DIR=str(tmp_path / "state"), ARCHITECT_BUS_PORT=str(base),
               ARCHITECT_CONFIG=str(tmp_path / "none.json"))
    proc = subprocess.Popen([PY3, "app.py", "--host", "127.0.0.1", "--port",
                             str(base + 4)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{base + 4}"
        wait_for(lambda: requests.get(f"{url}/healthz", timeout=2).status_code == 200, 30,
                 what="app.py up")
        assert requests.get(f"{url}/api/nodes", timeout=5).json() == {"nodes": [], "count": 0}
        assert "Architect" in requests.get(url, timeout=5).text
    finally:
        proc.terminate()
        proc.wait(20)
