"""Tier 3: the REST API of a real `architect server` process over HTTP (ARCHITECTURE.md §7,
TESTING.md B4): every route answers with sensible JSON, and every error has one shape.

Every request goes through `Api`, which fails the test on any 500 or any body holding a
Python traceback, and checks the error shape of every 4xx/5xx answer. No test here calls
/api/ssh/execute, /api/ssh/broadcast or /api/ssh/trust (they would SSH to the node's address).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.helpers import Cluster, wait_for

pytestmark = pytest.mark.slow

LEVELS = ("healthy", "warning", "critical", "offline")
STATES = ("queued", "assigned", "running", "succeeded", "failed", "timed_out", "cancelled")
FINAL = {"succeeded", "failed", "timed_out", "cancelled"}
TOO_BIG = 2 ** 64          # one past msgpack's largest integer
SSH_RUNNING = {("POST", "/api/ssh/execute"), ("POST", "/api/ssh/broadcast"),
               ("POST", "/api/ssh/trust")}


# --- checking every answer -------------------------------------------------------------

def assert_error_shape(response, status: int | None = None, code: str | None = None,
                       mentions: str | None = None) -> dict:
    """The one error shape: {"error": {"code": str, "message": str}} and nothing else."""
    if status is not None:
        assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers.get("Content-Type", "").startswith("application/json"), \
        (response.headers.get("Content-Type"), response.text[:300])
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}, body
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"].strip(), body
    if code is not None:
        assert error["code"] == code, body
    if mentions is not None:
        assert mentions in error["message"], body
    return error


def check_response(response) -> None:
    """Never a 500, never a traceback; 4xx/5xx from the API have the error shape."""
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code != 500, f"{where} -> 500: {response.text[:1000]}"
    assert b"Traceback" not in response.content, f"{where} leaked a traceback"
    path = requests.utils.urlparse(response.request.url).path
    if response.status_code >= 400 and path != "/healthz":
        assert_error_shape(response)


class Api:
    """requests against one server; every response goes through check_response."""

    def __init__(self, base: str):
        self.base = base
        self.session = requests.Session()

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        response = self.session.request(method, self.base + path, **kwargs)
        check_response(response)
        return response

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs):
        """The JSON body of an answer that must have `status`."""
        response = self.request(method, path, **kwargs)
        assert response.status_code == status, (method, path, response.status_code, response.text[:500])
        assert response.headers["Content-Type"].startswith("application/json"), response.headers
        return response.json()

    def wait_task(self, task_id: int, timeout: float = 30.0) -> dict:
        return wait_for(lambda: (t := self.ok("GET", f"/api/tasks/{task_id}"))["status"] in FINAL and t,
                        timeout, 0.1, what=f"task {task_id} to finish")

    def close(self):
        self.session.close()


@pytest.fixture
def api(cluster):
    client = Api(cluster.start_server())
    yield client
    client.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One server for the many bad-input cases (their answers do not depend on each other),
    with a 4 KiB body limit, one node and one task."""
    cluster = Cluster(tmp_path_factory.mktemp("api-errors"))
    try:
        client = Api(cluster.start_server(env={"ARCHITECT_MAX_REQUEST_BYTES": "4096"}))
        client.ok("POST", "/api/nodes", 201, json={"name": "known", "hostname": "known",
                                                   "ip_address": "127.0.0.1"})
        client.task_id = client.ok("POST", "/api/tasks", 201, json={
            "task_type": "shell", "payload": {"command": "true"}, "requirements": ["nowhere"]})["id"]
        yield client
        client.close()
    finally:
        cluster.stop_all()


def write_metrics(path, cpu, mem=10.0):
    path.write_text(json.dumps({"cpu_percent": cpu, "memory_percent": mem, "disk_percent": 10,
                                "load_1": 0.1}))


# --- every route answers ---------------------------------------------------------------

