"""S6 on a CURVE-secured bus (TESTING.md; ARCHITECTURE.md §1, §10): what a bus key's role lets
it do, checked on the state of a real cluster (broker + web, agents and workers), not only on
the replies.

- a node key may register its own node and ping; every operator or admin method, a
  registration under another node's name and speaking on behalf of a web user are
  `forbidden`, change nothing, and each refusal leaves an audit row;
- heartbeats and worker hellos under another node's name are refused, counted
  (`identity_rejected`) and alerted once; the node they name does not change;
- an operator key runs tasks but may not manage keys;
- revoking a key cuts its worker off at once: its task runs again elsewhere;
- join tokens: uses, expiry, revocation, the shared ARCHITECT_JOIN_TOKEN.

One secured cluster is shared by the module (nodes alpha and bravo, each an agent and a
worker, joined with the shared join token); each test makes its own keys with their own
names. Revocation gets a cluster of its own.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
import zmq
import zmq.auth

from architect.bus.codec import decode, encode
from architect.bus.errors import RemoteError
from architect.bus.messages import Heartbeat, Request, WorkerReady
from architect.bus.rpc import RpcClient
from architect.bus.transport import make_socket
from tests.helpers import Cluster, wait_for

pytestmark = pytest.mark.slow

LOGIN = ("admin", "pa55word")
CREDS = {"ARCHITECT_USER": LOGIN[0], "ARCHITECT_PASSWORD": LOGIN[1]}
NO_LOGIN = {"ARCHITECT_USER": "", "ARCHITECT_PASSWORD": ""}
SHARED = "shared-join-token-for-tests"
CALM = {"cpu_percent": 10.0, "memory_percent": 20.0, "disk_percent": 30.0, "load_1": 0.2}


# --- helpers ------------------------------------------------------------------------------
def start_secured(tmp: Path, nodes=("alpha", "bravo"), timeout: float = 2.0) -> Cluster:
    """`architect server` with CURVE on and a web login; each node an agent and a worker that
    join with the shared token (and no web login), each node with its own state dir."""
    cluster = Cluster(tmp, timeout=timeout, extra_env={"ARCHITECT_BUS_CURVE": "on",
                                                       **NO_LOGIN})
    cluster.web = cluster.start_server(env={**CREDS, "ARCHITECT_JOIN_TOKEN": SHARED})
    cluster.server_key = requests.get(cluster.web + "/api/bus", timeout=5).json()["server_key"]
    for name in nodes:
        start_node(cluster, name, SHARED)
    if nodes:
        cluster.wait_workers(len(nodes), timeout=30)
        for name in nodes:
            wait_for(lambda n=name: (node := cluster.node(n)) and node["status"] == "healthy",
                     30, what=f"{name} healthy")
    return cluster


def node_env(cluster: Cluster, name: str, token: str) -> dict:
    return {**NO_LOGIN, "ARCHITECT_JOIN_TOKEN": token,
            "ARCHITECT_STATE_DIR": str(cluster.tmp / f"state-{name}")}


def start_node(cluster: Cluster, name: str, token: str, agent: bool = True) -> None:
    env = node_env(cluster, name, token)
    if agent:
        calm = cluster.tmp / "calm-metrics.json"
        calm.write_text(json.dumps(CALM))
        cluster.spawn(f"agent-{name}", "agent", "--name", name, "--dashboard", cluster.web,
                      "--metrics-file", str(calm), env=env)
    cluster.spawn(f"worker-{name}", "worker", "--name", name, "--dashboard", cluster.web,
                  env=env)


def join(cluster: Cluster, name: str, public: bytes, token: str | None = None,
         login: bool = False) -> requests.Response:
    body = {"name": name, "public_key": public.decode()}
    if token is not None:
        body["token"] = token
    return requests.post(cluster.web + "/api/bus/join", json=body, timeout=10,
                         auth=LOGIN if login else None)


def node_key(cluster: Cluster, name: str, role: str | None = None) -> dict:
    """A fresh key pair authorized under `name` (joined with the admin's web login: role
    node), optionally given another role; CURVE options for make_socket / RpcClient."""
    public, secret = zmq.curve_keypair()
    answer = join(cluster, name, public, login=True)
    assert answer.status_code == 200 and answer.json()["status"] == "authorized", answer.text
    assert answer.json()["role"] == "node"
    if role is not None:
        cluster.cli("keys", "role", name, role)
    return {"public": public, "secret": secret, "server": cluster.server_key.encode()}


def key_of(cluster: Cluster, node: str) -> dict:
    """The key pair a node's agent and worker made and joined with."""
    public, secret = zmq.auth.load_certificate(
        cluster.tmp / f"state-{node}" / "keys" / f"{node}.key_secret")
    return {"public": public, "secret": secret, "server": cluster.server_key.encode()}


