"""Tier 3: workflows (issue 13) with real processes: a 3-step chain passes results along; a
fan-out of 100 with a chord callback runs the callback once, after all 100; a failed
dependency cancels what depends on it, with the reason; unknown ids are a 400 naming them;
a broker kill -9 while tasks wait keeps them waiting and they run after."""

from __future__ import annotations

import requests

from architect.client import Client, RequestRejected

ADD = "architect.agent.builtin_tasks:add"


def py(function, *args):
    return {"task_type": "python", "payload": {"function": function, "args": list(args)}}


def test_chain_chord_and_a_failed_dependency(cluster):
    base = cluster.start_server()
    cluster.start_worker("w1", "-c", "4", "--task-type", "python", "--task-type", "shell")
    cluster.wait_workers(1)
    with Client(control_endpoint=cluster.endpoints.control, timeout=30) as c:
        # a chain: add(1, 2) = 3 → add(10, 3) = 13 → add(100, 13) = 113
        ids = c.chain(py(ADD, 1, 2), py(ADD, 10), py(ADD, 100))
        done = c.wait(ids, timeout=30)
        assert [t["result"]["result"] for t in done] == [3, 13, 113]
        starts = [t["started_at"] for t in done]
        ends = [t["finished_at"] for t in done]
        assert ends[0] <= starts[1] and ends[1] <= starts[2]          # one after the other
        # a chord: 100 side by side, then the callback once, with every result
        chord = c.chord([py(ADD, i, 0) for i in range(100)],
                        py("architect.agent.builtin_tasks:total"))
        callback = c.wait(chord["callback"], timeout=60)
        group = c.wait(chord["group"], timeout=60)
        assert callback["status"] == "succeeded" and callback["result"]["result"] == 4950
        assert callback["attempt"] == 1
        assert callback["started_at"] >= max(t["finished_at"] for t in group)
        graph = requests.get(f"{base}/api/tasks/{chord['callback']}/graph", timeout=10).json()
        assert len(graph["nodes"]) == 101 and len(graph["edges"]) == 100
        assert {e["target"] for e in graph["edges"]} == {chord["callback"]}
        chain_graph = c.call("task.graph", {"id": ids[0]})             # downstream too
        assert [n["id"] for n in chain_graph["nodes"]] == ids
        assert [(e["source"], e["target"]) for e in chain_graph["edges"]] == \
            [(ids[0], ids[1]), (ids[1], ids[2])]
        assert {n["status"] for n in chain_graph["nodes"]} == {"succeeded"}
        events = [e["event"] for e in c.call("task.get", {"id": chord["callback"],
                                                          "events": True})["events"]]
        assert events == ["waiting", "queued", "assigned", "running", "succeeded"]
        # a failed dependency: what depends on it is cancelled, with the reason
        failing, after, shell = c.chain(py("architect.agent.builtin_tasks:fail", "no"),
                                        py(ADD, 1),
                                        {"task_type": "shell",
                                         "payload": {"command": "echo $ARCHITECT_INPUTS"}})
        ends = c.wait([failing, after, shell], timeout=30)
        assert [t["status"] for t in ends] == ["failed", "cancelled", "cancelled"]
        assert ends[1]["error"] == f"dependency {failing} failed"
        assert ends[2]["error"] == f"dependency {after} cancelled"
        # shell gets its inputs as JSON in $ARCHITECT_INPUTS
        first, echo = c.chain(py(ADD, 20, 22), {"task_type": "shell", "payload": {
            "command": 'echo "$ARCHITECT_INPUTS"'}})
        assert c.wait(echo, timeout=30)["result"]["stdout"].strip() == "[42]"
        # unknown ids: 400 naming them; nothing is created
        before = len(c.call("task.list", {"limit": 1000}))
        try:
            c.submit("shell", {"command": "true"}, depends_on=[first, 99999, 88888])
            raise AssertionError("unknown dependencies were accepted")
        except RequestRejected as exc:
            assert exc.code == "bad_request" and "99999, 88888" in exc.message
        answer = requests.post(base + "/api/tasks", json={
            "task_type": "shell", "payload": {"command": "true"}, "depends_on": [77777]},
            timeout=10)
        assert answer.status_code == 400 and "77777" in answer.json()["error"]["message"]
        assert len(c.call("task.list", {"limit": 1000})) == before


def test_waiting_tasks_survive_a_broker_kill_9(cluster, tmp_path):
    cluster.start_broker()
    with Client(control_endpoint=cluster.endpoints.control, timeout=30) as c:
        gate = c.submit("shell", {"command": "true"}, requirements=["later"])["id"]
        waiting = c.submit("shell", {"command": "echo ran"}, depends_on=[gate])["id"]
        assert c.call("task.get", {"id": waiting})["status"] == "waiting"
    cluster.kill("broker")
    cluster.start_broker()
    with Client(control_endpoint=cluster.endpoints.control, timeout=30) as c:
        assert c.call("task.get", {"id": waiting})["status"] == "waiting"
        cluster.start_worker("w1", "--capability", "later")
        done = c.wait([gate, waiting], timeout=30)
        assert [t["status"] for t in done] == ["succeeded", "succeeded"]
        assert done[1]["result"]["stdout"] == "ran\n"
