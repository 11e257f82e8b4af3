"""B2: garbage, oversized frames and wrong frame counts at every broker socket. The broker
process stays up (same pid) and keeps serving a valid client."""

import os
import socket

import msgpack
import pytest
import zmq

from architect.bus.codec import decode
from architect.bus.transport import make_socket
from tests.helpers import wait_for

pytestmark = pytest.mark.slow

GARBAGE = [b"", b"\x00", b"\xff" * 100, b"\xc1", os.urandom(4096),
           msgpack.packb([1, 2, 3]), msgpack.packb({"v": 1, "type": "heartbeat"}),
           msgpack.packb({"v": 99, "type": "request", "id": 1, "method": "ping"}),
           msgpack.packb({"v": 1, "type": "reply", "id": 1, "ok": True}),
           msgpack.packb({"v": 1, "type": "request", "id": 1, "method": "ping", "params": [1]}),
           msgpack.packb({"v": 1, "type": "request", "id": 1, "method": 7}),
           msgpack.packb(msgpack.ExtType(5, b"x")),
           msgpack.packb({"v": 1, "type": "request", "id": {"a": [1] * 10}, "method": "ping"}),
           b"\xdd\xff\xff\xff\xff"]  # array header claiming 4 billion items


def alive(cluster, pid):
    stats = cluster.rpc("cluster.stats", timeout=3)
    return stats["pid"] == pid and stats


def test_garbage_everywhere(cluster):
    cluster.start_broker()
    pid = cluster.rpc("cluster.stats")["pid"]
    e = cluster.endpoints
    socks = []
    try:
        # heartbeat socket: single frames, multi-frame, oversized
        pub = make_socket(zmq.PUB, max_msg_size=-1)
        pub.connect(e.heartbeat)
        socks.append(pub)
        # control socket: as DEALER, as REQ-like (with delimiter), odd frame counts, oversized
        dealer = make_socket(zmq.DEALER, max_msg_size=-1)
        dealer.connect(e.control)
        socks.append(dealer)
        wait_for(lambda: alive(cluster, pid), 5)
        for _ in range(3):  # PUB needs the subscription to arrive: repeat
            for frame in GARBAGE:
                pub.send(frame)
                dealer.send(frame)
                dealer.send_multipart([b"", frame])
            pub.send_multipart([b"a", b"b", b"c"])
            dealer.send_multipart([b"x", b"y", b"z", b"w"])
            dealer.send_multipart([b"x", b"", b"y"])
        # errors come back as protocol_error replies where there is a peer
        replies = []
        while dealer.poll(500):
            replies.append(dealer.recv_multipart())
        decoded = [decode(r[-1]) for r in replies]
        codes = {r.error["code"] for r in decoded if not r.ok}
        assert "protocol_error" in codes and codes <= {"protocol_error", "bad_request"}, codes
        # only the one well-formed request (a map as id is allowed) succeeds
        assert all(r.id == {"a": [1] * 10} for r in decoded if r.ok)
        big = b"\x00" * (2 << 20)  # 2 MiB > MAXMSGSIZE: libzmq drops the peer
        pub.send(big)
        dealer.send(big)
        # raw TCP garbage straight at every port (not even ZMTP)
        for port in range(cluster.base_port, cluster.base_port + 4):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                    raw.sendall(b"GET / HTTP/1.1\r\n\r\n" + os.urandom(8192))
            except OSError:
                pass  # the work port is not bound yet
        stats = wait_for(lambda: alive(cluster, pid), 10, what="broker still answering")
        assert stats["counters"]["protocol_errors"] >= len(GARBAGE)
        # the events socket: a subscriber still gets events
        sub = make_socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"node.")
        sub.connect(e.events)
        socks.append(sub)

        def event_seen():
            cluster.rpc("node.register", {"name": "after-garbage"})
            return sub.poll(200)
        wait_for(event_seen, 10, what="an event after the garbage")
        assert cluster.node("after-garbage")
    finally:
        for s in socks:
            s.close(0)
    assert cluster.procs["broker"].poll() is None, cluster.log("broker")
    assert "Traceback" not in cluster.log("broker")
