#!/usr/bin/env python3
"""Heartbeat ingestion benchmark: a real broker process, one sender process simulating many
nodes (one PUB socket, many node identities).

Measures: heartbeats ingested per second (decoded, validated, health-graded, batched to
SQLite) and the broker's resident memory per 1,000 tracked nodes. Prints a table and writes
JSON (--out). Targets from issue 2: >= 20,000 heartbeats/s, 10,000 nodes tracked.

    .venv/bin/python scripts/bench_heartbeats.py [--nodes 10000] [--count 1000000]

With --duration S it then keeps every node beating at its real pace (one heartbeat per node
every --interval seconds) for S seconds, samples the broker's RSS every 10 s and reports the
slope after --warmup seconds (MiB per hour, least squares): memory under load, not a burst.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from architect.bus.codec import encode  # noqa: E402
from architect.bus.messages import Heartbeat  # noqa: E402
from architect.bus.rpc import RpcClient  # noqa: E402
from architect import config  # noqa: E402
from architect.bus.transport import bus_endpoints  # noqa: E402
from scripts.benchlib.common import report  # noqa: E402
from tests.helpers import free_port_block, wait_for  # noqa: E402


def frames_for(names: list[str], warn_share: float) -> list[bytes]:
    rnd = random.Random(1)
    out = []
    for name in names:
        hot = rnd.random() < warn_share
        metrics = {"cpu_percent": 85.0 if hot else rnd.uniform(1, 60),
                   "memory_percent": rnd.uniform(10, 70), "disk_percent": rnd.uniform(10, 70),
                   "load_1": rnd.uniform(0, 2), "load_5": 1.0, "load_15": 1.0,
                   "net_bytes_sent": rnd.randint(0, 1 << 40), "net_bytes_recv": rnd.randint(0, 1 << 40),
                   "process_count": rnd.randint(50, 500), "uptime": 1000.0, "boot_time": 1.7e9}
        out.append(encode(Heartbeat(name=name, ts=time.time(), metrics=metrics, hostname=name,
                                    ip_address="10.1.0.1", capabilities=["python"])))
    return out


def slope_mib_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per hour."""
    n = len(samples)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in samples) / n
    my = sum(m for _, m in samples) / n
    var = sum((t - mx) ** 2 for t, _ in samples)
    return 3600.0 * sum((t - mx) * (m - my) for t, m in samples) / var if var else 0.0


