"""Tier 2: broker control methods and events over real zmq sockets."""

import time

import pytest
import zmq

from architect.bus.codec import decode, encode
from architect.bus.errors import RemoteError
from architect.bus.messages import Heartbeat
from architect.bus.transport import make_socket
from tests.helpers import wait_for


def test_register_list_get_drain_remove(broker):
    node = broker.rpc.call("node.register", {"name": "w1", "hostname": "h1",
                                             "ip_address": "10.0.0.1", "capabilities": ["b", "a", "a"]})
    assert node["created"] is True and node["id"] == 1 and node["capabilities"] == ["a", "b"]
    again = broker.rpc.call("node.register", {"name": "w1", "capabilities": ["c"]})
    assert again["created"] is False and again["id"] == 1 and again["hostname"] == "h1"
    assert [n["name"] for n in broker.rpc.call("node.list")] == ["w1"]
    assert broker.rpc.call("node.get", {"node": 1})["name"] == "w1"
    assert broker.rpc.call("node.get", {"node": "1"})["name"] == "w1"
    assert broker.rpc.call("node.drain", {"node": "w1"})["drained"] is True
    assert broker.rpc.call("node.undrain", {"node": "w1"})["drained"] is False
    assert broker.rpc.call("node.remove", {"node": "w1"})["removed"] == "w1"
    with pytest.raises(RemoteError) as err:
        broker.rpc.call("node.get", {"node": "w1"})
    assert err.value.code == "not_found"


@pytest.mark.parametrize("method,params,code", [
    ("node.register", {}, "bad_request"),
    ("node.register", {"name": "has space"}, "bad_request"),
    ("node.register", {"name": "x", "capabilities": "docker"}, "bad_request"),
    ("node.register", {"name": "x", "capabilities": [1, 2]}, "bad_request"),
    ("node.register", {"name": 5}, "bad_request"),
    ("node.get", {"node": True}, "bad_request"),
    ("node.get", {"node": 999}, "not_found"),
    ("alert.ack", {"id": "x"}, "bad_request"),
    ("alert.ack", {"id": 12345}, "not_found"),
    ("alert.list", {"limit": 0}, "bad_request"),
    ("no.such.method", {}, "unknown_method"),
    ("__init__", {}, "unknown_method"),
])
def test_bad_requests_get_clear_errors(broker, method, params, code):
    with pytest.raises(RemoteError) as err:
        broker.rpc.call(method, params)
    assert err.value.code == code and err.value.message
    assert broker.rpc.call("ping")["pong"] is True


def test_heartbeat_registers_grades_and_goes_offline(broker):
    pub = make_socket(zmq.PUB)
    pub.connect(broker.endpoints.heartbeat)
    sub = make_socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"node.hb1.")
    sub.connect(broker.endpoints.events)
    try:
        def send(cpu):
            pub.send(encode(Heartbeat(name="hb1", ts=time.time(), hostname="host",
                                      metrics={"cpu_percent": cpu, "memory_percent": 1.0})))

        def status():
            send(50.0)
            nodes = broker.rpc.call("node.list")
            return nodes and nodes[0]["status"] == "healthy"
        wait_for(status, 5, what="heartbeat registers the node")
        for _ in range(3):   # the hysteresis: three samples in a row (health_samples)
            send(99.0)
        wait_for(lambda: broker.rpc.call("node.get", {"node": "hb1"})["status"] == "critical", 3,
                 what="critical")
        alerts = broker.rpc.call("alert.list")
        assert alerts[0]["level"] == "critical" and alerts[0]["node_name"] == "hb1"
        acked = broker.rpc.call("alert.ack", {"id": alerts[0]["id"], "by": "me"})
        assert acked["acknowledged_by"] == "me"
        # no more heartbeats: offline after the 1 s timeout
        wait_for(lambda: broker.rpc.call("node.get", {"node": "hb1"})["status"] == "offline", 4,
                 what="offline")
        topics = set()
        while sub.poll(200):
            topic, payload = sub.recv_multipart()
            assert decode(payload).topic == topic.decode()
            topics.add(topic.decode())
        assert {"node.hb1.critical", "node.hb1.offline"} <= topics
        summary = broker.rpc.call("health.summary")
        assert summary["counts"]["offline"] == 1
        stats = broker.rpc.call("cluster.stats")
        assert stats["counters"]["heartbeats"] >= 2 and stats["alerts"]["active"] == 1
    finally:
        pub.close(0)
        sub.close(0)


def test_bad_heartbeat_metrics_are_rejected_and_counted(broker):
    pub = make_socket(zmq.PUB)
    pub.connect(broker.endpoints.heartbeat)
    try:
        def rejected():
            pub.send(encode(Heartbeat(name="bad", ts=1.0, metrics={"cpu_percent": "high"})))
            pub.send(encode(Heartbeat(name="bad name", ts=1.0, metrics={})))
            return broker.rpc.call("cluster.stats")["counters"]["heartbeats_rejected"] >= 2
        wait_for(rejected, 5, what="rejected heartbeats counted")
        assert broker.rpc.call("node.list") == []
    finally:
        pub.close(0)
