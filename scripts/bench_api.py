#!/usr/bin/env python3
"""REST benchmark: GET /api/nodes with 1,000 registered nodes, against a real
`architect server` process on loopback.

Prints a table (p50 / p99 latency of sequential requests, requests per second with
concurrent clients) and writes JSON. Target from issue 4: p50 <= 5 ms, p99 <= 20 ms.

    .venv/bin/python scripts/bench_api.py [--nodes 1000] [--requests 1000] [--threads 4]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from architect.bus.rpc import RpcClient  # noqa: E402
from architect import config  # noqa: E402
from architect.bus.transport import bus_endpoints  # noqa: E402
from scripts.benchlib.common import pct, report  # noqa: E402
from tests.helpers import free_port_block, wait_for  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--out", default="bench-api.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    base = free_port_block(5)
    env = dict(os.environ, ARCHITECT_BUS_PORT=str(base), ARCHITECT_DATA_DIR=str(tmp / "data"),
               ARCHITECT_STATE_DIR=str(tmp / "state"), ARCHITECT_CONFIG=str(tmp / "none.json"),
               ARCHITECT_LOG_LEVEL="WARNING", ARCHITECT_HEARTBEAT_TIMEOUT="3600")
    url = f"http://127.0.0.1:{base + 4}/api/nodes"
    proc = subprocess.Popen([sys.executable, "-m", "architect", "server", "--port", str(base + 4)],
                            env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rpc = RpcClient(bus_endpoints(config.load(env=env)).control, timeout=10)
        wait_for(lambda: requests.get(f"http://127.0.0.1:{base + 4}/healthz").ok, 30)
        for i in range(args.nodes):
            rpc.call("node.register", {"name": f"node-{i:04d}", "hostname": f"node-{i:04d}.lan",
                                       "ip_address": f"10.0.{i // 250}.{i % 250 + 1}",
                                       "capabilities": ["python", "docker"]})
        session = requests.Session()
        body = session.get(url).json()
        assert body["count"] == args.nodes, body["count"]
        size = len(session.get(url).content)
        for _ in range(50):  # warm up
            session.get(url)
        lat = []
        for _ in range(args.requests):
            t = time.perf_counter()
            r = session.get(url)
            lat.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200
        count = [0] * args.threads
        stop = time.perf_counter() + args.seconds

        def load(i):
            s = requests.Session()
            while time.perf_counter() < stop:
                s.get(url)
                count[i] += 1
        threads = [threading.Thread(target=load, args=(i,)) for i in range(args.threads)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rps = sum(count) / (time.perf_counter() - t0)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    result = {"nodes": args.nodes, "response_bytes": size, "requests": args.requests,
              "p50_ms": round(pct(lat, 0.5), 2), "p99_ms": round(pct(lat, 0.99), 2),
              "mean_ms": round(sum(lat) / len(lat), 2), "threads": args.threads,
              "requests_per_second": round(rps)}
    report(result, args.out)
    print(f"targets: p50 <= 5 ms: {'MET' if result['p50_ms'] <= 5 else 'NOT MET'}; "
          f"p99 <= 20 ms: {'MET' if result['p99_ms'] <= 20 else 'NOT MET'}")


if __name__ == "__main__":
    main()
