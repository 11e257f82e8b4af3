#!/usr/bin/env python3
"""Notifications benchmark: does delivery stay off the broker loop? A real broker process;
broker `ping` round trips measured three ways: idle, while --messages test messages go to a
live webhook receiver, and while as many go to dead receivers (a closed port, and one that
accepts and never answers), each retried --attempts times. Also: live messages delivered per
second. Prints a table and writes JSON (--out).

    .venv/bin/python scripts/bench_notify.py [--messages 200] [--attempts 3] [--timeout 1]
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.benchlib.common import pct, report  # noqa: E402
from tests.helpers import Cluster, free_port_block  # noqa: E402


def receiver():
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            count[0] += 1
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, count


def pings(c: Cluster, until, limit: float = 120.0) -> list[float]:
    out, deadline = [], time.monotonic() + limit
    while time.monotonic() < deadline and not until():
        t = time.perf_counter()
        c.rpc("ping", timeout=5.0)
        out.append((time.perf_counter() - t) * 1000)
        time.sleep(0.005)
    return out


def send(c: Cluster, channels: list[str]) -> threading.Thread:
    """Test messages from another thread, on its own control connection."""
    from architect.bus.rpc import RpcClient

    def run():
        client = RpcClient(c.endpoints.control, timeout=5.0)
        try:
            for name in channels:
                client.call("notify.channel.test", {"name": name})
        finally:
            client.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def stats(prefix: str, ms: list[float]) -> dict:
    return {f"{prefix} pings": len(ms), f"{prefix} p50 ms": round(pct(ms, 0.5), 2),
            f"{prefix} p99 ms": round(pct(ms, 0.99), 2), f"{prefix} max ms": round(max(ms), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--attempts", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--out", default="bench_notify.json")
    args = ap.parse_args()
    server, count = receiver()
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(1024)
    with tempfile.TemporaryDirectory() as tmp:
        c = Cluster(Path(tmp), extra_env={"ARCHITECT_NOTIFY_ATTEMPTS": str(args.attempts),
                                          "ARCHITECT_NOTIFY_BACKOFF": "0.2",
                                          "ARCHITECT_NOTIFY_TIMEOUT": str(args.timeout),
                                          "ARCHITECT_NOTIFY_QUEUE": "100000"})
        try:
            c.start_broker()
            for name, url in (("live", f"http://127.0.0.1:{server.server_address[1]}/"),
                              ("closed", f"http://127.0.0.1:{free_port_block(1)}/"),
                              ("hang", f"http://127.0.0.1:{hang.getsockname()[1]}/")):
                c.rpc("notify.channel.add", {"name": name, "kind": "webhook", "url": url})
            idle_until = time.monotonic() + 3
            result = stats("idle", pings(c, lambda: time.monotonic() > idle_until))
            t0 = time.perf_counter()
            sender = send(c, ["live"] * args.messages)
            live = pings(c, lambda: count[0] >= args.messages)
            took = time.perf_counter() - t0
            sender.join()
            result.update(stats("live", live))
            result["live messages/s"] = round(args.messages / took, 1)
            sender = send(c, ["closed", "hang"] * (args.messages // 2))
            time.sleep(0.5)

            def done():
                s = c.rpc("notify.status")
                return s["in_flight"] == 0 and s["retrying"] == 0 and s["queued"] == 0
            dead = pings(c, done, limit=600)
            result.update(stats("dead receivers", dead))
            # the broker's own measure: its loop iterations' work over the last 4,096 (most
            # of them during the dead receivers' retries)
            loop = c.rpc("cluster.stats")["loop"]
            result["loop p50 ms (last 4096 iterations)"] = round(loop["p50"] * 1000, 2)
            result["loop p99 ms"] = round(loop["p99"] * 1000, 2)
            result["loop max ms"] = round(loop["max"] * 1000, 2)
            result["target loop p99 < 50 ms"] = "MET" if loop["p99"] < 0.05 else "NOT MET"
            result["failed attempts"] = len(c.rpc("notify.deliveries",
                                                   {"outcome": "failed", "limit": 10000}))
            result["messages"], result["attempts"] = args.messages, args.attempts
            report(result, args.out)
        finally:
            c.stop_all()
            server.shutdown()
            hang.close()


if __name__ == "__main__":
    main()