def rpc_as(cluster: Cluster, curve: dict, timeout: float = 3.0) -> RpcClient:
    return RpcClient(cluster.endpoints.control, timeout=timeout, curve=curve)


def db(cluster: Cluster) -> sqlite3.Connection:
    """A new read-only connection to the broker's database."""
    path = cluster.tmp / "data" / "architect.db"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    return conn


def rows(cluster: Cluster, sql: str, params=()) -> list[dict]:
    conn = db(cluster)
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def counters(cluster: Cluster) -> dict:
    return cluster.rpc("cluster.stats")["counters"]


def keys_listing(cluster: Cluster) -> dict:
    return cluster.rpc("keys.list")


def node_row(cluster: Cluster, name: str) -> dict | None:
    found = rows(cluster, "SELECT * FROM nodes WHERE name = ?", (name,))
    return found[0] if found else None


def stable(row: dict | None) -> dict | None:
    """A node's row without what its own heartbeats keep changing."""
    if row is None:
        return None
    return {k: v for k, v in row.items() if k not in ("last_seen", "last_metrics", "status",
                                                      "reasons")}


def security_alerts(cluster: Cluster, key: str) -> list[dict]:
    return [a for a in cluster.rpc("alert.list", {"all": True, "limit": 10_000})
            if a.get("kind") == "security" and a.get("source") == key]


def forbidden(rpc: RpcClient, method: str, params: dict, on_behalf=None) -> RemoteError:
    with pytest.raises(RemoteError) as err:
        rpc.call(method, params, on_behalf=on_behalf)
    assert err.value.code == "forbidden", (method, err.value.code, err.value.message)
    return err.value


@pytest.fixture(scope="module")
def bus(tmp_path_factory):
    cluster = start_secured(tmp_path_factory.mktemp("roles-bus"))
    try:
        yield cluster
    finally:
        cluster.stop_all()


