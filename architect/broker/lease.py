"""The leader lease of several masters on one PostgreSQL (ARCHITECTURE.md §11).

Every `architect server` with the same database URL runs one Lease. The holder of two
things is the active broker:
- a session-level advisory lock (LEASE_LOCK) on the lease's own connection: PostgreSQL
  frees it the moment that session ends, so a killed master is replaced at once;
- the `leader` row (postgres_migrations.m005): epoch, holder, since, expires_at (database
  time), and the bus and web addresses nodes and the other masters use.

Taking over bumps the epoch. Every transaction of the active broker starts with
architect_fence(epoch), which refuses an old epoch (store.Fenced): whatever an old leader
still tries after a takeover is refused by the database, so no task is assigned by two
brokers at once.

The holder renews the row every ttl/5 seconds. It trusts its lease only HOLD_FRACTION × ttl
after the last renewal *began* (held()), so a leader cut off from the database stops
dispatching before a standby may take over: a standby takes over a session that still holds
the lock only when the row has expired by the database's clock, ending that session first
(pg_terminate_backend: the same database role, or pg_signal_backend, is needed).
"""

from __future__ import annotations

import json
import logging
import threading
import time

import psycopg

from architect.broker.store import postgres_migrations
from architect.broker.store.postgres import broker_app_name, connect

log = logging.getLogger("architect.lease")

LEASE_LOCK = 0x61726369        # pg_advisory_lock key of the lease ("arci")
HOLD_FRACTION = 0.6            # of ttl: how long after a renewal began the holder trusts it
ACQUIRE_EVERY = 0.2            # seconds between a standby's attempts (one cheap query each)
_NOW = "extract(epoch from clock_timestamp())"


def lease_app_name(holder: str) -> str:
    return f"architect-lease {holder}"