def test_node_routes(api):
    spec = {"name": "alpha", "hostname": "alpha.local", "ip_address": "127.0.0.1",
            "capabilities": ["ssd", "gpu"], "ssh": {"user": "root", "port": 22}}
    created = api.ok("POST", "/api/nodes", 201, json=spec)
    assert created["name"] == "alpha" and isinstance(created["id"], int)
    assert created["created"] is True and created["ip_address"] == "127.0.0.1"
    assert sorted(created["capabilities"]) == ["gpu", "ssd"] and created["drained"] is False
    assert created["status"] in LEVELS
    again = api.ok("POST", "/api/nodes", 200, json={**spec, "capabilities": ["ssd"]})
    assert again["id"] == created["id"] and again["created"] is False
    assert again["capabilities"] == ["ssd"]
    beta = api.ok("POST", "/api/nodes", 201, json={"name": "beta", "ip_address": "127.0.0.1"})

    listing = api.ok("GET", "/api/nodes")
    assert listing["count"] == len(listing["nodes"]) == 2
    assert {n["name"] for n in listing["nodes"]} == {"alpha", "beta"}
    assert all(n["status"] in LEVELS for n in listing["nodes"])
    healthy = api.ok("GET", "/api/nodes?status=healthy")
    assert all(n["status"] == "healthy" for n in healthy["nodes"])

    by_id = api.ok("GET", f"/api/nodes/{created['id']}")
    by_name = api.ok("GET", "/api/nodes/alpha")
    assert by_id["id"] == by_name["id"] == created["id"] and by_id["name"] == by_name["name"] == "alpha"

    assert api.ok("POST", "/api/nodes/alpha/drain")["drained"] is True
    assert api.ok("GET", "/api/nodes/alpha")["drained"] is True
    assert api.ok("POST", f"/api/nodes/{created['id']}/undrain")["drained"] is False
    assert api.ok("GET", "/api/nodes/alpha")["drained"] is False

    health = api.ok("GET", "/api/nodes/health")
    assert set(LEVELS) <= set(health["counts"]) and sum(health["counts"].values()) == 2
    assert health["total"] == 2 and {n["name"] for n in health["nodes"]} == {"alpha", "beta"}
    assert {"cpu", "memory", "disk", "load"} <= set(health["thresholds"])

    alerts = api.ok("GET", "/api/nodes/alerts")
    assert alerts == {"alerts": [], "count": 0}
    assert api.ok("GET", "/api/nodes/alerts?all=1")["count"] == 0

    recs = api.ok("GET", "/api/nodes/recommend?count=3")
    assert recs["count"] == len(recs["recommendations"]) and 1 <= recs["count"] <= 3
    for rec in recs["recommendations"]:
        assert rec["node"] in ("alpha", "beta") and isinstance(rec["score"], (int, float))
        assert {"cpu", "memory", "tasks", "health", "total"} <= set(rec["breakdown"])
        assert rec["can_run_now"] is False and rec["reason"]  # no worker connected
    assert api.ok("GET", "/api/nodes/recommend?count=1")["count"] == 1

    dist = api.ok("GET", "/api/nodes/distribution")
    assert {"alpha", "beta"} <= set(dist["nodes"]) and isinstance(dist["totals"], dict)
    assert dist["queued"] == 0

    assert api.ok("DELETE", "/api/nodes/beta") == {"removed": "beta", "id": beta["id"]}
    assert_error_shape(api.get("/api/nodes/beta"), 404, "not_found", "beta")
    assert_error_shape(api.delete("/api/nodes/beta"), 404, "not_found")
    assert api.ok("DELETE", f"/api/nodes/{created['id']}")["removed"] == "alpha"
    assert api.ok("GET", "/api/nodes") == {"nodes": [], "count": 0}