# --- a node key on the control socket -------------------------------------------------------
def test_a_node_key_may_not_call_operator_or_admin_methods(bus):
    rpc = rpc_as(bus, node_key(bus, "nk-calls"))
    try:
        # what a node key may do: ping, and register its own node
        assert rpc.call("ping")["pong"] is True
        assert rpc.call("node.register", {"name": "nk-calls", "hostname": "h-nk"})["name"] == \
            "nk-calls"
        pending_pub, _ = zmq.curve_keypair()
        assert join(bus, "nk-pending", pending_pub).status_code == 202
        tasks_before = rows(bus, "SELECT COUNT(*) AS n FROM tasks")[0]["n"]
        tokens_before = rows(bus, "SELECT COUNT(*) AS n FROM tokens")[0]["n"]
        ssh_before = rows(bus, "SELECT COUNT(*) AS n FROM ssh_audit")[0]["n"]
        users_before = rows(bus, "SELECT name FROM users")
        alpha_before = stable(node_row(bus, "alpha"))
        assert alpha_before is not None and not alpha_before["drained"]
        keys_before = keys_listing(bus)
        assert "nk-pending" in keys_before["pending"]
        assert keys_before["roles"]["nk-calls"] == "node"
        audit_before = rows(bus, "SELECT COALESCE(MAX(id), 0) AS n FROM audit")[0]["n"]
        stats_before = counters(bus)

        admin = {"user": "x", "role": "admin"}
        calls = [
            ("task.submit", {"task_type": "shell", "payload": {"command": "echo nk-pwned"}}, None),
            ("task.submit_many", {"tasks": [{"task_type": "shell",
                                             "payload": {"command": "echo nk-pwned"}}]}, None),
            ("keys.accept", {"name": "nk-pending"}, None),
            ("keys.role", {"name": "nk-calls", "role": "admin"}, None),
            ("keys.token", {"uses": 5}, None),
            ("ssh.execute", {"node": "alpha", "command": "id"}, None),
            ("node.remove", {"node": "alpha"}, None),
            ("node.drain", {"node": "alpha"}, None),
            ("users.add", {"name": "nk-intruder", "role": "admin",
                           "password": "intruder-password"}, None),
            ("tokens.create", {"role": "admin"}, None),
            ("node.list", {}, None),                       # not even reads
            ("audit.list", {}, None),
            # speaking for a web user: only the master's admin key may
            ("task.submit", {"task_type": "shell", "payload": {"command": "echo nk-pwned"}},
             admin),
            ("users.add", {"name": "nk-intruder", "role": "admin",
                           "password": "intruder-password"}, admin),
            ("ping", {}, admin),
        ]
        for method, params, behalf in calls:
            forbidden(rpc, method, params, behalf)
        # registration under another node's name, or saying how the master reaches it by SSH
        impostor = forbidden(rpc, "node.register", {"name": "alpha", "hostname": "evil",
                                                    "capabilities": ["gpu"]})
        assert "may register only node 'nk-calls'" in impostor.message
        forbidden(rpc, "node.register", {"name": "nk-calls",
                                         "ssh": {"user": "root", "port": 22}})
        forbidden(rpc, "node.register", {"name": "nk-ghost"})
    finally:
        rpc.close()

    # nothing changed
    assert rows(bus, "SELECT COUNT(*) AS n FROM tasks")[0]["n"] == tasks_before
    assert not rows(bus, "SELECT id FROM tasks WHERE payload LIKE '%nk-pwned%'")
    assert rows(bus, "SELECT COUNT(*) AS n FROM tokens")[0]["n"] == tokens_before
    assert rows(bus, "SELECT COUNT(*) AS n FROM ssh_audit")[0]["n"] == ssh_before
    assert rows(bus, "SELECT name FROM users") == users_before
    assert stable(node_row(bus, "alpha")) == alpha_before
    assert bus.node("alpha")["drained"] is False and bus.node("alpha")["hostname"] != "evil"
    assert node_row(bus, "nk-ghost") is None and bus.node("nk-ghost") is None
    assert node_row(bus, "nk-calls")["ssh"] in (None, "null")
    keys_after = keys_listing(bus)
    assert "nk-pending" in keys_after["pending"] and "nk-pending" not in keys_after["authorized"]
    assert keys_after["roles"]["nk-calls"] == "node"
    assert (bus.tmp / "data" / "keys" / "pending" / "nk-pending.key").exists()

    # every refusal is on disk in the audit, with who, role and outcome; no secret in it
    audit = rows(bus, "SELECT * FROM audit WHERE id > ? AND who = 'nk-calls' ORDER BY id",
                 (audit_before,))
    refused = [r for r in audit if r["outcome"] == "forbidden"]
    expected = Counter([m for m, _, _ in calls] + ["node.register"] * 3)
    assert Counter(r["method"] for r in refused) == expected, [r["method"] for r in refused]
    assert all(r["role"] == "node" and r["via"] == "nk-calls" and r["addr"] == "127.0.0.1"
               for r in refused), refused
    assert not any("intruder-password" in (r["params"] or "") for r in audit)
    assert all(json.loads(r["params"])["password"] == "[redacted]" for r in refused
               if r["method"] == "users.add")
    assert {r["target"] for r in refused if r["method"] == "node.remove"} == {"alpha"}
    assert not [r for r in audit if r["outcome"] == "ok" and r["method"] != "node.register"]
    stats_after = counters(bus)
    assert stats_after["forbidden"] - stats_before["forbidden"] >= len(calls)
    # the registration under alpha's name: counted and alerted
    assert stats_after["identity_rejected"] - stats_before["identity_rejected"] >= 2
    assert {a["node_name"] for a in security_alerts(bus, "nk-calls")} == {"alpha", "nk-ghost"}


def test_a_node_key_cannot_listen_to_events(bus):
    """ZAP: node keys may not connect to the events socket; a viewer key may."""
    sockets = []
    try:
        for name, role in (("nk-events", None), ("vk-events", "viewer")):
            sub = make_socket(zmq.SUB, curve=node_key(bus, name, role))
            sub.setsockopt(zmq.SUBSCRIBE, b"node.alpha.")
            sub.connect(bus.endpoints.events)
            sockets.append(sub)
        node_sub, viewer_sub = sockets

        def viewer_heard():
            bus.rpc("node.drain", {"node": "alpha"})
            bus.rpc("node.undrain", {"node": "alpha"})
            return viewer_sub.poll(200)
        wait_for(viewer_heard, 15, what="the viewer key to receive node.alpha events")
        assert viewer_sub.recv_multipart()[0].startswith(b"node.alpha.")
        for _ in range(3):
            viewer_heard()
        assert not node_sub.poll(300), "a node key received events"
    finally:
        for s in sockets:
            s.close(0)
        bus.rpc("node.undrain", {"node": "alpha"})