def paced_phase(pub, frames, proc, rpc, args) -> dict:
    """Every node beats once per interval for args.duration seconds; RSS every 10 s."""
    per_tick = max(1, round(len(frames) * 0.1 / args.interval))   # ticks of 100 ms
    samples, i, sent = [], 0, 0
    before = rpc.call("cluster.stats")["counters"]["heartbeats"]
    t0 = time.perf_counter()
    next_tick, next_sample = t0, t0
    while True:
        now = time.perf_counter()
        if now - t0 >= args.duration:
            break
        if now >= next_sample:
            mib = proc.memory_info().rss / 2**20
            samples.append((now - t0, mib))
            print(f"  {now - t0:7.0f} s  rss {mib:7.1f} MiB", flush=True)
            next_sample += 10.0
        for _ in range(per_tick):
            pub.send(frames[i % len(frames)])
            i += 1
            sent += 1
        next_tick += 0.1
        time.sleep(max(0.0, next_tick - time.perf_counter()))
    time.sleep(2.0)
    got = rpc.call("cluster.stats")["counters"]["heartbeats"] - before
    warm = [(t, m) for t, m in samples if t >= args.warmup]
    return {"paced_seconds": round(args.duration), "paced_rate_per_second": round(sent / args.duration),
            "paced_sent": sent, "paced_ingested": got,
            "paced_rss_start_mib": round(samples[0][1], 1) if samples else None,
            "paced_rss_after_warmup_mib": round(warm[0][1], 1) if warm else None,
            "paced_rss_end_mib": round(samples[-1][1], 1) if samples else None,
            "paced_rss_max_mib": round(max(m for _, m in samples), 1) if samples else None,
            "paced_rss_slope_mib_per_hour": round(slope_mib_per_hour(warm), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--count", type=int, default=1_000_000,
                    help="heartbeats to send in the timed phase (as fast as the sender can)")
    ap.add_argument("--warn-share", type=float, default=0.05,
                    help="share of nodes whose CPU is above the warning threshold")
    ap.add_argument("--duration", type=float, default=0.0,
                    help="then beat at the real pace for this many seconds, sampling RSS")
    ap.add_argument("--interval", type=float, default=5.0,
                    help="seconds between two heartbeats of one node in the paced phase")
    ap.add_argument("--warmup", type=float, default=300.0,
                    help="seconds of the paced phase left out of the RSS slope")
    ap.add_argument("--out", default="bench-heartbeats.json")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-hb-"))
    base = free_port_block(4)
    env = dict(os.environ, ARCHITECT_BUS_PORT=str(base), ARCHITECT_DATA_DIR=str(tmp / "data"),
               ARCHITECT_STATE_DIR=str(tmp / "state"), ARCHITECT_CONFIG=str(tmp / "none.json"),
               ARCHITECT_HEARTBEAT_TIMEOUT="600", ARCHITECT_LOG_LEVEL="WARNING")
    broker = subprocess.Popen([sys.executable, "-m", "architect", "broker"], env=env,
                              cwd=Path(__file__).resolve().parent.parent)
    ep = bus_endpoints(config.load(env=env))  # where the broker binds (ipc by default)
    rpc = RpcClient(ep.control, timeout=10)
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)  # never drop on the sender side: the broker is measured
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(ep.heartbeat)
    try:
        wait_for(lambda: rpc.call("ping", timeout=0.5), 20, what="broker")
        proc = psutil.Process(broker.pid)
        time.sleep(0.5)
        rss_empty = proc.memory_info().rss
        names = [f"sim-{i:05d}" for i in range(args.nodes)]
        frames = frames_for(names, args.warn_share)

        # phase 1: every simulated node shows up (auto-registered by its heartbeats)
        t0 = time.perf_counter()
        while True:
            for f in frames:
                pub.send(f)
            try:
                total = rpc.call("cluster.stats")["nodes"]["total"]
            except Exception:
                total = 0
            if total >= args.nodes:
                break
            if time.perf_counter() - t0 > 120:
                raise SystemExit(f"only {total} of {args.nodes} nodes registered in 120 s")
            time.sleep(0.5)
        register_s = time.perf_counter() - t0
        wait_for(lambda: rpc.call("cluster.stats")["counters"]["heartbeats"] > 0, 10)
        time.sleep(2.0)  # let the registration backlog drain
        rss_nodes = proc.memory_info().rss

        # phase 2: steady blast, counted at the broker
        start_count = rpc.call("cluster.stats")["counters"]["heartbeats"]
        sent = 0
        t_start = time.perf_counter()
        n = len(frames)
        while sent < args.count:
            pub.send(frames[sent % n])
            sent += 1
        send_s = time.perf_counter() - t_start

        # wait until the broker stops gaining (backlog drained), then count
        last, stable_since = -1, time.perf_counter()
        while time.perf_counter() - stable_since < 1.0:
            c = rpc.call("cluster.stats")["counters"]["heartbeats"]
            if c != last:
                last, stable_since = c, time.perf_counter()
            time.sleep(0.2)
        ingest_s = stable_since - t_start
        ingested = last - start_count
        stats = rpc.call("cluster.stats")
        rss_end = proc.memory_info().rss
        paced = paced_phase(pub, frames, proc, rpc, args) if args.duration > 0 else {}
        cpu = proc.cpu_times()
    finally:
        pub.close(0)
        rpc.close()
        broker.terminate()
        try:
            broker.wait(15)
        except subprocess.TimeoutExpired:
            broker.kill()

    result = {
        "nodes_tracked": stats["nodes"]["total"],
        "nodes_warning": stats["nodes"]["warning"],
        "heartbeats_sent": sent,
        "heartbeats_ingested": ingested,
        "heartbeats_dropped": sent - ingested,
        "send_seconds": round(send_s, 2),
        "ingest_seconds": round(ingest_s, 2),
        "heartbeats_per_second": round(ingested / ingest_s),
        "register_seconds": round(register_s, 2),
        "broker_rss_empty_mib": round(rss_empty / 2**20, 1),
        "broker_rss_nodes_mib": round(rss_nodes / 2**20, 1),
        "broker_rss_end_mib": round(rss_end / 2**20, 1),
        "rss_per_1000_nodes_mib": round((rss_nodes - rss_empty) / 2**20 / (args.nodes / 1000), 2),
        "broker_cpu_seconds": round(cpu.user + cpu.system, 1),
        "protocol_errors": stats["counters"]["protocol_errors"],
        **paced,
    }
    report(result, args.out)
    print(f"\ntarget: >= 20,000 heartbeats/s with {args.nodes} nodes tracked -> "
          f"{'MET' if result['heartbeats_per_second'] >= 20_000 and result['nodes_tracked'] >= args.nodes else 'NOT MET'}")


if __name__ == "__main__":
    main()