def test_task_routes_with_a_worker(cluster, api):
    cluster.start_worker("w1", "-c", "2")
    cluster.wait_workers(1)

    submitted = api.ok("POST", "/api/tasks", 201, json={
        "task_type": "shell", "payload": {"command": "echo hello-api"}, "timeout": 30,
        "max_attempts": 2})
    assert set(submitted) >= {"id", "status"} and isinstance(submitted["id"], int)
    assert submitted["status"] in STATES
    task = api.wait_task(submitted["id"])
    assert task["status"] == "succeeded", task
    assert task["assigned_node"] == "w1" and task["attempt"] >= 1 and task["final"] is True
    assert task["result"]["exit_code"] == 0 and "hello-api" in task["result"]["stdout"]
    assert "stderr" in task["result"]
    assert api.ok("GET", f"/api/tasks/{submitted['id']}?events=1")["id"] == submitted["id"]
    output = api.ok("GET", f"/api/tasks/{submitted['id']}/output")
    assert output["count"] == len(output["output"])

    tasks = api.ok("GET", "/api/tasks")
    assert submitted["id"] in [t["id"] for t in tasks["tasks"]] and tasks["count"] == len(tasks["tasks"])
    done = api.ok("GET", "/api/tasks?status=succeeded&node=w1&task_type=shell&limit=5")
    assert submitted["id"] in [t["id"] for t in done["tasks"]]
    assert all(t["status"] == "succeeded" for t in done["tasks"])

    # idempotency key: the second submit returns the first task with 200
    first = api.ok("POST", "/api/tasks", 201, json={"task_type": "shell", "payload": {"command": "true"},
                                                    "idempotency_key": "api-once"})
    second = api.ok("POST", "/api/tasks", 200, json={"task_type": "shell", "payload": {"command": "true"},
                                                     "idempotency_key": "api-once"})
    assert second["id"] == first["id"]

    # cancel a queued task (nobody has the capability) and a running one
    queued = api.ok("POST", "/api/tasks", 201, json={
        "task_type": "shell", "payload": {"command": "true"}, "requirements": ["no-such-cap"]})
    assert queued["status"] == "queued"
    cancelled = api.ok("POST", f"/api/tasks/{queued['id']}/cancel")
    assert cancelled["id"] == queued["id"] and cancelled["status"] == "cancelled"
    assert api.ok("GET", f"/api/tasks/{queued['id']}")["status"] == "cancelled"
    running = api.ok("POST", "/api/tasks", 201, json={"task_type": "shell",
                                                      "payload": {"command": "sleep 30"}})
    wait_for(lambda: api.ok("GET", f"/api/tasks/{running['id']}")["status"] == "running", 15,
             what="sleep task to run")
    api.ok("POST", f"/api/tasks/{running['id']}/cancel")
    assert api.wait_task(running["id"], 20)["status"] == "cancelled"

    # assign-optimal: without a payload only the best node; with one, also a pinned task
    best = api.ok("POST", "/api/tasks/assign-optimal", json={"task_type": "shell", "requirements": []})
    assert best["node"] == "w1" and isinstance(best["score"], float)
    assert {"cpu", "memory", "tasks", "health", "total"} <= set(best["breakdown"])
    assert "task" not in best
    placed = api.ok("POST", "/api/tasks/assign-optimal", json={
        "task_type": "shell", "requirements": [], "payload": {"command": "echo via-assign"}})
    assert placed["node"] == "w1" and isinstance(placed["task"]["id"], int)
    task = api.wait_task(placed["task"]["id"])
    assert task["status"] == "succeeded" and task["assigned_node"] == "w1"
    assert "via-assign" in task["result"]["stdout"]
    nobody = api.ok("POST", "/api/tasks/assign-optimal", json={"task_type": "shell",
                                                               "requirements": ["fpga"]})
    assert nobody["node"] is None and "fpga" in nobody["reasons"]["w1"]

    workers = api.ok("GET", "/api/workers")
    assert workers["count"] == 1 and workers["workers"][0]["node"] == "w1"
    dist = api.ok("GET", "/api/nodes/distribution")
    assert dist["nodes"]["w1"]["succeeded"] >= 2 and dist["totals"]["succeeded"] >= 2

    topo = api.ok("GET", "/api/cluster/topology")
    ids = {n["id"] for n in topo["nodes"]}
    assert {"master", "w1"} <= ids and isinstance(topo["edges"], list)
    for edge in topo["edges"]:
        assert edge.get("source") in ids and edge.get("target") in ids, edge
    flow = api.ok("GET", "/api/cluster/flow?window=600")
    assert flow["states"]["succeeded"] >= 2 and flow["states"]["cancelled"] >= 2
    assert any(link["source"] == "submitted" for link in flow["links"])
    assert all(isinstance(link["value"], int) and link["value"] > 0 for link in flow["links"])
    stats = api.ok("GET", "/api/cluster/stats")
    assert stats["workers"]["connected"] == 1 and stats["workers"]["slots"] == 2
    assert stats["nodes"]["total"] >= 1 and stats["counters"]["tasks_submitted"] >= 5
    dash = api.ok("GET", "/api/stats")
    assert dash["tasks"]["succeeded"] >= 2 and dash["workers"]["connected"] == 1

    metrics = api.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["Content-Type"].startswith("text/plain")
    text = metrics.text
    # w1 is graded from this machine's real CPU (a worker's own metrics): any live level
    assert re.search(r'^architect_nodes\{level="(healthy|warning|critical)"\} [1-9]', text,
                     re.M), text[:2000]
    assert 'architect_dispatch_latency_seconds_bucket{le="+Inf"}' in text
    inf = re.search(r'^architect_dispatch_latency_seconds_bucket\{le="\+Inf"\} (\S+)', text, re.M)
    assert float(inf.group(1)) >= 3, text          # three tasks started on the worker
    assert re.search(r"^architect_broker_up 1", text, re.M)
    assert re.search(r"^architect_workers_connected 1", text, re.M)


def test_alerts_and_ack(cluster, api, tmp_path):
    hot = tmp_path / "hot.json"
    write_metrics(hot, cpu=90.0)
    cluster.start_agent("hot", "--metrics-file", str(hot))
    alerts = wait_for(lambda: (a := api.ok("GET", "/api/nodes/alerts"))["count"] and a, 15,
                      what="an alert for the hot node")
    alert = alerts["alerts"][0]
    assert alert["node_name"] == "hot" and alert["level"] == "warning" and alert["status"]
    assert isinstance(alert["reasons"], list) and alert["acknowledged_at"] is None
    assert api.ok("GET", "/api/nodes/alerts?node=hot")["count"] >= 1
    acked = api.ok("POST", f"/api/nodes/alerts/{alert['id']}/ack", json={"by": "tester"})
    assert acked["id"] == alert["id"] and acked["acknowledged_by"] == "tester"
    assert acked["acknowledged_at"] is not None
    assert api.ok("POST", f"/api/nodes/alerts/{alert['id']}/ack")["id"] == alert["id"]  # no body
    history = api.ok("GET", "/api/nodes/alerts?all=1&limit=10")
    assert alert["id"] in [a["id"] for a in history["alerts"]]
    assert_error_shape(api.post("/api/nodes/alerts/987654/ack"), 404, "not_found")
    assert_error_shape(api.post(f"/api/nodes/alerts/{alert['id']}/ack", data="{oops",
                                headers={"Content-Type": "application/json"}), 400, "bad_request")
    assert_error_shape(api.post(f"/api/nodes/alerts/{alert['id']}/ack", json={"by": 5}), 400,
                       mentions="'by'")
    assert api.ok("GET", "/api/nodes/health")["counts"]["warning"] == 1