# --- heartbeats and worker hellos under another node's name ----------------------------------
def test_heartbeats_under_another_name_are_refused_and_alerted_once(bus):
    key = node_key(bus, "nk-beats")
    pub = make_socket(zmq.PUB, curve=key)
    pub.connect(bus.endpoints.heartbeat)
    try:
        def beat(name, cpu):
            pub.send(encode(Heartbeat(name=name, ts=time.time(),
                                      metrics={**CALM, "cpu_percent": cpu})))

        def own_beat_seen(cpu):
            beat("nk-beats", cpu)
            node = bus.node("nk-beats")
            return node is not None and node["metrics"].get("cpu_percent") == cpu
        # its own name works: the connection is up and the key is heard
        wait_for(lambda: own_beat_seen(12.5), 15, interval=0.1, what="nk-beats's own heartbeat")
        alpha_before = stable(node_row(bus, "alpha"))
        before = counters(bus)
        spoofs = 40
        for _ in range(spoofs):
            beat("alpha", 99.9)
            beat("nk-ghost-beats", 99.9)
        # messages on one connection arrive in order: once this is seen, all were handled
        wait_for(lambda: own_beat_seen(13.5), 15, interval=0.1, what="the marker heartbeat")
        after = counters(bus)
    finally:
        pub.close(0)
    assert after["identity_rejected"] - before["identity_rejected"] == 2 * spoofs
    assert after["heartbeats_rejected"] - before["heartbeats_rejected"] == 2 * spoofs
    assert bus.node("nk-ghost-beats") is None and node_row(bus, "nk-ghost-beats") is None
    alpha = bus.node("alpha")
    assert alpha["metrics"]["cpu_percent"] == CALM["cpu_percent"], alpha["metrics"]
    assert alpha["status"] == "healthy"
    assert stable(node_row(bus, "alpha")) == alpha_before
    assert not rows(bus, "SELECT m.id FROM metrics m JOIN nodes n ON n.id = m.node_id "
                         "WHERE n.name = 'alpha' AND m.cpu_percent > 90")
    # exactly one security alert per (key, name claimed), however many heartbeats
    alerts = security_alerts(bus, "nk-beats")
    assert Counter(a["node_name"] for a in alerts) == {"alpha": 1, "nk-ghost-beats": 1}, alerts
    assert all(a["status"] == "active" and a["level"] == "critical" for a in alerts)
    on_disk = rows(bus, "SELECT * FROM alerts WHERE kind = 'security' AND source = 'nk-beats'")
    assert sorted(r["node_name"] for r in on_disk) == ["alpha", "nk-ghost-beats"]
    active = {a["id"] for a in bus.rpc("alert.list") if a.get("source") == "nk-beats"}
    assert active == {a["id"] for a in alerts}


def _ready(worker_id: str, node: str) -> bytes:
    return encode(WorkerReady(worker_id=worker_id, node=node, slots=4,
                              task_types=["shell", "python"], hostname="spoof", pid=1))


def test_a_worker_hello_under_another_name_is_rejected_and_gets_no_task(bus):
    """Node alpha's own key, a worker saying it is bravo (and a node that does not exist)."""
    alpha_key = key_of(bus, "alpha")
    socks = []
    before = counters(bus)
    workers_before = {w["id"]: w["node"] for w in bus.rpc("worker.list")}
    bravo_before = stable(node_row(bus, "bravo"))
    try:
        for wid, claimed in (("spoof-bravo-1", "bravo"), ("spoof-ghost-1", "nk-ghost-worker")):
            dealer = make_socket(zmq.DEALER, max_msg_size=-1, curve=alpha_key)
            dealer.setsockopt(zmq.ROUTING_ID, wid.encode())
            dealer.connect(bus.endpoints.work)
            socks.append(dealer)
        for _ in range(5):
            socks[0].send(_ready("spoof-bravo-1", "bravo"))
            socks[1].send(_ready("spoof-ghost-1", "nk-ghost-worker"))
        wait_for(lambda: counters(bus)["identity_rejected"] - before["identity_rejected"] >= 10,
                 10, what="the spoofed hellos to be refused")
        # tasks, some pinned to bravo: all run on the real workers, none reach the spoofs
        ids = [bus.submit(payload={"command": f"echo spoof-check-{i}"},
                          **({"node": "bravo"} if i % 2 else {})) for i in range(6)]
        done = [bus.wait_task(i) for i in ids]
        got = [decode(sock.recv(), 1 << 20, trusted=True) for sock in socks if sock.poll(300)]
    finally:
        for s in socks:
            s.close(0)
    assert got == [], f"a spoofed worker was sent {got}"
    assert all(t["status"] == "succeeded" and t["worker_id"] in workers_before for t in done)
    assert {t["assigned_node"] for t in done} <= {"alpha", "bravo"}
    assert all(t["assigned_node"] == "bravo" for i, t in enumerate(done) if i % 2)
    after = counters(bus)
    assert after["work_rejected"] - before.get("work_rejected", 0) >= 10
    assert {w["id"]: w["node"] for w in bus.rpc("worker.list")} == workers_before
    assert bus.node("nk-ghost-worker") is None and node_row(bus, "nk-ghost-worker") is None
    assert stable(node_row(bus, "bravo")) == bravo_before
    claims = Counter(a["node_name"] for a in security_alerts(bus, "alpha"))
    assert claims == {"bravo": 1, "nk-ghost-worker": 1}, claims


