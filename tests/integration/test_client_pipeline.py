"""Client.submit_async / flush: submits sent without waiting for each reply, durable when
their handles resolve, in order, with a refused one reported in its place; and the raw
protocol with several requests in flight on one DEALER."""

from __future__ import annotations

import pytest

from architect.bus.rpc import RpcClient
from architect.client import Client, RequestRejected
from tests.helpers import db_rows

pytestmark = pytest.mark.slow


@pytest.fixture
def client(cluster):
    """A broker, one worker with 4 slots, and a client on the control socket."""
    cluster.start_broker()
    cluster.start_worker("p1", "-c", "4")
    cluster.wait_workers(1)
    client = Client(control_endpoint=cluster.endpoints.control, timeout=10)
    yield client
    client.close()


def test_submit_async_then_flush(cluster, client):
    handles = [client.submit_async("shell", {"command": f"echo {i}"}) for i in range(300)]
    bad = client.submit_async("shell", {"command": ""}, timeout=-1)
    more = [client.submit_async("shell", {"command": "true"}) for _ in range(5)]
    with pytest.raises(RequestRejected) as refused:
        client.flush()
    assert refused.value.code == "bad_request" and bad.error is refused.value
    ids = [h.id for h in handles + more]            # every other one went in
    assert ids == sorted(ids) and len(set(ids)) == 305
    assert all(h.created for h in handles) and handles[0].done
    # durable once flush() returned: the database has every one of them
    rows = db_rows(cluster.tmp / "data" / "architect.db",
                   "SELECT COUNT(*) AS n FROM tasks WHERE id BETWEEN ? AND ?",
                   (ids[0], ids[-1]))
    assert rows[0]["n"] == 305
    done = client.wait(ids, timeout=60)
    assert all(t["status"] == "succeeded" for t in done)
    # an idempotency key still counts, in flight too
    a = client.submit_async("shell", {"command": "true"}, idempotency_key="pipe-1")
    b = client.submit_async("shell", {"command": "true"}, idempotency_key="pipe-1")
    assert a.id == b.id and a.created and not b.created
    # a synchronous call in between keeps the replies of those in flight
    c = client.submit_async("shell", {"command": "true"})
    assert client.get(ids[0])["id"] == ids[0]
    assert c.id > b.id and client.flush() == []
    # many rounds at the full in-flight limit: the broker drops no reply
    for _ in range(4):
        for _ in range(3000):
            client.submit_async("shell", {"command": "true"})
        client.flush()
    assert client.call("cluster.stats")["counters"].get("replies_dropped", 0) == 0


def test_raw_dealer_with_many_requests_in_flight(cluster):
    cluster.start_broker()
    rpc = RpcClient(cluster.endpoints.control, timeout=10)
    try:
        sent = [rpc.send("task.submit", {"task_type": "shell", "payload": {"command": "true"}})
                for _ in range(200)]
        sent.append(rpc.send("ping"))
        results = [rpc.receive(req_id) for req_id in reversed(sent)]  # any order
        assert results[0] is not None and rpc.in_flight == 0
        assert len({r["id"] for r in results[1:]}) == 200
    finally:
        rpc.close()


def test_waiting_one_at_a_time_asks_about_the_others_too(cluster, client):
    """wait(id) for tasks this client submitted: one task.wait (any) answers for every
    one of them that is final, so N waits take far fewer than N requests."""
    handles = [client.submit_async("shell", {"command": f"echo {i}"}) for i in range(200)]
    client.flush()
    ids = [h.id for h in handles]      # let them finish (asked on another connection)
    cluster.rpc("task.wait", {"ids": ids, "timeout": 30}, timeout=40)
    before = client.call("cluster.stats")["counters"]["requests"]
    tasks = [client.wait(h.id) for h in handles]
    after = client.call("cluster.stats")["counters"]["requests"]
    assert [t["id"] for t in tasks] == [h.id for h in handles]
    assert all(t["status"] == "succeeded" and t["final"] for t in tasks)
    assert "0" in tasks[0]["result"]["stdout"]
    asked = after - before - 1          # (the stats call itself)
    assert asked <= 2, f"{asked} requests for 200 waits"
    # the raw method: the final ones among ids, as soon as one is
    slow = client.submit("shell", {"command": "sleep 30"})["id"]
    quick = client.submit("shell", {"command": "true"})["id"]
    got = client.call("task.wait", {"ids": [slow, quick, quick], "any": True, "timeout": 20})
    assert [t["id"] for t in got] == [quick]
    assert client.call("task.wait", {"ids": [slow], "any": True, "timeout": 0.2}) == []
    client.cancel(slow)