def test_meta_routes(cluster, api):
    health = api.ok("GET", "/healthz")
    assert health["status"] == "ok" and health["broker"] == "reachable"
    assert health["store"]["ok"] is True
    bus = api.ok("GET", "/api/bus")  # the loopback bus: ipc sockets in DATA_DIR/bus
    folder = os.path.realpath(cluster.tmp / "data" / "bus")
    for name in ("heartbeat", "work", "control", "events"):
        assert bus[name] == f"ipc://{folder}/{name}", bus
    assert bus["server_key"] is None
    spec = api.ok("GET", "/api/openapi.json")
    assert spec["openapi"].startswith("3.") and "/api/nodes" in spec["paths"]
    pool = api.ok("GET", "/api/ssh/pool/stats")
    assert isinstance(pool["hosts"], dict) and isinstance(pool["totals"], dict)
    assert isinstance(api.ok("POST", "/api/ssh/pool/cleanup")["closed"], int)
    audit = api.ok("GET", "/api/ssh/audit?limit=5")
    assert audit["count"] == len(audit["audit"])
    keys = api.ok("GET", "/api/keys")      # the bus is on loopback: no CURVE, no keys
    assert keys["secured"] is False and keys["authorized"] == [] and keys["pending"] == []
    # the dashboard page is served at / (no auth configured here)
    page = api.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]


# --- the error shape ---------------------------------------------------------------------

BAD_JSON = [
    ("POST", "/api/nodes", b'{"name": "x",'),
    ("POST", "/api/nodes", b"{'name': 'x'}"),
    ("POST", "/api/tasks", b'{"task_type": "shell" "payload": {}}'),
    ("POST", "/api/tasks", b"\xff\xfe\x00{"),
    ("POST", "/api/tasks/assign-optimal", b"task_type=shell"),
    ("POST", "/api/nodes/alerts/1/ack", b"{"),
]


@pytest.mark.parametrize("method,path,body", BAD_JSON)
def test_malformed_json_is_400(shared, method, path, body):
    response = shared.request(method, path, data=body, headers={"Content-Type": "application/json"})
    assert_error_shape(response, 400, "bad_request", "not valid JSON")


@pytest.mark.parametrize("body", [b"[]", b'[{"name": "x"}]', b'"text"', b"42", b"null", b"true",
                                  b"", b"   "])
@pytest.mark.parametrize("path", ["/api/nodes", "/api/tasks", "/api/tasks/assign-optimal"])
def test_body_not_an_object_is_400(shared, path, body):
    response = shared.post(path, data=body, headers={"Content-Type": "application/json"})
    if path == "/api/tasks" and body.startswith(b"["):   # POST /api/tasks takes arrays
        if body == b"[]":
            assert_error_shape(response, 400, "bad_request", "empty")
            return
        assert response.status_code == 200, response.text   # nothing created ...
        item = response.json()["tasks"][0]                  # ... and the item says why
        assert response.json()["rejected"] == 1 and "task_type" in item["error"]["message"]
        return
    assert_error_shape(response, 400, "bad_request", "JSON object")


TASK = {"task_type": "shell", "payload": {"command": "true"}}
WRONG_TYPES = [
    ("/api/nodes", {"name": 5}, "name"),
    ("/api/nodes", {}, "name"),
    ("/api/nodes", {"name": "n1", "capabilities": "gpu"}, "capabilities"),
    ("/api/nodes", {"name": "n1", "capabilities": [1, 2]}, "capabilities"),
    ("/api/nodes", {"name": "n1", "hostname": 7}, "hostname"),
    ("/api/nodes", {"name": "n1", "ip_address": ["127.0.0.1"]}, "ip_address"),
    ("/api/nodes", {"name": "n1", "ssh": "root@host"}, "ssh"),
    ("/api/nodes", {"name": "n1", "ssh": {"port": "22"}}, "port"),
    ("/api/nodes", {"name": "has space"}, "name"),
    ("/api/tasks", {"task_type": 5, "payload": {"command": "true"}}, "task_type"),
    ("/api/tasks", {"payload": {"command": "true"}}, "task_type"),
    ("/api/tasks", {**TASK, "timeout": "5"}, "timeout"),
    ("/api/tasks", {**TASK, "payload": ["echo"]}, "payload"),
    ("/api/tasks", {**TASK, "requirements": "gpu"}, "requirements"),
    ("/api/tasks", {**TASK, "requirements": [1]}, "requirements"),
    ("/api/tasks", {**TASK, "max_attempts": "3"}, "max_attempts"),
    ("/api/tasks", {**TASK, "max_attempts": True}, "max_attempts"),
    ("/api/tasks", {**TASK, "priority": 1.5}, "priority"),
    ("/api/tasks", {**TASK, "retries": "2"}, "retries"),
    ("/api/tasks", {**TASK, "idempotency_key": 5}, "idempotency_key"),
    ("/api/tasks", {**TASK, "node": ["known"]}, "node"),
    ("/api/tasks", {**TASK, "timeout": -1}, "timeout"),
    ("/api/tasks", {**TASK, "priority": 2 ** 40}, "priority"),
    ("/api/tasks", {"task_type": "shell", "payload": {}}, "payload"),
    ("/api/tasks/assign-optimal", {"task_type": 5}, "task_type"),
    ("/api/tasks/assign-optimal", {"task_type": "shell", "requirements": {"gpu": 1}}, "requirements"),
    ("/api/tasks/assign-optimal", {"task_type": "shell", "payload": "echo"}, "payload"),
]