# --- an operator key ----------------------------------------------------------------------
def test_an_operator_key_runs_tasks_but_does_not_manage_keys(bus):
    key = node_key(bus, "ok-oper")
    rpc = rpc_as(bus, key)
    pending_pub, _ = zmq.curve_keypair()
    assert join(bus, "ok-pending", pending_pub).status_code == 202
    try:
        forbidden(rpc, "task.submit", {"task_type": "shell", "payload": {"command": "echo op"}})
        bus.cli("keys", "role", "ok-oper", "operator")
        assert keys_listing(bus)["roles"]["ok-oper"] == "operator"
        # the same connection: the new role counts from the next request
        submitted = rpc.call("task.submit", {"task_type": "shell",
                                             "payload": {"command": "echo by-operator"}})
        task = bus.wait_task(submitted["id"])
        assert task["status"] == "succeeded" and task["result"]["stdout"] == "by-operator\n"
        assert rows(bus, "SELECT status FROM tasks WHERE id = ?",
                    (submitted["id"],)) == [{"status": "succeeded"}]
        assert any(n["name"] == "alpha" for n in rpc.call("node.list"))   # reads too
        forbidden(rpc, "keys.accept", {"name": "ok-pending"})
        forbidden(rpc, "keys.role", {"name": "ok-oper", "role": "admin"})
        forbidden(rpc, "node.remove", {"node": "alpha"})
        forbidden(rpc, "users.add", {"name": "op-user", "role": "viewer",
                                     "password": "op-user-pass"})
        listing = keys_listing(bus)
        assert "ok-pending" in listing["pending"] and listing["roles"]["ok-oper"] == "operator"
        assert bus.node("alpha") is not None and not rows(bus, "SELECT * FROM users "
                                                               "WHERE name = 'op-user'")
        audit = rows(bus, "SELECT method, outcome, role FROM audit WHERE who = 'ok-oper' "
                          "ORDER BY id")
        assert ("task.submit", "ok", "operator") in [tuple(r.values()) for r in audit]
        assert ("keys.accept", "forbidden", "operator") in [tuple(r.values()) for r in audit]
        # and back to node: refused again at once
        bus.cli("keys", "role", "ok-oper", "node")
        forbidden(rpc, "task.submit", {"task_type": "shell", "payload": {"command": "echo op"}})
    finally:
        rpc.close()


# --- join tokens --------------------------------------------------------------------------
def _mint(cluster: Cluster, *args: str) -> dict:
    return cluster.cli_json("keys", "token", *args)


def test_a_join_token_with_one_use_lets_one_node_in(bus):
    token = _mint(bus, "--uses", "1")
    assert token["token"].startswith("archjoin_") and token["uses_left"] == 1
    first, second = zmq.curve_keypair()[0], zmq.curve_keypair()[0]
    one = join(bus, "jt-one", first, token["token"])
    assert one.status_code == 200 and one.json()["status"] == "authorized", one.text
    assert one.json()["role"] == "node" and "token" not in one.json()
    two = join(bus, "jt-two", second, token["token"])
    assert two.status_code == 202 and two.json()["status"] == "pending", two.text
    assert two.json()["token"] == "token used up"
    listing = keys_listing(bus)
    assert "jt-one" in listing["authorized"] and listing["roles"]["jt-one"] == "node"
    assert "jt-two" in listing["pending"] and "jt-two" not in listing["authorized"]
    row = rows(bus, "SELECT * FROM tokens WHERE id = ?", (token["id"],))[0]
    assert (row["kind"], row["uses_left"], row["used_count"]) == ("join", 0, 1)
    assert row["token_hash"] != token["token"] and token["token"] not in json.dumps(row)
    # the audit of the joins never holds the token
    audit = rows(bus, "SELECT params FROM audit WHERE method = 'keys.join'")
    assert audit and not any(token["token"] in (r["params"] or "") for r in audit)


