"""Tier 1: metrics roll-ups through the Broker itself (heartbeats in, tick, persist) with a
fake clock and a real SQLite file: the tick rolls each closed minute once, also across a
restart; raw retention waits for the roll-up; node.metrics says which resolution it read."""

from __future__ import annotations

from architect import config as config_mod
from architect.broker.core import Broker
from architect.broker.store import Store
from architect.bus.messages import Heartbeat, Request

H0 = 1_700_000_000.0 - (1_700_000_000.0 % 3600)
CALM = {"cpu_percent": 10.0, "memory_percent": 20.0, "disk_percent": 30.0, "load_1": 0.1}


def make_config(tmp_path, **env):
    base = {"ARCHITECT_DATA_DIR": str(tmp_path / "data"), "ARCHITECT_HEARTBEAT_INTERVAL": "5",
            "ARCHITECT_HEARTBEAT_TIMEOUT": "600"}
    base.update(env)
    return config_mod.load(env=base, config_file=tmp_path / "none.json")


class Beat:
    def __init__(self, tmp_path, now=H0, **env):
        self.config = make_config(tmp_path, **env)
        self.now = now
        self.open()

    def open(self):
        self.store = Store(self.config.db_path)
        self.b = Broker(self.config, now=self.now, store=self.store)

    def restart(self):
        self.b.close()
        self.open()

    def run(self, seconds: float, cpu=lambda t: 10.0, nodes=("n1",)):
        """Beat every 5 s for `seconds`, ticking and persisting as the loop does each second."""
        end = self.now + seconds
        while self.now < end:
            if int(self.now) % 5 == 0:
                for name in nodes:
                    self.b.on_heartbeat(Heartbeat(name=name, ts=self.now,
                                                  metrics={**CALM, "cpu_percent": cpu(self.now)},
                                                  capabilities=[]), self.now)
            self.b.tick(self.now)
            assert self.b.persist(self.now)
            self.now += 1.0

    def call(self, method, params):
        reply = self.b.on_request(Request(id=1, method=method, params=params), self.now)
        assert reply.ok, reply.error
        return reply.result

    def minutes(self):
        return self.store._fetch("SELECT node_id, ts, samples, cpu_percent, cpu_percent_min, "
                                 "cpu_percent_max FROM metrics_1m ORDER BY node_id, ts")


def test_the_tick_rolls_each_closed_minute_once_across_a_restart(tmp_path):
    h = Beat(tmp_path)
    try:
        h.run(5 * 60 + 10, cpu=lambda t: (t - H0) % 60)     # 0, 5, ... 55 in every minute
        got = h.minutes()
        assert [r[1] for r in got] == [H0 + 60 * i for i in range(5)]
        assert all(r[2] == 12 and r[3] == 27.5 and (r[4], r[5]) == (0, 55) for r in got)
        h.restart()                                  # the roll-up state comes from the db
        h.run(2 * 60)
        again = h.minutes()
        assert again[:5] == got and [r[1] for r in again[5:]] == [H0 + 300, H0 + 360]
        by_range = {r: h.call("node.metrics", {"node": "n1", "range": r})["resolution"]
                    for r in ("15m", "1h", "6h", "24h", "2d", "7d", "30d")}
        assert by_range == {"15m": "raw", "1h": "raw", "6h": "raw", "24h": "1m", "2d": "1m",
                            "7d": "1h", "30d": "1h"}
        raw = h.store.count("metrics")
        rolled = h.store._fetch("SELECT SUM(samples) FROM metrics_1m")[0][0]
        newest = h.store._fetch("SELECT MAX(ts) FROM metrics_1m")[0][0]
        assert rolled == h.store._fetch("SELECT COUNT(*) FROM metrics WHERE ts < ?",
                                        (newest + 60,))[0][0] < raw
    finally:
        h.b.close()


def test_raw_retention_waits_for_the_rollup_and_resolution_follows_the_window(tmp_path):
    # raw kept 0.01 day (14.4 min); the broker was down: 30 min of samples not rolled yet
    h = Beat(tmp_path, ARCHITECT_METRICS_RETENTION_DAYS="0.01")
    try:
        with h.store.transaction():
            h.b.on_heartbeat(Heartbeat(name="n1", ts=h.now, metrics=CALM, capabilities=[]), h.now)
            h.b.persist(h.now, force=True)
        node_id = h.b.registry.get("n1").id
        from tests.contract.test_rollup import sample, write
        write(h.store, [sample(node_id, H0 + 5 + i * 5.0, 42.0) for i in range(360)])
        h.b.rollup.max_rows = 60       # five minutes a chunk: catching up takes a while
        h.now = H0 + 1800 + 10
        h.b._next_retention = h.now     # the hourly raw retention runs now, first
        h.b.tick(h.now)
        # one chunk rolled (5 minutes); the raw retention deleted only what that rolled
        done = h.b.rollup.state["1m"]
        assert done == H0 + 300 < h.now - 0.01 * 86400
        assert h.store._fetch("SELECT MIN(ts) FROM metrics")[0][0] == done
        h.run(120)
        assert h.store._fetch("SELECT SUM(samples) FROM metrics_1m WHERE ts < ?",
                              (H0 + 1800,))[0][0] == 360     # every sample, rolled once
        h.b._next_retention = h.now
        h.b.tick(h.now)
        left = h.store._fetch("SELECT MIN(ts) FROM metrics")[0][0]
        assert left >= h.now - 0.01 * 86400 - 1
        # raw is kept 14.4 minutes here: an hour's chart reads the minutes
        assert h.call("node.metrics", {"node": "n1", "range": "1h"})["resolution"] == "1m"
        day = h.call("node.metrics", {"node": "n1", "range": "24h"})
        assert day["resolution"] == "1m" and day["until"] == h.now
        assert day["since"] == h.now - 86400 and day["window"] == 86400
        assert sum(p["samples"] for p in day["series"]) == h.store._fetch(
            "SELECT SUM(samples) FROM metrics_1m")[0][0] + h.store._fetch(
            "SELECT COUNT(*) FROM metrics WHERE ts >= ?", (h.b.rollup.state["1m"],))[0][0]
        assert h.call("node.metrics", {"node": "n1", "range": "7d"})["resolution"] == "1h"
        assert h.call("node.metrics", {"node": "n1", "range": "24h",
                                       "resolution": "raw"})["resolution"] == "raw"
        bad = h.b.on_request(Request(id=2, method="node.metrics",
                                     params={"node": "n1", "resolution": "5s"}), h.now)
        assert not bad.ok and bad.error["code"] == "bad_request"
    finally:
        h.b.close()


def test_a_failing_rollup_backs_off_and_the_broker_keeps_writing(tmp_path):
    h = Beat(tmp_path)
    try:
        h.run(70)
        h.store.conn.execute("DROP TABLE metrics_rollup_state")   # the database refuses it
        h.b.rollup.state = None
        h.b.rollup.next_at = h.now
        h.b.tick(h.now)                                           # no exception out of tick
        assert h.b.rollup.next_at == h.now + 5.0 and h.b.rollup.state is None
        before = h.store.count("metrics")
        h.run(10)
        assert h.store.count("metrics") > before                  # samples still written
        assert h.b.rollup.raw_cutoff(h.now) == 0.0                # and none deleted unrolled
    finally:
        h.b.close()