@pytest.mark.parametrize("path,body,name", WRONG_TYPES,
                         ids=[f"{p.rsplit('/', 1)[1]}-{n}-{i}" for i, (p, _, n) in enumerate(WRONG_TYPES)])
def test_wrong_field_types_are_400_naming_the_field(shared, path, body, name):
    error = assert_error_shape(shared.post(path, json=body), 400, "bad_request")
    assert name in error["message"], error


BAD_QUERIES = [
    ("/api/nodes?status=bogus", "status"),
    ("/api/tasks?limit=abc", "limit"),
    ("/api/tasks?limit=0", "limit"),
    ("/api/tasks?offset=-1", "offset"),
    ("/api/tasks?status=bogus", "status"),
    ("/api/nodes/alerts?limit=0", "limit"),
    ("/api/nodes/recommend?count=x", "count"),
    ("/api/nodes/recommend?count=100000", "count"),
    ("/api/cluster/flow?window=-1", "window"),
    ("/api/ssh/audit?limit=nope", "limit"),
]


@pytest.mark.parametrize("path,name", BAD_QUERIES)
def test_bad_query_parameters_are_400_naming_them(shared, path, name):
    error = assert_error_shape(shared.get(path), 400, "bad_request")
    assert name in error["message"], error


def test_bad_query_on_task_output(shared):
    error = assert_error_shape(shared.get(f"/api/tasks/{shared.task_id}/output?after_seq=x"), 400)
    assert "after_seq" in error["message"]


NOT_FOUND = [
    ("GET", "/api/nodes/ghost"), ("DELETE", "/api/nodes/ghost"), ("GET", "/api/nodes/987654"),
    ("POST", "/api/nodes/ghost/drain"), ("POST", "/api/nodes/ghost/undrain"),
    ("GET", "/api/tasks/987654"), ("GET", "/api/tasks/0"), ("POST", "/api/tasks/987654/cancel"),
    ("GET", "/api/tasks/987654/output"), ("POST", "/api/nodes/alerts/987654/ack"),
    ("GET", "/api/nodes/alerts?node=ghost"),
    ("GET", "/api/whatever"), ("POST", "/api/whatever"), ("GET", "/api/nodes/known/nothing/here"),
    ("GET", "/api/tasks/abc"), ("GET", "/api/nodes/"), ("DELETE", "/api/v2/nodes"),
]


@pytest.mark.parametrize("method,path", NOT_FOUND)
def test_unknown_things_are_404_json(shared, method, path):
    response = shared.request(method, path)
    assert_error_shape(response, 404, "not_found")
    assert "<html" not in response.text.lower()


def test_task_pinned_to_an_unknown_node_is_404(shared):
    assert_error_shape(shared.post("/api/tasks", json={**TASK, "node": "ghost"}), 404, "not_found",
                       "ghost")


@pytest.mark.parametrize("path", ["/api", "/api/"])
def test_api_root_is_404_json(shared, path):
    assert_error_shape(shared.get(path), 404, "not_found")


@pytest.mark.parametrize("path", ["/api/nodes", "/api/tasks", "/api/tasks/assign-optimal"])
def test_body_over_the_limit_is_413(shared, path):
    body = json.dumps({"name": "big", "task_type": "shell", "hostname": "h" * 10240}).encode()
    assert len(body) > 10_000
    response = shared.post(path, data=body, headers={"Content-Type": "application/json"})
    assert_error_shape(response, 413, "too_large")
    # and the server is fine afterwards
    assert shared.ok("GET", "/api/nodes/known")["name"] == "known"