def test_a_used_up_token_leaves_a_real_worker_pending(bus):
    token = _mint(bus, "--uses", "1")["token"]
    start_node(bus, "jt-proc-1", token, agent=False)
    wait_for(lambda: any(w["node"] == "jt-proc-1" for w in bus.rpc("worker.list")), 30,
             what="the first worker on the bus")
    start_node(bus, "jt-proc-2", token, agent=False)
    wait_for(lambda: "jt-proc-2" in keys_listing(bus)["pending"], 30,
             what="the second worker pending")
    wait_for(lambda: "pending" in bus.log("worker-jt-proc-2"), 15,
             what="the second worker to say it is pending")
    assert not any(w["node"] == "jt-proc-2" for w in bus.rpc("worker.list"))
    assert "jt-proc-2" not in keys_listing(bus)["authorized"]
    assert bus.node("jt-proc-2") is None
    bus.kill("worker-jt-proc-1")
    bus.kill("worker-jt-proc-2")


def test_expired_revoked_and_unknown_tokens_leave_the_node_pending(bus):
    expiring = _mint(bus, "--ttl", "1s")
    revoked = _mint(bus, "--uses", "5")
    bus.cli("tokens", "revoke", str(revoked["id"]))
    wait_for(lambda: time.time() > expiring["expires_at"] + 0.05, 5, what="the token to expire")
    for name, token, why in (("jt-expired", expiring["token"], "token expired"),
                             ("jt-revoked", revoked["token"], "token revoked"),
                             ("jt-unknown", "archjoin_" + "x" * 43, "unknown token"),
                             ("jt-apitoken", bus.cli_json("tokens", "create", "--role",
                                                          "admin")["token"], "unknown token")):
        answer = join(bus, name, zmq.curve_keypair()[0], token)
        assert answer.status_code == 202, (name, answer.text)
        assert answer.json()["status"] == "pending" and answer.json()["token"] == why, answer.text
    listing = keys_listing(bus)
    assert {"jt-expired", "jt-revoked", "jt-unknown", "jt-apitoken"} <= set(listing["pending"])
    assert not {"jt-expired", "jt-revoked", "jt-unknown",
                "jt-apitoken"} & set(listing["authorized"])
    assert rows(bus, "SELECT used_count FROM tokens WHERE id IN (?, ?)",
                (expiring["id"], revoked["id"])) == [{"used_count": 0}, {"used_count": 0}]


def test_the_shared_join_token_still_works(bus):
    # alpha and bravo joined with it (agent and worker each); two more nodes now
    for name in ("jt-shared-1", "jt-shared-2"):
        answer = join(bus, name, zmq.curve_keypair()[0], SHARED)
        assert answer.status_code == 200 and answer.json()["status"] == "authorized", answer.text
    listing = keys_listing(bus)
    assert {"alpha", "bravo", "jt-shared-1", "jt-shared-2"} <= set(listing["authorized"])
    assert all(listing["roles"][n] == "node" for n in ("alpha", "bravo", "jt-shared-1"))
    # a wrong shared token is just unknown
    assert join(bus, "jt-shared-x", zmq.curve_keypair()[0], SHARED + "x").json()["token"] == \
        "unknown token"


def test_a_join_token_counts_nodes_not_processes(bus):
    token = _mint(bus, "--uses", "2")["token"]
    first = zmq.curve_keypair()[0]
    # node 1: its agent joins, then its worker (same key, same name), then the agent restarts
    for _ in range(3):
        answer = join(bus, "jt-n1", first, token)
        assert answer.json()["status"] == "authorized", answer.text
    second = join(bus, "jt-n2", zmq.curve_keypair()[0], token)
    assert second.json()["status"] == "authorized", second.text


# --- one key, one name ------------------------------------------------------------------------
def test_a_key_authorized_under_one_name_cannot_join_under_another(bus):
    victim = node_key(bus, "dk-victim")
    try:
        answer = join(bus, "dk-copy", victim["public"], SHARED)
        assert answer.status_code == 409, answer.text
        assert "dk-copy" not in keys_listing(bus)["authorized"]
    finally:
        if "dk-copy" in keys_listing(bus)["authorized"]:
            bus.cli("keys", "revoke", "dk-copy")


