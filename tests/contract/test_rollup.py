"""Metrics roll-ups (architect/broker/rollup.py) on every store backend: min / avg / max
over known samples, each period rolled once (a tick run twice, a broker restarted), chunks,
retention per level, and the chart read picking its resolution by window.

Same backends as tests/contract/test_store.py (SQLite file, a real PostgreSQL); time is a
value, nothing sleeps.
"""

from __future__ import annotations

import statistics

import pytest

from architect.broker import rollup
from architect.broker.rollup import GRACE, MetricsRollup
from architect.broker.store import METRIC_COLUMNS
from tests.contract.test_store import backend, store  # noqa: F401  (fixtures)

H0 = 1_700_000_000.0 - (1_700_000_000.0 % 3600)    # an hour boundary
DAY = 86400.0
RETENTION = {"raw": DAY, "1m": 14 * DAY, "1h": 365 * DAY}


def sample(node_id, ts, cpu, mem=20.0, disk=30.0, load=0.5) -> tuple:
    values = {"node_id": node_id, "ts": ts, "cpu_percent": cpu, "memory_percent": mem,
              "disk_percent": disk, "load_1": load, "load_5": 0.1, "load_15": 0.1,
              "net_bytes_sent": 1, "net_bytes_recv": 2, "process_count": 3}
    return tuple(values[c] for c in METRIC_COLUMNS)


def write(store, rows):
    with store.transaction(durable=False):
        store.insert_metrics(rows)


def rows(store, table, node_id=None):
    cols = ", ".join(rollup.ROLLUP_COLUMNS)
    where = "" if node_id is None else f" WHERE node_id = {int(node_id)}"
    return [dict(zip(rollup.ROLLUP_COLUMNS, r)) for r in
            store._fetch(f"SELECT {cols} FROM {table}{where} ORDER BY node_id, ts")]


def catch_up(r: MetricsRollup, store, now, nodes=2) -> int:
    steps = 0
    while True:
        steps += 1
        if not r.step(store, now, nodes)["more"]:
            return steps


def three_minutes(store):
    """Node 1: cpu 0..11 in minute 0, 12 samples each minute for 3 minutes; node 2: one
    sample in minute 1."""
    data = [sample(1, H0 + m * 60 + i * 5, float(m * 100 + i), load=float(i)) for m in range(3)
            for i in range(12)]
    data.append(sample(2, H0 + 61, 50.0, mem=None))
    write(store, data)
    return data