def test_chunked_body_over_the_limit_is_413(shared):
    body = b'{"name": "chunked", "ip_address": "127.0.0.1"}' + b" " * 10240

    def chunks():
        for i in range(0, len(body), 1024):
            yield body[i:i + 1024]
    response = shared.post("/api/nodes", data=chunks(), headers={"Content-Type": "application/json"})
    assert_error_shape(response, 413, "too_large")


@pytest.mark.parametrize("method,path", [("DELETE", "/healthz"), ("POST", "/healthz"),
                                         ("PUT", "/metrics"), ("POST", "/metrics")])
def test_wrong_method_is_405_with_allow(shared, method, path):
    response = shared.request(method, path)
    assert_error_shape(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers["Allow"].split(",")} == {"GET", "HEAD", "OPTIONS"}


WRONG_METHODS = [("PUT", "/api/nodes", {"GET", "POST"}), ("DELETE", "/api/tasks", {"GET", "POST"}),
                 ("PATCH", "/api/nodes/known", {"GET", "DELETE"}),
                 ("GET", "/api/nodes/known/drain", {"POST"}), ("POST", "/api/bus", {"GET"}),
                 ("PUT", "/api/tasks/1", {"GET"}), ("DELETE", "/api/openapi.json", {"GET"})]


@pytest.mark.parametrize("method,path,allowed", WRONG_METHODS)
def test_wrong_method_on_api_routes_is_405_with_allow(shared, method, path, allowed):
    response = shared.request(method, path)
    assert_error_shape(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers["Allow"].split(",")} - {"HEAD", "OPTIONS"} == allowed


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE"])
def test_allow_header_lists_only_the_route_methods(shared, method):
    response = shared.request(method, "/api/tasks")
    assert {m.strip() for m in response.headers["Allow"].split(",")} - {"HEAD", "OPTIONS"} == \
        {"GET", "POST"}


OVERFLOW = [
    ("POST", "/api/tasks", {"task_type": "shell", "payload": {"command": "true", "n": TOO_BIG}}),
    ("POST", "/api/tasks", {"task_type": "shell", "payload": {"command": "true", "n": -2 ** 63 - 1}}),
    ("POST", "/api/tasks", {**TASK, "priority": TOO_BIG}),
    ("POST", "/api/tasks/assign-optimal", {"task_type": "shell", "payload": {"n": TOO_BIG}}),
    ("POST", "/api/nodes", {"name": "big", "ssh": {"port": TOO_BIG}}),
    ("GET", f"/api/tasks/{TOO_BIG}", None),
    ("GET", f"/api/tasks/{TOO_BIG}/output", None),
    ("POST", f"/api/tasks/{TOO_BIG}/cancel", None),
    ("POST", f"/api/nodes/alerts/{TOO_BIG}/ack", None),
]


@pytest.mark.parametrize("method,path,body", OVERFLOW,
                         ids=[f"{m}-{p.split('/')[2]}-{i}" for i, (m, p, _) in enumerate(OVERFLOW)])
def test_integers_too_big_for_the_wire_are_4xx(shared, method, path, body):
    response = shared.request(method, path, **({"json": body} if body is not None else {}))
    assert response.status_code in (400, 404), response.text
    assert_error_shape(response)


STORE_OVERFLOW = [("GET", f"/api/tasks/{2 ** 63}"), ("GET", f"/api/tasks/{2 ** 63}/output"),
                  ("POST", f"/api/tasks/{2 ** 63}/cancel"), ("POST", f"/api/nodes/alerts/{2 ** 63}/ack")]


@pytest.mark.parametrize("method,path", STORE_OVERFLOW)
def test_ids_too_big_for_sqlite_are_404(shared, method, path):
    assert_error_shape(shared.request(method, path), 404, "not_found")


@pytest.mark.parametrize("name", ["health", "alerts", "recommend", "distribution"])
def test_a_node_named_like_a_route_can_be_read_back(shared, name):
    created = shared.post("/api/nodes", json={"name": name, "ip_address": "127.0.0.1"})
    if created.status_code == 400:
        return  # refusing such names at registration would be a fix too
    try:
        assert shared.ok("GET", f"/api/nodes/{name}").get("name") == name
    finally:
        shared.delete(f"/api/nodes/{name}")


def test_server_survives_all_that(shared):
    assert shared.ok("GET", "/healthz")["status"] == "ok"
    assert shared.ok("GET", "/api/nodes")["count"] >= 1


# --- broker unreachable: `architect web` alone -----------------------------------------------