def test_a_second_join_request_does_not_replace_a_pending_key(bus):
    legit, other = zmq.curve_keypair()[0], zmq.curve_keypair()[0]
    assert join(bus, "pk-node", legit).status_code == 202
    second = join(bus, "pk-node", other)
    assert second.status_code in (202, 409), second.text
    bus.cli("keys", "accept", "pk-node")
    authorized = zmq.auth.load_certificate(
        bus.tmp / "data" / "keys" / "authorized" / "pk-node.key")[0]
    assert authorized == legit, "the key accepted is not the one the node sent first"


# --- a key whose name is used again ---------------------------------------------------------
def test_a_revoked_key_stays_out_when_its_name_is_authorized_again(bus):
    old = node_key(bus, "rk-reused")
    pub = make_socket(zmq.PUB, curve=old)
    pub.connect(bus.endpoints.heartbeat)
    control = make_socket(zmq.DEALER, max_msg_size=-1, curve=old)   # kept open throughout
    control.connect(bus.endpoints.control)
    try:
        def beat(cpu):
            pub.send(encode(Heartbeat(name="rk-reused", ts=time.time(),
                                      metrics={**CALM, "cpu_percent": cpu})))

        def request(method, n):
            control.send(encode(Request(id=f"rk-{n}", method=method, params={})))

        def answered_or_dropped(n):
            """'answered' when the broker replied to request n, 'dropped' when it counted it
            as a message of a key that is not authorized."""
            start = counters(bus).get("revoked_dropped", 0)
            request("keys.list", n)

            def outcome():
                if control.poll(50):
                    return "answered"
                return "dropped" if counters(bus).get("revoked_dropped", 0) > start else None
            return wait_for(outcome, 5, what=f"request {n} answered or dropped")

        def beats_dropped_or_heard(cpu, count=20):
            start = counters(bus).get("revoked_dropped", 0)
            for _ in range(count):
                beat(cpu)

            def outcome():
                if bus.node("rk-reused")["metrics"]["cpu_percent"] == cpu:
                    return "heard"
                dropped = counters(bus).get("revoked_dropped", 0) - start >= count
                return "dropped" if dropped else None
            return wait_for(outcome, 5, what="the heartbeats heard or dropped")

        wait_for(lambda: beat(11.0) or ((n := bus.node("rk-reused")) and
                                         n["metrics"]["cpu_percent"] == 11.0),
                 15, interval=0.1, what="the old key heard")
        request("ping", 0)
        assert control.poll(5000), "the key's control connection is not up"
        control.recv()
        bus.cli("keys", "revoke", "rk-reused")
        assert answered_or_dropped(1) == "dropped"
        assert beats_dropped_or_heard(22.0) == "dropped"
        # the name is given to a new machine with a new key, and that key made admin
        new_public, _ = zmq.curve_keypair()
        assert join(bus, "rk-reused", new_public, login=True).json()["status"] == "authorized"
        bus.cli("keys", "role", "rk-reused", "admin")
        assert answered_or_dropped(2) == "dropped", \
            "the revoked key's open connection called keys.list with the new key's admin role"
        assert beats_dropped_or_heard(33.0) == "dropped", \
            "the revoked key's heartbeats count again"
    finally:
        pub.close(0)
        control.close(0)


# --- a worker routing id taken over by another key ------------------------------------------
def test_another_key_cannot_take_over_a_workers_route(bus):
    bravo_worker = next(w for w in bus.rpc("worker.list") if w["node"] == "bravo")
    thief = make_socket(zmq.DEALER, max_msg_size=-1, curve=node_key(bus, "nk-thief"))
    thief.setsockopt(zmq.ROUTING_ID, bravo_worker["id"].encode())
    thief.connect(bus.endpoints.work)
    got, ids = [], []
    try:
        # a pinned task every 0.3 s while the thief's connection comes up (it sends nothing):
        # stop early once it has been handed one
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not any(
                type(m).__name__ == "TaskAssign" for m in got):
            ids.append(bus.submit(payload={"command": "echo SECRET=route-thief"}, node="bravo"))
            while time.monotonic() < deadline and thief.poll(100):
                got.append(decode(thief.recv(), 1 << 20, trusted=True))
    finally:
        thief.close(0)
    tasks = [bus.wait_task(i, timeout=30) for i in ids]
    stolen = [m for m in got if type(m).__name__ == "TaskAssign"]
    assert stolen == [], f"another key received bravo's task: {stolen}"
    assert all(t["status"] == "succeeded" and t["attempt"] == 1 for t in tasks), tasks


