"""Metrics roll-ups: raw samples → 1-minute → 1-hour aggregates, each level with its own
retention, and the chart query that reads the right level for its window.

    raw `metrics`      every heartbeat's sample      metrics_retention_days     (1)
    `metrics_1m`       per node and minute           metrics_1m_retention_days  (14)
    `metrics_1h`       per node and hour             metrics_1h_retention_days  (365)

A roll-up row holds `samples` (how many raw samples it covers) and, for each charted metric
(VALUES), its average under the metric's own name plus `<name>_min` and `<name>_max`. The
hour's average is the minutes' averages weighted by their samples, so it equals the average
of the raw samples.

Incremental, each closed period once: `metrics_rollup_state` holds, per level, the time up
to which it is rolled (`done_until`). A step rolls the periods in [done_until, horizon) —
at most MAX_ROWS source rows' worth — and moves done_until in the same transaction as the
roll-up rows, so a tick that runs twice, or a broker restarted between two steps, never
rolls a period again (and the primary key (node_id, ts) would refuse it). A minute is closed
GRACE seconds after its end and once no sample of it is still waiting in the broker's
buffer. The broker's tick calls MetricsRollup.tick(): when it is behind (after an upgrade,
or a broker that was down) it rolls in chunks a fraction of a second apart, never one long
stall; when caught up, once a minute.

An upgraded database gets the tables empty (migration m016); the first steps backfill from
the raw samples it still has, from at most metrics_1m_retention_days ago (bounded). Raw
samples are deleted by their retention only once rolled (raw_cutoff), and minutes only once
rolled into their hour.

Time is a parameter everywhere. The SQL (on SQLite and PostgreSQL alike) is in
store/rollup.py; this module decides when and how much.
"""

from __future__ import annotations

import logging
import math

from architect.broker.store.base import Fenced
from architect.broker.store.rollup import (  # noqa: F401  (re-exported: the roll-up's names)
    MINUTE_MAX, RAW_MAX, RESOLUTIONS, ROLLUP_COLUMNS, TABLE, VALUES, WIDTH, _floor, choose,
    load_state, purge_level, series, step_level)

log = logging.getLogger("architect.broker.rollup")

GRACE = 5.0            # seconds after a minute ends before it is rolled
MAX_ROWS = 20_000      # source rows one step reads at most (~40 ms on SQLite)
BEHIND_DELAY = 0.25    # seconds between chunks while catching up
ERROR_DELAY = 5.0      # after the database failed
PURGE_INTERVAL = 3600.0
PURGE_CHUNK = 50_000


class MetricsRollup:
    """The broker's roll-up clock: when to roll, how much at a time, what retention may
    delete. Holds no connection: every call gets the store (the broker loop's)."""

    def __init__(self, retention: dict[str, float], interval: float = 5.0,
                 max_rows: int = MAX_ROWS):
        """retention: seconds each level ("raw", "1m", "1h") is kept; interval: the
        heartbeat (sample) interval, to size chunks."""
        self.retention = dict(retention)
        self.interval = max(float(interval), 0.1)
        self.max_rows = max_rows
        self.state: dict[str, float] | None = None   # loaded at the first tick
        self.next_at = 0.0
        self._next_purge = 0.0
        self.counters = {"rolled_1m": 0, "rolled_1h": 0, "purged_1m": 0, "purged_1h": 0}

    @classmethod
    def from_config(cls, config) -> "MetricsRollup":
        return cls({"raw": config.metrics_retention_days * 86400,
                    "1m": config.metrics_1m_retention_days * 86400,
                    "1h": config.metrics_1h_retention_days * 86400},
                   interval=config.heartbeat_interval)

    def step(self, store, now: float, nodes: int, pending_since: float | None = None) -> dict:
        """One chunk of each level: {"1m": rows, "1h": rows, "more": bool}. nodes: how many
        nodes send samples (sizes the chunk); pending_since: the oldest sample not yet
        written (the broker's buffer), whose minute is not closed yet."""
        if self.state is None:
            self.state = load_state(store)
        horizon = now - GRACE
        if pending_since is not None:
            horizon = min(horizon, pending_since)
        per_minute = max(nodes, 1) * 60.0 / self.interval
        backfill = now - self.retention["1m"]
        rows_1m, more_1m = step_level(store, "1m", self.state, horizon, now, per_minute,
                                      self.max_rows, backfill)
        rows_1h, more_1h = step_level(store, "1h", self.state, self.state.get("1m", horizon),
                                      now, max(nodes, 1) * 60.0, self.max_rows,
                                      now - self.retention["1h"])
        self.counters["rolled_1m"] += rows_1m
        self.counters["rolled_1h"] += rows_1h
        return {"1m": rows_1m, "1h": rows_1h, "more": more_1m or more_1h}

    def purge(self, store, now: float, limit: int = PURGE_CHUNK) -> dict:
        """Retention of the roll-up levels, each deleting only its own rows, at most
        `limit` of each; a minute goes only once rolled into its hour. → {level: rows}."""
        out = {}
        if self.state is None:
            self.state = load_state(store)
        state = self.state
        for level in ("1m", "1h"):
            cutoff = now - self.retention[level]
            if level == "1m":
                cutoff = min(cutoff, state.get("1h", -math.inf))
            if cutoff == -math.inf:
                out[level] = 0
                continue
            with store.transaction(durable=False):
                out[level] = purge_level(store, level, cutoff, limit)
            self.counters[f"purged_{level}"] += out[level]
        return out

    def raw_cutoff(self, cutoff: float) -> float:
        """The raw retention's cutoff, held back to what is rolled into minutes (0: delete
        nothing, while the roll-up state is not known)."""
        done = (self.state or {}).get("1m")
        return 0.0 if done is None else min(cutoff, done)

    def tick(self, store, now: float, nodes: int, pending_since: float | None = None) -> None:
        """From the broker's tick when now ≥ next_at: one chunk, then retention hourly."""
        try:
            done = self.step(store, now, nodes, pending_since)
            if done["more"]:
                self.next_at = now + BEHIND_DELAY
            else:   # caught up: the next minute, once it is closed
                self.next_at = _floor(now, 60) + 60 + GRACE
            if now >= self._next_purge:
                purged = self.purge(store, now)
                if any(n >= PURGE_CHUNK for n in purged.values()):
                    self._next_purge = now + 1.0
                    self.next_at = min(self.next_at, now + 1.0)
                else:
                    self._next_purge = now + PURGE_INTERVAL
                if any(purged.values()):
                    log.info("metrics roll-up retention: purged %d minute and %d hour rows",
                             purged["1m"], purged["1h"])
        except (*store.errors, Fenced) as exc:
            self.state = None   # reread after a rollback
            self.next_at = now + ERROR_DELAY
            log.warning("metrics roll-up failed (%s); will retry",
                        str(exc).strip().splitlines()[0] if str(exc).strip() else
                        type(exc).__name__)
        except Exception:   # a bug here must not stop the broker's writes (tick → persist)
            self.state = None
            self.next_at = now + ERROR_DELAY
            log.exception("metrics roll-up failed; will retry")
