"""The SQL of the metrics roll-ups, on any backend (broker/rollup.py decides when and how
much), written once over the backends' _fetch / _exec and MARK, like BaseStore's shared SQL:
the same on SQLite and PostgreSQL but for flooring (Dialect).

    raw `metrics`           every heartbeat's sample
    `metrics_1m`            per node and minute: samples, min / avg / max of each of VALUES
    `metrics_1h`            per node and hour, from the minutes (averages weighted by samples)
    `metrics_rollup_state`  per level, the time up to which it is rolled (done_until)

step_level rolls whole periods in [done_until, horizon) and moves done_until in the same
transaction, so no period is rolled twice; series() reads a chart from the level its
window needs, and the part not rolled yet from the finer levels.
"""

from __future__ import annotations

import math

VALUES = ("cpu_percent", "memory_percent", "disk_percent", "load_1")
ROLLUP_COLUMNS = ("node_id", "ts", "samples",
                  *(f"{v}{s}" for v in VALUES for s in ("", "_min", "_max")))
WIDTH = {"raw": 0, "1m": 60, "1h": 3600}
TABLE = {"raw": "metrics", "1m": "metrics_1m", "1h": "metrics_1h"}
SOURCE = {"1m": "raw", "1h": "1m"}         # what each level is rolled from
RESOLUTIONS = ("raw", "1m", "1h")
# the chart's choice: raw up to RAW_MAX seconds of window, 1-minute up to MINUTE_MAX
RAW_MAX = 6 * 3600
MINUTE_MAX = 2 * 86400


class Dialect:
    """The few SQL spellings that differ: SQLite (?) and PostgreSQL (%s)."""

    def __init__(self, mark: str):
        self.m = mark
        self.pg = mark == "%s"

    def floor(self, expr: str, width: int) -> str:
        """expr (seconds ≥ 0) floored to a multiple of width, as an integer."""
        if self.pg:
            return f"CAST(floor(({expr}) / {width}.0) AS BIGINT) * {width}"
        return f"CAST(({expr}) / {width} AS INTEGER) * {width}"

    def bucket(self) -> str:
        """The bucket index of ts, given (since, width) parameters."""
        if self.pg:
            return f"CAST(floor((ts - {self.m}::float8) / {self.m}::float8) AS BIGINT)"
        return f"CAST((ts - {self.m}) / {self.m} AS INTEGER)"


def _dialect(store) -> Dialect:
    return Dialect(store.MARK)


# --- state ------------------------------------------------------------------------------
def load_state(store) -> dict[str, float]:
    """{level: done_until} of the levels rolled so far. A read."""
    return {level: float(t) for level, t in
            store._fetch("SELECT level, done_until FROM metrics_rollup_state")}


def _save_state(store, level: str, done_until: float) -> None:
    m = store.MARK
    store._exec(f"INSERT INTO metrics_rollup_state (level, done_until) VALUES ({m}, {m}) "
                "ON CONFLICT (level) DO UPDATE SET done_until = excluded.done_until",
                (level, float(done_until)))


def _scalar(store, sql: str, params=()):
    rows = store._fetch(sql, params)
    return rows[0][0] if rows else None


# --- rolling one level ------------------------------------------------------------------
def _aggregates(level: str) -> str:
    """SELECT list of a roll-up row from its source level."""
    if SOURCE[level] == "raw":
        return ", ".join(f"AVG({v}), MIN({v}), MAX({v})" for v in VALUES)
    return ", ".join(
        f"SUM({v} * samples) / SUM(CASE WHEN {v} IS NOT NULL THEN samples END), "
        f"MIN({v}_min), MAX({v}_max)" for v in VALUES)


def roll(store, level: str, start: float, stop: float) -> int:
    """Roll the source rows with start ≤ ts < stop into `level` (whole periods: start and
    stop are multiples of its width). Inside the caller's transaction; returns the rows
    written. Rows already there are kept (never counted twice)."""
    d, m = _dialect(store), store.MARK
    width, src = WIDTH[level], TABLE[SOURCE[level]]
    count = "COUNT(*)" if SOURCE[level] == "raw" else "SUM(samples)"
    sql = (f"INSERT INTO {TABLE[level]} ({', '.join(ROLLUP_COLUMNS)}) "
           f"SELECT node_id, {d.floor('ts', width)}, {count}, {_aggregates(level)} "
           f"FROM {src} WHERE ts >= {m} AND ts < {m} AND node_id IS NOT NULL "
           "GROUP BY 1, 2 ON CONFLICT (node_id, ts) DO NOTHING")
    return store._exec(sql, (start, stop))


def _floor(t: float, width: int) -> float:
    return float(math.floor(t / width) * width)