BODIES = {
    ("POST", "/api/nodes"): {"name": "n1", "ip_address": "127.0.0.1"},
    ("POST", "/api/tasks"): TASK,
    ("POST", "/api/tasks/assign-optimal"): {"task_type": "shell"},
    ("POST", "/api/bus/join"): {"name": "n1", "public_key": "k" * 40},
    ("POST", "/api/keys/token"): {"uses": 1},
    ("POST", "/api/keys/{name}/role"): {"role": "node"},
    ("POST", "/api/users"): {"name": "u1", "role": "viewer", "password": "p" * 8},
    ("PATCH", "/api/users/{name}"): {"role": "viewer"},
    ("POST", "/api/tokens"): {"role": "viewer"},
    ("POST", "/api/schedules"): {**TASK, "name": "s1", "every": 60},
    ("POST", "/api/tasks/retry"): {"since": 3600},
    ("PUT", "/api/queues/{name}"): {"concurrency": 2},
    ("PUT", "/api/nodes/{key}/thresholds"): {"disk": {"warning": 90, "critical": 97}},
    ("POST", "/api/alert-rules"): {"name": "r1", "expr": "disk_percent > 70"},
    ("PUT", "/api/backup/schedule"): {"every": 86400},
    ("POST", "/api/notify/channels"): {"name": "c1", "kind": "webhook",
                                       "url": "http://127.0.0.1:9/"},
    ("POST", "/api/notify/rules"): {"name": "r1", "channels": ["c1"]},
    ("POST", "/api/silences"): {"node": "n1", "comment": "test"},
    ("POST", "/api/nodes/{key}/maintenance"): {"on": True},
}
PLACEHOLDERS = {"key": "n1", "task_id": "1", "alert_id": "1", "name": "n1", "token_id": "1",
                "silence_id": "1"}


def spec_operations(spec: dict):
    for template, item in spec["paths"].items():
        for method, op in item.items():
            path = re.sub(r"\{(\w+)\}", lambda m: PLACEHOLDERS.get(m.group(1), "x1"), template)
            yield method.upper(), template, path, op


def test_bus_route_reports_tcp_ports_with_bus_local_tcp(cluster):
    """ARCHITECT_BUS_LOCAL=tcp: the loopback bus on plain ports, as before ipc."""
    cluster.env["ARCHITECT_BUS_LOCAL"] = "tcp"
    api = Api(cluster.start_server())
    bus, port = api.ok("GET", "/api/bus"), cluster.base_port
    assert bus["heartbeat"] == f"tcp://127.0.0.1:{port}" and bus["work"] == f"tcp://127.0.0.1:{port + 1}"
    assert bus["control"] == f"tcp://127.0.0.1:{port + 2}" and bus["events"] == f"tcp://127.0.0.1:{port + 3}"
    assert bus["server_key"] is None
    assert cluster.endpoints.control == f"tcp://127.0.0.1:{port + 2}" and cluster.rpc("ping")
    assert not (cluster.tmp / "data" / "bus" / "control").exists()
    api.close()


def test_broker_unreachable_is_503_with_a_message(cluster):
    base = cluster.start_server(command="web", key="web", healthy=False,
                                env={"ARCHITECT_REQUEST_TIMEOUT": "0.5"})
    api = Api(base)
    health = api.get("/healthz")
    assert health.status_code == 503 and health.json()["broker"] == "unreachable"
    spec = api.ok("GET", "/api/openapi.json")
    ops = [op for op in spec_operations(spec) if (op[0], op[1]) not in SSH_RUNNING]

    def call(op):
        method, template, path, doc = op
        body = BODIES.get((method, template))
        return op, api.request(method, path, **({"json": body} if body is not None else {}))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, ops))
    assert len(results) >= 25
    for (method, template, path, doc), response in results:
        if template in ("/api/bus", "/api/openapi.json", "/metrics", "/healthz", "/api/me"):
            continue  # answered without the broker: checked below
        error = assert_error_shape(response, 503, "broker_unavailable")
        assert "broker" in error["message"], (method, path, error)
        assert "503" in doc["responses"], f"{method} {template}: 503 not documented"
    assert api.ok("GET", "/api/bus")["control"] == cluster.endpoints.control
    assert cluster.endpoints.control.startswith("ipc://")
    metrics = api.get("/metrics")
    assert metrics.status_code == 200 and re.search(r"^architect_broker_up 0", metrics.text, re.M)
    # bad input is still 400, not 503: it is checked before the broker is asked
    assert_error_shape(api.post("/api/nodes", data=b"{", headers={"Content-Type": "application/json"}),
                       400, "bad_request")
    assert_error_shape(api.post("/api/tasks", json={"task_type": 5}), 400, mentions="task_type")
    api.close()
    cluster.kill("web")   # SIGTERM does not stop `architect web`: see test_sigterm_stops_the_web_server


