"""Tier 3: GET /api/nodes/<node>/metrics on a real server whose database already holds two
days of one node's history (rolled up): the route reads raw samples for short windows,
the 1-minute roll-up up to two days, the 1-hour one beyond, and says which; bad
parameters are a 400."""

from __future__ import annotations

import math
import time

import pytest
import requests

from tests.helpers import Cluster, free_port_block, wait_for

HISTORY = "history-1"


def seed_history(data_dir, name: str = HISTORY, days: float = 2.0, every: float = 20.0,
                 now: float | None = None) -> int:
    """Before the server starts: a node and `days` of its samples (a daily wave, noise, a
    spike every 97 samples) in DATA_DIR/architect.db, rolled up as the broker would have."""
    from architect.broker.rollup import MetricsRollup
    from architect.broker.store import METRIC_COLUMNS, Store
    now = time.time() if now is None else now
    store = Store(str(data_dir / "architect.db"))
    try:
        with store.transaction():
            store.save_nodes([{
                "id": 1, "name": name, "hostname": name, "ip_address": "127.0.0.1",
                "capabilities": [], "ssh": None, "status": "healthy", "reasons": [],
                "drained": 0, "registered_at": now - days * 86400, "last_seen": now - 30,
                "last_metrics": {}, "source": "heartbeat"}])
            rows = []
            for i in range(int(days * 86400 / every)):
                ts = now - days * 86400 + i * every
                wave = math.sin(2 * math.pi * ts / 86400)
                values = {"node_id": 1, "ts": ts, "cpu_percent": 40 + 25 * wave + (i * 37 % 17 - 8) +
                          (30 if i % 97 == 0 else 0), "memory_percent": 55 + 10 * wave +
                          (i * 11 % 7 - 3) / 2,
                          "disk_percent": 62.0, "load_1": 1.5 + wave, "load_5": 1.0,
                          "load_15": 1.0, "net_bytes_sent": 0, "net_bytes_recv": 0,
                          "process_count": 100}
                rows.append(tuple(values[c] for c in METRIC_COLUMNS))
            store.insert_metrics(rows)
        r = MetricsRollup({"raw": 86400, "1m": 14 * 86400, "1h": 365 * 86400}, interval=every)
        while r.step(store, now, 1)["more"]:
            pass
        return len(rows)
    finally:
        store.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rollup-api")
    (tmp / "data").mkdir()
    seed_history(tmp / "data")
    c = Cluster(tmp, interval=0.5, timeout=3.0)
    port = free_port_block(1)
    c.web = f"http://127.0.0.1:{port}"
    c.spawn("server", "server", "--port", str(port))
    try:
        wait_for(lambda: requests.get(f"{c.web}/healthz", timeout=1).status_code == 200, 30,
                 what="server up")
        yield c
    finally:
        c.stop_all()


def get(c, path, **params):
    return requests.get(f"{c.web}{path}", params=params, timeout=5)


def test_the_route_picks_the_resolution_by_window(server):
    seen = {}
    for span in ("1h", "24h", "2d", "7d"):
        r = get(server, f"/api/nodes/{HISTORY}/metrics", range=span)
        assert r.status_code == 200, r.text
        body = r.json()
        seen[span] = body["resolution"]
        assert body["node"] == HISTORY and body["window"] == body["until"] - body["since"]
        assert {"series", "thresholds", "heartbeat_age", "status", "range", "bucket"} <= set(body)
        assert body["series"], span
        first = body["series"][0]
        assert {"ts", "samples", "cpu_percent", "cpu_percent_min", "cpu_percent_max",
                "memory_percent", "disk_percent", "load_1"} <= set(first)
        assert all(p["cpu_percent_min"] <= p["cpu_percent"] <= p["cpu_percent_max"]
                   for p in body["series"])
    assert seen == {"1h": "raw", "24h": "1m", "2d": "1m", "7d": "1h"}
    week = get(server, "/api/nodes/1/metrics", range="7d", points=50).json()
    assert week["bucket"] >= 3600 and len(week["series"]) <= 50
    forced = get(server, f"/api/nodes/{HISTORY}/metrics", range="24h", resolution="raw").json()
    assert forced["resolution"] == "raw"
    # the same answer the UI reads (node.metrics over the bus)
    assert server.rpc("node.metrics", {"node": HISTORY, "range": "7d"})["resolution"] == "1h"


def test_bad_parameters_are_400_and_an_unknown_node_404(server):
    for params in ({"range": "5y"}, {"points": "1"}, {"points": "x"}, {"resolution": "5s"}):
        r = get(server, f"/api/nodes/{HISTORY}/metrics", **params)
        assert r.status_code == 400 and r.json()["error"]["message"], params
    assert get(server, "/api/nodes/nobody/metrics").status_code == 404
    spec = get(server, "/api/openapi.json").json()
    assert "get" in spec["paths"]["/api/nodes/{key}/metrics"]


def test_the_cli_prints_the_history_and_its_resolution(server):
    out = server.cli("nodes", "metrics", HISTORY, "--range", "7d", "--points", "10").stdout
    assert f"{HISTORY}: 7d from 1h" in out and "SAMPLES" in out and "%" in out
    data = server.cli_json("nodes", "metrics", HISTORY, "--range", "24h")
    assert data["resolution"] == "1m" and len(data["series"]) <= 30
    bad = server.cli("nodes", "metrics", HISTORY, "--range", "5y", check=False)
    assert bad.returncode != 0 and "5y" in bad.stderr