def step_level(store, level: str, state: dict, horizon: float, now: float,
               rows_per_period: float, max_rows: int, backfill_from: float) -> tuple[int, bool]:
    """Roll the next chunk of closed periods of `level` (those ending at or before
    `horizon`), in one transaction with its new done_until; updates `state` after the
    commit. → (rows written, whether more is left)."""
    width = WIDTH[level]
    end = _floor(horizon, width)
    done = state.get(level)
    src, m = TABLE[SOURCE[level]], store.MARK
    if done is None:   # first step on this database: start at the oldest source row kept
        first = _scalar(store, f"SELECT MIN(ts) FROM {src} WHERE ts >= {m}", (backfill_from,))
        done = _floor(first, width) if first is not None else end
        if first is None or done >= end:
            with store.transaction(durable=False):
                _save_state(store, level, min(done, end))
            state[level] = min(done, end)
            return 0, False
    if end <= done:
        return 0, False
    nxt = _scalar(store, f"SELECT MIN(ts) FROM {src} WHERE ts >= {m} AND ts < {m}",
                  (done, end))
    if nxt is None:   # nothing in [done, end): skip the gap
        with store.transaction(durable=False):
            _save_state(store, level, end)
        state[level] = end
        return 0, False
    start = max(done, _floor(nxt, width))
    periods = max(1, int(max_rows // max(rows_per_period, 1.0)))
    stop = min(end, start + periods * width)
    with store.transaction(durable=False):
        rows = roll(store, level, start, stop)
        _save_state(store, level, stop)
    state[level] = stop
    return rows, stop < end


def purge_level(store, level: str, cutoff: float, limit: int) -> int:
    """Delete at most `limit` rows of one roll-up level older than `cutoff` (that level's
    table only). Inside the caller's transaction."""
    m, table = store.MARK, TABLE[level]
    return store._exec(f"DELETE FROM {table} WHERE (node_id, ts) IN (SELECT node_id, ts FROM "
                       f"{table} WHERE ts < {m} LIMIT {m})", (cutoff, limit))


# --- the chart's read ---------------------------------------------------------------------
def choose(window: float, retention: dict[str, float] | None = None) -> str:
    """The resolution for a window (seconds back from now): raw for short ones, minutes up
    to two days, hours beyond — and never a level whose retention is shorter than the
    window (its older part would be missing)."""
    retention = retention or {}
    wanted = "raw" if window <= RAW_MAX else "1m" if window <= MINUTE_MAX else "1h"
    for level in RESOLUTIONS[RESOLUTIONS.index(wanted):]:
        if level == "1h" or retention.get(level, math.inf) >= window:
            return level
    return "1h"


def _buckets(store, level: str, node_id: int, since: float, until: float,
             lo: float, hi: float, width: float) -> dict[int, dict]:
    """Rows of `level` with lo ≤ ts < hi (≤ hi for the last part) in buckets of `width`
    from `since`: {index: {ts, samples, v: (sum of v·weight, weight), v_min, v_max}}."""
    d, m = _dialect(store), store.MARK
    if level == "raw":
        cols = ", ".join(f"SUM({v}), COUNT({v}), MIN({v}), MAX({v})" for v in VALUES)
        inner = f"ts, 1 AS samples, {', '.join(VALUES)}"
    else:
        cols = ", ".join(f"SUM({v} * samples), SUM(CASE WHEN {v} IS NOT NULL THEN samples END),"
                         f" MIN({v}_min), MAX({v}_max)" for v in VALUES)
        inner = "ts, samples, " + ", ".join(f"{v}, {v}_min, {v}_max" for v in VALUES)
    upper = "<=" if hi >= until else "<"
    sql = (f"SELECT b, MIN(ts), SUM(samples), {cols} FROM (SELECT {d.bucket()} AS b, {inner} "
           f"FROM {TABLE[level]} WHERE node_id = {m} AND ts >= {m} AND ts {upper} {m}) AS s "
           "GROUP BY b ORDER BY b")
    out = {}
    for row in store._fetch(sql, (since, width, node_id, lo, hi)):
        item = {"ts": float(row[1]), "samples": int(row[2] or 0)}
        for i, v in enumerate(VALUES):
            total, weight, low, high = row[3 + 4 * i: 7 + 4 * i]
            item[v] = (float(total or 0.0), float(weight or 0))
            item[f"{v}_min"], item[f"{v}_max"] = low, high
        out[int(row[0])] = item
    return out


def _merge(into: dict[int, dict], more: dict[int, dict]) -> None:
    for b, item in more.items():
        have = into.get(b)
        if have is None:
            into[b] = item
            continue
        have["ts"] = min(have["ts"], item["ts"])
        have["samples"] += item["samples"]
        for v in VALUES:
            have[v] = (have[v][0] + item[v][0], have[v][1] + item[v][1])
            for suffix, pick in (("_min", min), ("_max", max)):
                values = [x for x in (have[f"{v}{suffix}"], item[f"{v}{suffix}"]) if x is not None]
                have[f"{v}{suffix}"] = pick(values) if values else None


def series(store, node_id: int, since: float, until: float, points: int,
           resolution: str | None = None, retention: dict[str, float] | None = None) -> dict:
    """One node's chart in [since, until] in at most `points` buckets, read from the level
    its window needs (choose) or the one asked for: {resolution, bucket (seconds),
    series: [{ts (the bucket's first sample or period), samples, cpu_percent, memory_percent,
    disk_percent, load_1 (averages), and <metric>_min / <metric>_max}]}. The part newer
    than what the level has rolled is read from the finer levels, so the chart reaches
    `until`. A read: any time."""
    window = max(until - since, 1e-3)
    level = resolution or choose(window, retention)
    if level not in WIDTH:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}")
    width = max(window / max(points, 1), WIDTH[level], 1e-3)
    state = load_state(store) if level != "raw" else {}
    parts, lo = [], since
    for lvl in RESOLUTIONS[RESOLUTIONS.index(level):0:-1]:   # coarse → fine, raw last
        done = state.get(lvl)
        if done is None:
            continue
        hi = min(until, done)
        if hi > lo:
            parts.append((lvl, lo, hi))
            lo = hi
    parts.append(("raw", lo, until))
    merged: dict[int, dict] = {}
    for lvl, lo, hi in parts:
        if hi >= lo:
            _merge(merged, _buckets(store, lvl, node_id, since, until, lo, hi, width))
    out = []
    for b in sorted(merged):
        item = merged[b]
        row = {"ts": item["ts"], "samples": item["samples"]}
        for v in VALUES:
            total, weight = item[v]
            row[v] = total / weight if weight else None
            row[f"{v}_min"], row[f"{v}_max"] = item[f"{v}_min"], item[f"{v}_max"]
        out.append(row)
    return {"resolution": level, "bucket": width, "series": out}