def test_the_broker_took_all_that_without_a_restart(bus):
    stats = bus.rpc("cluster.stats")
    assert stats["pid"] == bus.procs["server"].pid and bus.procs["server"].poll() is None
    assert stats["counters"]["persist_errors"] == 0
    conn = db(bus)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    # every task submitted in this module is final
    assert not rows(bus, "SELECT id, status FROM tasks WHERE status NOT IN "
                         "('succeeded', 'failed', 'timed_out', 'cancelled')")


# --- revocation -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    cluster = start_secured(tmp_path_factory.mktemp("revoke"), nodes=("ra", "rb"), timeout=2.0)
    try:
        yield cluster
    finally:
        cluster.stop_all()


def test_revoking_a_key_cuts_its_worker_off_and_its_task_runs_elsewhere(pair):
    workers = {w["node"]: w["id"] for w in pair.rpc("worker.list")}
    assert set(workers) == {"ra", "rb"}
    pair.rpc("node.drain", {"node": "rb"})           # so the task lands on ra
    task_id = pair.submit(payload={"command": "sleep 3; echo done"}, max_attempts=3)
    running = wait_for(lambda: (t := pair.rpc("task.get", {"id": task_id}))["status"] ==
                       "running" and t, 15, what="the task running")
    assert running["assigned_node"] == "ra" and running["attempt"] == 1
    pair.rpc("node.undrain", {"node": "rb"})
    before = counters(pair)

    out = pair.cli("keys", "revoke", "ra")
    assert "ra" in out.stdout
    # at once: ra's worker is gone, the key is no longer authorized
    assert [w["node"] for w in pair.rpc("worker.list")] == ["rb"]
    assert "ra" not in pair.cli_json("keys", "list")["authorized"]

    task = pair.wait_task(task_id, timeout=30)
    assert task["status"] == "succeeded", task
    assert task["assigned_node"] == "rb" and task["attempt"] == 2, task
    assert task["worker_id"] == workers["rb"] and task["result"]["stdout"] == "done\n"
    events = rows(pair, "SELECT event, attempt, node, detail FROM task_events "
                        "WHERE task_id = ? ORDER BY id", (task_id,))
    requeued = [e for e in events if e["event"] == "queued" and e["attempt"] == 1 and
                "revoked" in (e["detail"] or "")]
    assert requeued, events

    # ra's agent keeps sending heartbeats: dropped; the node goes offline after the timeout
    ra = wait_for(lambda: (n := pair.node("ra"))["status"] == "offline" and n, 15,
                  what="ra offline")
    assert pair.procs["agent-ra"].poll() is None and pair.procs["worker-ra"].poll() is None
    seen = ra["last_seen"]
    dropped = counters(pair).get("revoked_dropped", 0)
    wait_for(lambda: counters(pair).get("revoked_dropped", 0) >= dropped + 5, 10,
             what="more of ra's messages dropped")
    assert pair.node("ra")["status"] == "offline" and pair.node("ra")["last_seen"] == seen
    assert counters(pair)["revoked_dropped"] > before.get("revoked_dropped", 0)

    # the revoked worker was told to stop; its late result (if any) changes nothing
    wait_for(lambda: f"cancelling task {task_id}/1" in pair.log("worker-ra"), 10,
             what="ra's worker told to cancel")
    wait_for(lambda: counters(pair).get("revoked_dropped", 0) >= dropped + 10, 10,
             what="still more of ra's messages dropped")
    again = pair.rpc("task.get", {"id": task_id})
    assert {k: again[k] for k in ("status", "attempt", "assigned_node", "worker_id", "result")} \
        == {k: task[k] for k in ("status", "attempt", "assigned_node", "worker_id", "result")}
    final = rows(pair, "SELECT status, attempt, assigned_node FROM tasks WHERE id = ?",
                 (task_id,))
    assert final == [{"status": "succeeded", "attempt": 2, "assigned_node": "rb"}]
    # one run per attempt, the database intact, the same broker
    starts = [e for e in events if e["event"] == "running"]
    assert [e["attempt"] for e in starts] == [1, 2]
    assert pair.rpc("cluster.stats")["pid"] == pair.procs["server"].pid
    conn = db(pair)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
