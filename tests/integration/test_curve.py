"""S2: a secured bus (CURVE). Clients without the broker's trust reach none of its logic;
nodes join through the dashboard as pending, or at once with the web login."""

import os
import time

import pytest
import requests
import zmq

from architect.bus.codec import encode
from architect.bus.messages import Heartbeat, Request
from architect.bus.transport import make_socket
from tests.helpers import free_port_block, wait_for

pytestmark = pytest.mark.slow
LOGIN = ("admin", "pa55word")


@pytest.fixture
def secured(cluster):
    cluster.env.update({"ARCHITECT_BUS_CURVE": "on", "ARCHITECT_USER": LOGIN[0],
                        "ARCHITECT_PASSWORD": LOGIN[1]})
    port = free_port_block(1)
    cluster.web = f"http://127.0.0.1:{port}"
    cluster.spawn("server", "server", "--port", str(port))
    wait_for(lambda: requests.get(f"{cluster.web}/healthz", timeout=1).status_code == 200, 30,
             what="server up")
    return cluster


def test_untrusted_clients_reach_nothing(secured):
    before = secured.rpc("cluster.stats")["counters"]
    socks = []
    try:
        plain = make_socket(zmq.DEALER)
        plain.connect(secured.endpoints.control)
        stranger_pub, stranger_sec = zmq.curve_keypair()
        server_key = requests.get(f"{secured.web}/api/bus").json()["server_key"].encode()
        stranger = make_socket(zmq.DEALER, curve={"public": stranger_pub, "secret": stranger_sec,
                                                  "server": server_key})
        stranger.connect(secured.endpoints.control)
        pub = make_socket(zmq.PUB, curve={"public": stranger_pub, "secret": stranger_sec,
                                          "server": server_key})
        pub.connect(secured.endpoints.heartbeat)
        socks += [plain, stranger, pub]
        for sock in (plain, stranger):
            try:  # once the broker has refused the handshake there is no pipe to queue on
                sock.send(encode(Request(id=1, method="node.register",
                                         params={"name": "intruder"})), zmq.NOBLOCK)
            except zmq.Again:
                continue  # refused before a frame could even leave: nothing got through
            assert not sock.poll(1500), "an untrusted client got an answer"
        for _ in range(10):
            pub.send(encode(Heartbeat(name="intruder", ts=time.time(), metrics={})))
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        for s in socks:
            s.close(0)
    after = secured.rpc("cluster.stats")["counters"]
    assert after["heartbeats"] == before["heartbeats"]
    assert after["protocol_errors"] == before["protocol_errors"]
    assert after["requests"] == before["requests"] + 1  # only this test's own stats call
    assert secured.node("intruder") is None


def test_node_joins_pending_then_accepted_and_login_joins_at_once(secured, tmp_path):
    no_login = {"ARCHITECT_USER": "", "ARCHITECT_PASSWORD": "",
                "ARCHITECT_STATE_DIR": str(tmp_path / "node-a")}
    secured.spawn("agent-a", "agent", "--dashboard", secured.web, "--name", "node-a",
                  env=no_login)
    keys = wait_for(lambda: "node-a" in (k := secured.cli_json("keys", "list"))["pending"] and k,
                    15, what="node-a pending")
    assert "local" in keys["authorized"]
    time.sleep(1.0)
    assert secured.node("node-a") is None, "a pending node got through"
    assert "accepted" not in secured.log("agent-a")
    secured.cli("keys", "accept", "node-a")
    wait_for(lambda: (n := secured.node("node-a")) and n["status"] == "healthy", 20,
             what="node-a on the bus after accept, without a restart")
    # with the web login: in at once, and tasks run over the secured work socket
    secured.spawn("worker-b", "worker", "--dashboard", secured.web, "--name", "node-b",
                  env={"ARCHITECT_STATE_DIR": str(tmp_path / "node-b")})
    secured.wait_workers(1)
    assert "node-b" in secured.cli_json("keys", "list")["authorized"]
    task = secured.wait_task(secured.submit(payload={"command": "echo secured"}))
    assert task["status"] == "succeeded" and task["result"]["stdout"] == "secured\n"
    # revoke: its new connections are refused
    secured.cli("keys", "revoke", "node-a")
    assert "node-a" not in secured.cli_json("keys", "list")["authorized"]


def test_join_validation_and_token(secured, tmp_path):
    bad = requests.post(f"{secured.web}/api/bus/join", json={"name": "x", "public_key": "short"})
    assert bad.status_code == 400 and "public_key" in bad.json()["error"]["message"]
    pub, _ = zmq.curve_keypair()
    pending = requests.post(f"{secured.web}/api/bus/join",
                            json={"name": "tok", "public_key": pub.decode(), "token": "wrong"})
    assert pending.status_code == 202 and pending.json()["status"] == "pending"
    listed = requests.get(f"{secured.web}/api/keys", auth=LOGIN).json()
    assert "tok" in listed["pending"]
    assert requests.get(f"{secured.web}/api/keys").status_code == 401
    accepted = requests.post(f"{secured.web}/api/keys/tok/accept", auth=LOGIN)
    assert accepted.status_code == 200 and accepted.json()["status"] == "authorized"