class TestRollup:
    def test_minutes_hold_min_avg_max_of_their_samples(self, store):
        data = three_minutes(store)
        r = MetricsRollup(RETENTION)
        r.step(store, H0 + 180 + GRACE, 2)
        got = rows(store, "metrics_1m")
        assert [(g["node_id"], g["ts"]) for g in got] == [
            (1, H0), (1, H0 + 60), (1, H0 + 120), (2, H0 + 60)]
        for minute in range(3):
            cpus = [s[2] for s in data if s[0] == 1 and H0 + minute * 60 <= s[1] < H0 + minute * 60 + 60]
            g = got[minute]
            assert g["samples"] == 12
            assert g["cpu_percent"] == pytest.approx(statistics.mean(cpus))
            assert (g["cpu_percent_min"], g["cpu_percent_max"]) == (min(cpus), max(cpus))
            assert (g["load_1_min"], g["load_1"], g["load_1_max"]) == (0.0, pytest.approx(5.5), 11.0)
        lone = got[3]
        assert lone["samples"] == 1 and lone["cpu_percent"] == 50.0
        assert lone["memory_percent"] is None and lone["memory_percent_max"] is None

    def test_an_open_minute_waits_and_a_pending_sample_holds_its_minute(self, store):
        three_minutes(store)
        r = MetricsRollup(RETENTION)
        r.step(store, H0 + 180 + GRACE - 1, 2)        # minute 2 ended, grace not over
        assert [g["ts"] for g in rows(store, "metrics_1m", 1)] == [H0, H0 + 60]
        r.step(store, H0 + 500, 2, pending_since=H0 + 150)   # a sample of minute 2 unwritten
        assert [g["ts"] for g in rows(store, "metrics_1m", 1)] == [H0, H0 + 60]
        r.step(store, H0 + 500, 2)
        assert [g["ts"] for g in rows(store, "metrics_1m", 1)] == [H0, H0 + 60, H0 + 120]

    def test_each_minute_is_rolled_once_twice_ticked_or_restarted(self, backend, store):
        three_minutes(store)
        now = H0 + 180 + GRACE
        r = MetricsRollup(RETENTION)
        r.step(store, now, 2)
        first = rows(store, "metrics_1m")
        r.step(store, now, 2)                       # the same tick again
        r.step(store, now + 30, 2)                  # and a later one with nothing new
        assert rows(store, "metrics_1m") == first
        again = backend.reopen(store)               # a broker restarted: state from the db
        try:
            r2 = MetricsRollup(RETENTION)
            r2.step(again, now, 2)
            assert rows(again, "metrics_1m") == first
            write(again, [sample(1, H0 + 185, 7.0), sample(1, H0 + 190, 9.0)])
            r2.step(again, H0 + 240 + GRACE, 2)     # only the new minute
            got = rows(again, "metrics_1m")
            assert got[:3] == first[:3] and got[4:] == first[3:]
            assert (got[3]["ts"], got[3]["samples"], got[3]["cpu_percent"]) == (H0 + 180, 2, 8.0)
            total = again._fetch("SELECT SUM(samples) FROM metrics_1m")[0][0]
            assert int(total) == again.count("metrics")   # every sample counted once
        finally:
            again.close()

    def test_hours_weight_minutes_by_samples_and_equal_the_raw_figures(self, store):
        data = [sample(1, H0 + i * 7.0, float(i % 53), load=float(i % 5)) for i in range(1200)]
        data += [sample(1, H0 + 3600 + i * 30.0, 90.0 + i % 3) for i in range(20)]
        write(store, data)
        r = MetricsRollup(RETENTION)
        catch_up(r, store, H0 + 2 * 3600 + GRACE)
        hours = rows(store, "metrics_1h")
        assert [h["ts"] for h in hours] == [H0, H0 + 3600]
        for h, lo, hi in ((hours[0], H0, H0 + 3600), (hours[1], H0 + 3600, H0 + 7200)):
            cpus = [s[2] for s in data if lo <= s[1] < hi]
            assert h["samples"] == len(cpus)
            assert h["cpu_percent"] == pytest.approx(statistics.mean(cpus))
            assert (h["cpu_percent_min"], h["cpu_percent_max"]) == (min(cpus), max(cpus))
        assert r.state["1h"] == H0 + 7200

    def test_chunks_roll_the_same_as_one_pass(self, store):
        write(store, [sample(n, H0 + i * 5.0, float(i % 11)) for n in (1, 2)
                      for i in range(12 * 90)])
        small = MetricsRollup(RETENTION, max_rows=100)   # 100 rows ≈ 4 minutes of 2 nodes
        steps = catch_up(small, store, H0 + 90 * 60 + GRACE)
        assert steps > 10
        chunked = rows(store, "metrics_1m")
        assert len(chunked) == 2 * 90 and sum(g["samples"] for g in chunked) == 2 * 12 * 90
        assert len(rows(store, "metrics_1h")) == 2          # hour 0 rolled, hour 1 still open

    def test_backfill_starts_at_the_minute_retention(self, store):
        write(store, [sample(1, H0 - 20 * DAY, 1.0), sample(1, H0 - 60, 2.0)])
        r = MetricsRollup(RETENTION)
        catch_up(r, store, H0 + 60)
        assert [(g["ts"], g["cpu_percent"]) for g in rows(store, "metrics_1m")] == [(H0 - 60, 2.0)]

    def test_retention_deletes_only_its_level(self, store):
        write(store, [sample(1, H0 + i * 60.0, 5.0) for i in range(3 * 60)])
        catch_up(MetricsRollup(RETENTION), store, H0 + 3 * 3600 + GRACE)
        r = MetricsRollup({"raw": 3600, "1m": 2 * 3600, "1h": 3 * 3600})   # state: the db's
        before = {t: store.count(t) for t in ("metrics", "metrics_1m", "metrics_1h")}
        assert before == {"metrics": 180, "metrics_1m": 180, "metrics_1h": 3}
        later = H0 + 4 * 3600                 # minutes before H0+2h and hours before H0+1h go
        assert r.purge(store, later) == {"1m": 120, "1h": 1}
        assert store.count("metrics") == 180     # raw retention is the broker's (core.tick)
        assert store._fetch("SELECT MIN(ts) FROM metrics_1m")[0][0] == H0 + 2 * 3600
        assert [h["ts"] for h in rows(store, "metrics_1h")] == [H0 + 3600, H0 + 7200]
        # raw goes only once rolled: the cutoff is held at the 1-minute state
        assert r.raw_cutoff(H0 + 10 * 3600) == r.state["1m"] == H0 + 3 * 3600
        assert MetricsRollup(RETENTION).raw_cutoff(H0) == 0.0   # state unknown: nothing

    def test_minutes_wait_for_their_hour_before_retention(self, store):
        write(store, [sample(1, H0 + i * 60.0, 5.0) for i in range(90)])
        r = MetricsRollup(RETENTION)
        catch_up(r, store, H0 + 90 * 60 + GRACE)
        assert r.state["1h"] == H0 + 3600
        MetricsRollup({"raw": 60, "1m": 60, "1h": DAY}).purge(store, H0 + 10 * 3600)
        assert store._fetch("SELECT MIN(ts) FROM metrics_1m")[0][0] == H0 + 3600

    def test_removing_a_node_removes_its_rollups(self, store):
        three_minutes(store)
        MetricsRollup(RETENTION).step(store, H0 + 4000, 2)
        with store.transaction():
            store.delete_node(2)
        assert {g["node_id"] for g in rows(store, "metrics_1m")} == {1}

    def test_series_picks_its_level_and_reaches_now(self, store):
        # 3 hours at 10 s: rolled up to H0+3h; the last 2 minutes are raw only
        write(store, [sample(1, H0 + i * 10.0, float(i % 60)) for i in range(3 * 360)])
        r = MetricsRollup(RETENTION)
        catch_up(r, store, H0 + 3 * 3600 + GRACE, nodes=1)
        write(store, [sample(1, H0 + 3 * 3600 + i * 10.0, 99.0) for i in range(12)])
        now = H0 + 3 * 3600 + 120
        assert rollup.choose(3600) == "raw" and rollup.choose(6 * 3600) == "raw"
        assert rollup.choose(86400) == "1m" and rollup.choose(2 * 86400) == "1m"
        assert rollup.choose(7 * 86400) == "1h"
        assert rollup.choose(3 * 3600, {"raw": 3600}) == "1m"   # raw kept 1 h only
        short = rollup.series(store, 1, now - 3600, now, 300)
        assert short["resolution"] == "raw" and short["bucket"] == 12
        day = rollup.series(store, 1, now - DAY, now, 300)
        assert day["resolution"] == "1m" and day["bucket"] == 288
        assert sum(p["samples"] for p in day["series"]) == 3 * 360 + 12   # raw tail included
        assert day["series"][-1]["cpu_percent_max"] == 99.0
        week = rollup.series(store, 1, now - 7 * DAY, now, 300)
        assert week["resolution"] == "1h" and week["bucket"] == 3600
        assert [p["samples"] for p in week["series"]] == [360, 360, 360, 12]
        assert week["series"][0]["cpu_percent"] == pytest.approx(29.5)
        assert (week["series"][0]["cpu_percent_min"], week["series"][0]["cpu_percent_max"]) == (0, 59)
        forced = rollup.series(store, 1, now - DAY, now, 300, resolution="raw")
        assert forced["resolution"] == "raw" and sum(p["samples"] for p in forced["series"]) == 1092
        assert rollup.series(store, 2, now - DAY, now, 300)["series"] == []

    def test_an_older_database_gets_empty_tables_then_a_backfill(self, backend, store):
        # the database as it was before m016: raw samples, no roll-up tables
        for table in ("metrics_1m", "metrics_1h", "metrics_rollup_state"):
            store._exec(f"DROP TABLE {table}")
        record = ("_sqlite_migrations" if store.MARK == "?" else "migrations")
        store._exec(f"DELETE FROM {record} WHERE name = 'm016_metrics_rollups'")
        if store.MARK == "%s":
            store.conn.commit()
        write(store, [sample(1, H0 + i * 5.0, float(i % 7)) for i in range(12 * 120)])
        again = backend.reopen(store)               # the upgrade: m016 applied on open
        try:
            assert again.count("metrics_1m") == 0 and again.count("metrics_1h") == 0
            r = MetricsRollup(RETENTION)
            catch_up(r, again, H0 + 2 * 3600 + GRACE, nodes=1)
            assert again.count("metrics_1m") == 120 and again.count("metrics_1h") == 2
            assert int(again._fetch("SELECT SUM(samples) FROM metrics_1h")[0][0]) == 1440
        finally:
            again.close()