def test_healthz_503_matches_its_documented_schema(cluster):
    base = cluster.start_server(command="web", key="web", healthy=False,
                                env={"ARCHITECT_REQUEST_TIMEOUT": "0.5"})
    api = Api(base)
    response = api.get("/healthz")
    assert response.status_code == 503
    spec = api.ok("GET", "/api/openapi.json")
    documented = spec["paths"]["/healthz"]["get"]["responses"]["503"]
    ref = documented["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    required = spec["components"]["schemas"][ref].get("required", [])
    body = response.json()
    api.close()
    cluster.kill("web")
    assert all(key in body for key in required), (ref, required, body)


@pytest.mark.parametrize("command", [
    "server",
    "web",
])
def test_sigterm_stops_the_web_server(cluster, command):
    base = cluster.start_server(command=command, key=command, healthy=command == "server")
    port = int(base.rsplit(":", 1)[1])
    proc = cluster.procs[command]
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        cluster.kill(command)
        raise AssertionError(f"`architect {command}` still running 10 s after SIGTERM") from None
    cluster.procs.pop(command)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the web port is still open"


# --- the route table and the spec agree --------------------------------------------------------

def flask_to_openapi(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def test_every_route_is_in_the_spec_and_back(tmp_path):
    from architect import config as config_mod
    from architect.api import create_app
    cfg = config_mod.load(env={"ARCHITECT_DATA_DIR": str(tmp_path / "data")},
                          config_file=tmp_path / "none.json")
    app = create_app(cfg, with_ui=False)
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "api_not_found" or rule.rule.startswith("/static"):
            continue  # the JSON-404 catch-all for unknown /api paths
        if not rule.rule.startswith(("/api", "/healthz", "/metrics")):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routed.add((method, flask_to_openapi(rule.rule)))
    spec = app.test_client().get("/api/openapi.json").get_json()
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert routed - documented == set(), "routes missing from the spec"
    assert documented - routed == set(), "spec operations with no route"
    # §7's contract routes are all there
    for method, path in [("GET", "/api/nodes"), ("POST", "/api/nodes"), ("GET", "/api/nodes/{key}"),
                         ("DELETE", "/api/nodes/{key}"), ("POST", "/api/nodes/{key}/drain"),
                         ("POST", "/api/nodes/{key}/undrain"), ("GET", "/api/nodes/health"),
                         ("GET", "/api/nodes/alerts"), ("POST", "/api/nodes/alerts/{alert_id}/ack"),
                         ("GET", "/api/nodes/recommend"), ("GET", "/api/nodes/distribution"),
                         ("GET", "/api/tasks"), ("POST", "/api/tasks"), ("GET", "/api/tasks/{task_id}"),
                         ("POST", "/api/tasks/{task_id}/cancel"), ("POST", "/api/tasks/assign-optimal"),
                         ("GET", "/api/ssh/pool/stats"), ("POST", "/api/ssh/pool/cleanup"),
                         ("POST", "/api/ssh/execute"), ("POST", "/api/ssh/broadcast"),
                         ("GET", "/api/cluster/topology"), ("GET", "/api/cluster/flow"),
                         ("GET", "/api/cluster/stats"), ("GET", "/api/stats"), ("GET", "/api/bus"),
                         ("GET", "/healthz"), ("GET", "/metrics")]:
        assert (method, path) in documented, (method, path)
    # every operation documents its success and error answers, errors as the Error schema
    for path, item in spec["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            assert any(c.startswith("2") for c in codes), (method, path)
            for code, resp in op["responses"].items():
                if code.startswith(("4", "5")) and path != "/healthz":
                    schema = resp["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, code)


def test_an_array_of_tasks_in_one_post(cluster, api):
    """POST /api/tasks with a JSON array: one commit for the batch; a bad item is reported
    in its place and the others still go in."""
    cluster.start_worker("wb", "-c", "2")
    cluster.wait_workers(1)
    body = [{"task_type": "shell", "payload": {"command": f"echo batch-{i}"}} for i in range(5)]
    body.insert(2, {"task_type": "shell", "payload": "not an object"})
    body.insert(4, "not a task")
    body.append({"task_type": "shell", "payload": {"command": "true"},
                 "idempotency_key": "batch-key"})
    r = api.post("/api/tasks", json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["count"] == 8 and out["created"] == 6 and out["rejected"] == 2
    items = out["tasks"]
    assert items[2]["error"]["code"] == "bad_request" and "task 2" in items[2]["error"]["message"]
    assert items[4]["error"]["code"] == "bad_request"
    bad = api.post("/api/tasks", json=[{"task_type": "shell", "payload": {"command": "true"}},
                                       {"task_type": "shell", "payload": {}}]).json()["tasks"]
    assert bad[1]["error"]["message"].startswith("task 1: ") and "command" in \
        bad[1]["error"]["message"]
    ids = [t["id"] for t in items if "id" in t]
    assert len(ids) == 6 and ids == sorted(ids)
    for task_id in ids:
        assert api.wait_task(task_id)["status"] == "succeeded"
    again = api.post("/api/tasks", json=[{"task_type": "shell", "payload": {"command": "true"},
                                           "idempotency_key": "batch-key"}])
    assert again.status_code == 200 and again.json()["tasks"][0] == {
        "id": ids[-1], "status": "succeeded", "created": False}
    for bad, why in (([], "empty"), ([{}] * 10_001, "at most 10000")):
        r = api.post("/api/tasks", json=bad)
        assert r.status_code in (400, 413) and (r.status_code == 413 or
                                                why in r.json()["error"]["message"]), r.text
