#!/usr/bin/env python3
"""Dash callback latency with a big cluster: 200 nodes (live heartbeats) and 10,000 tasks,
against a real `architect server` process. Times the callbacks a browser fires on every
live tick (overview, nodes table page, tasks table page) by POSTing what the Dash renderer
posts to /_dash-update-component. Prints a table, writes JSON.
Target from issue 6: overview p50 <= 100 ms.

    .venv/bin/python scripts/bench_ui.py [--nodes 200] [--tasks 10000] [--samples 100]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from architect.bus.codec import encode  # noqa: E402
from architect.bus.messages import Heartbeat  # noqa: E402
from architect.bus.rpc import RpcClient  # noqa: E402
from architect import config  # noqa: E402
from architect.bus.transport import bus_endpoints  # noqa: E402
from scripts.benchlib.common import pct, stop  # noqa: E402
from tests.helpers import free_port_block, wait_for  # noqa: E402


def callback(outputs, inputs, changed):
    return {"output": ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..",
            "outputs": [{"id": i, "property": p} for i, p in outputs],
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "changedPropIds": [changed], "state": []}


CALLBACKS = {
    "overview": callback([("ov-cards", "children"), ("ov-throughput", "figure"),
                          ("ov-alerts", "children"), ("ov-nodes", "children"),
                          ("ov-error", "children")],
                         [("tick", "n_intervals", 3), ("ov-ack-msg", "children", "")],
                         "tick.n_intervals"),
    "nodes page": callback([("nodes-table", "data"), ("nodes-table", "page_count"),
                            ("nodes-error", "children")],
                           [("tick", "n_intervals", 3), ("nodes-table", "page_current", 2),
                            ("nodes-table", "sort_by", [{"column_id": "cpu", "direction": "desc"}]),
                            ("nodes-search", "value", None), ("nodes-msg", "children", None)],
                           "tick.n_intervals"),
    "tasks page": callback([("tasks-table", "data"), ("tasks-table", "page_count"),
                            ("task-filter-node", "options"), ("task-node", "options"),
                            ("tasks-error", "children")],
                           [("tick", "n_intervals", 3), ("tasks-table", "page_current", 40),
                            ("task-filter-status", "value", "succeeded"),
                            ("task-filter-node", "value", None),
                            ("task-submit-msg", "children", None),
                            ("task-search", "value", None)], "tick.n_intervals"),
    "topology": callback([("topo-graph", "elements"), ("topo-error", "children")],
                         [("tick", "n_intervals", 3)], "tick.n_intervals"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--out", default="bench-ui.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    base = free_port_block(5)
    env = dict(os.environ, ARCHITECT_BUS_PORT=str(base), ARCHITECT_DATA_DIR=str(tmp / "data"),
               ARCHITECT_STATE_DIR=str(tmp / "state"), ARCHITECT_CONFIG=str(tmp / "none.json"),
               ARCHITECT_LOG_LEVEL="WARNING")
    web = f"http://127.0.0.1:{base + 4}"
    procs = [subprocess.Popen([sys.executable, "-m", "architect", "server", "--port",
                               str(base + 4)], env=env, cwd=ROOT, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    ep = bus_endpoints(config.load(env=env))  # where the server binds (ipc by default)
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.connect(ep.heartbeat)
    rnd = random.Random(7)
    try:
        rpc = RpcClient(ep.control, timeout=60)
        wait_for(lambda: requests.get(f"{web}/healthz").ok, 30, what="server")
        procs.append(subprocess.Popen([sys.executable, "-m", "architect", "worker", "--name",
                                       "node-000", "-c", "16", "--task-type", "python"], env=env,
                                      cwd=ROOT, start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def beat():
            for i in range(args.nodes):
                pub.send(encode(Heartbeat(name=f"node-{i:03d}", ts=time.time(), metrics={
                    "cpu_percent": rnd.uniform(5, 99), "memory_percent": rnd.uniform(10, 97),
                    "disk_percent": rnd.uniform(10, 95), "load_1": rnd.uniform(0, 9)},
                    hostname=f"node-{i:03d}", ip_address="10.9.0.1", capabilities=["python"])))
        wait_for(lambda: (beat() or True) and len(rpc.call("node.list")) >= args.nodes, 30,
                 what="nodes")
        spec = {"task_type": "python", "payload": {"function": "architect.agent.builtin_tasks:noop"},
                "node": "node-000"}
        ids = []
        for i in range(0, args.tasks, 1000):
            ids += [s["id"] for s in rpc.call("task.submit_many", {"tasks": [spec] * min(1000, args.tasks - i)})]
        rpc.call("task.wait", {"ids": ids[-1000:], "timeout": 120}, timeout=130)
        session = requests.Session()
        results = {}
        for name, body in CALLBACKS.items():
            lat = []
            for n in range(args.samples):
                if n % 10 == 0:
                    beat()  # heartbeats keep flowing, as in a live cluster
                t = time.perf_counter()
                r = session.post(f"{web}/_dash-update-component", json=body)
                lat.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, (name, r.status_code, r.text[:300])
            results[name] = {"p50_ms": round(pct(lat, 0.5), 1), "p99_ms": round(pct(lat, 0.99), 1),
                             "response_kb": round(len(r.content) / 1024, 1)}
        stats = rpc.call("cluster.stats")
    finally:
        pub.close(0)
        stop(procs)
    print(f"\nnodes {stats['nodes']['total']}, tasks {args.tasks}")
    print(f"{'callback':14}{'p50 ms':>9}{'p99 ms':>9}{'KiB':>8}")
    for name, r in results.items():
        print(f"{name:14}{r['p50_ms']:>9}{r['p99_ms']:>9}{r['response_kb']:>8}")
    ok = results["overview"]["p50_ms"] <= 100
    print(f"target: overview p50 <= 100 ms: {'MET' if ok else 'NOT MET'}")
    Path(args.out).write_text(json.dumps({"nodes": args.nodes, "tasks": args.tasks,
                                          "callbacks": results}, indent=2))


if __name__ == "__main__":
    main()