class Lease:
    """One master's side of the lease. The lease thread calls step() (keep() does, in a
    loop); the broker's thread asks held(). Thread-safe for that split."""

    def __init__(self, url: str, holder: str, ttl: float = 5.0, advert: dict | None = None):
        self.url, self.holder, self.ttl = url, holder, ttl
        self.advert = advert or {}          # {"bus": {...}, "web": "http://..."}
        self.conn: psycopg.Connection | None = None
        self.locked = False                 # the advisory lock, on self.conn
        self.epoch: int | None = None       # ours while we lead
        self.since: float | None = None
        self._renewed = 0.0                 # monotonic start of the last good renewal
        self.leader: dict = {}              # the leader row as last read
        self.lost_reason = ""
        self._surrender: tuple[int, str] | None = None   # give_up(), done by the lease thread
        self._lock = threading.Lock()

    # --- what the broker's thread asks ---------------------------------------------------
    def held(self, epoch: int | None = None) -> bool:
        """Do we lead (with `epoch`, when given), renewed recently enough to be sure?"""
        with self._lock:
            ours = self.epoch is not None and (epoch is None or epoch == self.epoch)
            return ours and time.monotonic() - self._renewed < HOLD_FRACTION * self.ttl

    # --- the lease thread ----------------------------------------------------------------
    def keep(self, stop: threading.Event) -> None:
        """Acquire, then renew, until `stop`; release at the end."""
        try:
            while not stop.is_set():
                self.step()
                stop.wait(self.ttl / 5 if self.epoch is not None else ACQUIRE_EVERY)
        finally:
            self.release()

    def step(self) -> None:
        try:
            if self._surrender is not None:
                self._surrender_now()
            elif self.epoch is None:
                self.acquire()
            else:
                self.renew()
        except psycopg.Error as exc:
            log.warning("lease: database error (%s)", str(exc).strip().splitlines()[0]
                        if str(exc).strip() else type(exc).__name__)
            if self.conn is None or self.conn.closed or self.conn.broken:
                # the session is gone, and the lock with it: another master may take it
                # now, so we are no longer sure we lead (held() is False at once)
                with self._lock:
                    self._renewed = float("-inf")
                self._drop_conn()
            # else (a statement timed out, a lock wait): the session, and the lock, stay
        except Exception:   # a bug must not end the lease thread (the master would hang)
            log.exception("lease: step failed")
            with self._lock:
                self._renewed = float("-inf")
            self._drop_conn()

    def _connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self._drop_conn()
            conn = connect(self.url, timeout=max(1.0, self.ttl / 2),
                           name=lease_app_name(self.holder), io_timeout=self.ttl / 5)
            try:
                postgres_migrations.apply(conn)  # the leader row must exist
                conn.commit()
                conn.autocommit = True
            except BaseException:
                conn.close()
                raise
            ms = int(self.ttl * 400)  # a statement never outlives 40 % of the ttl
            conn.execute(f"SET statement_timeout = {ms}")
            conn.execute(f"SET lock_timeout = {ms}")
            self.conn, self.locked = conn, False
        return self.conn

    def _drop_conn(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
        self.conn, self.locked = None, False

    def read(self) -> dict:
        """The leader row, with `expired` and `now` by the database's clock."""
        row = self._connection().execute(
            f"SELECT epoch, holder, since, renewed_at, expires_at, bus, web, {_NOW} "
            "FROM leader WHERE id = 1").fetchone()
        epoch, holder, since, renewed, expires, bus, web, now = row
        self.leader = {"epoch": epoch, "holder": holder, "since": since, "renewed_at": renewed,
                       "expires_at": expires, "expired": expires is None or expires <= now,
                       "bus": json.loads(bus) if bus else None, "web": web, "read_at": now,
                       "read_mono": time.monotonic()}
        return self.leader

    def known_leader(self) -> dict | None:
        """The leader row as read within the last ttl, if it names a live leader other than
        us; None when we cannot tell (the database is out of reach) or nobody leads."""
        row = self.leader
        if not row or row.get("expired") or not row.get("holder") or \
                row["holder"] == self.holder or \
                time.monotonic() - row.get("read_mono", 0.0) > self.ttl:
            return None
        return row

    def acquire(self) -> int | None:
        """One attempt to become the leader: the epoch, or None (another leads)."""
        started = time.monotonic()
        conn = self._connection()
        if not self.locked:
            self.locked = conn.execute("SELECT pg_try_advisory_lock(%s)",
                                       (LEASE_LOCK,)).fetchone()[0]
        if not self.locked:
            row = self.read()
            if row["holder"] and row["expired"]:
                self._cut_off(row["holder"])
            return None
        with self._lock, conn.transaction():
            # FOR UPDATE waits for every fenced transaction in flight (their KEY SHARE
            # lock on this row): an old leader's commit never lands after the new epoch
            conn.execute("SELECT 1 FROM leader WHERE id = 1 FOR UPDATE")
            row = conn.execute(
                f"UPDATE leader SET epoch = epoch + 1, holder = %s, since = {_NOW}, "
                f"renewed_at = {_NOW}, expires_at = {_NOW} + %s, bus = %s, web = %s "
                "WHERE id = 1 RETURNING epoch, since",
                (self.holder, self.ttl, json.dumps(self.advert.get("bus")),
                 self.advert.get("web"))).fetchone()
            self.epoch, self.since = row
            self._renewed = started
            self.lost_reason = ""
        self.read()
        log.info("lease: %s is the active master, epoch %d", self.holder, self.epoch)
        return self.epoch

    def _cut_off(self, holder: str) -> None:
        """The holder let its lease expire but its session still holds the lock (a master
        cut off from the network, or hung): end its sessions, so the lock is free."""
        if holder == self.holder:
            return
        ended = self._connection().execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name IN (%s, %s) AND pid <> pg_backend_pid()",
            (lease_app_name(holder), broker_app_name(holder))).fetchone()[0]
        log.warning("lease: %s let its lease expire; ended %d of its database sessions",
                    holder, ended)

    def renew(self) -> bool:
        started = time.monotonic()
        conn = self._connection()
        if not self.locked:  # a new session (the database restarted, or the link broke)
            self.locked = conn.execute("SELECT pg_try_advisory_lock(%s)",
                                       (LEASE_LOCK,)).fetchone()[0]
            if not self.locked:
                return self._lost("another master holds the lock")
        cur = conn.execute(
            f"UPDATE leader SET renewed_at = {_NOW}, expires_at = {_NOW} + %s "
            "WHERE id = 1 AND epoch = %s AND holder = %s", (self.ttl, self.epoch, self.holder))
        if cur.rowcount != 1:
            return self._lost("another master took over")
        with self._lock:
            self._renewed = started
        return True

    def _lost(self, why: str, epoch: int | None = None) -> bool:
        with self._lock:
            epoch = self.epoch if epoch is None else epoch
            if epoch is not None:
                log.warning("lease: %s lost epoch %d: %s", self.holder, epoch, why)
            self.epoch, self.since, self.lost_reason = None, None, why
        if self.locked and self.conn is not None and not self.conn.broken:
            try:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (LEASE_LOCK,))
            except psycopg.Error:
                self._drop_conn()
        self.locked = False
        return False

    def give_up(self, why: str) -> None:
        """Stop leading now (the broker could not start, or it was fenced): held() is
        False at once; the lease thread then expires the row, so a standby takes over
        without waiting for the ttl. Any thread."""
        with self._lock:
            if self.epoch is not None:
                self._surrender = (self.epoch, why)
                self.epoch = None

    def _surrender_now(self) -> None:
        epoch, why = self._surrender
        self._surrender = None
        if self.conn is not None and not self.conn.broken:
            self.conn.execute(f"UPDATE leader SET expires_at = {_NOW} "
                              "WHERE id = 1 AND epoch = %s AND holder = %s",
                              (epoch, self.holder))
        self._lost(why, epoch)   # (the epoch stays None throughout: nobody re-promotes)

    def release(self) -> None:
        """On a clean stop (the lease thread): hand over at once, and close."""
        self.give_up("stopped")
        try:
            if self._surrender is not None:
                self._surrender_now()
        except psycopg.Error:
            pass
        self._drop_conn()
