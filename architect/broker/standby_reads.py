"""A master's answers from the database when no active broker can be asked (several
masters on PostgreSQL: a failover under way, or the active broker out of this master's
reach). The web server asks here for reads only (ha.Master; api/broker.py), and marks the
answer `X-Architect-Source: database`.

A snapshot is a Broker built from the database exactly as a new leader builds one (nodes,
alerts, unfinished tasks; finished tasks are read from the database per request), rebuilt
when it is older than MAX_AGE. It binds nothing, dispatches nothing and writes nothing: its
store is a read-only connection, and write methods are refused with `no_leader`. Its
figures are the database's: heartbeat ages as of the active broker's last flush (1 s), no
connected workers (they are the active broker's), and health as last graded.
"""

from __future__ import annotations

import threading
import time

from architect.broker.store import Fenced
from architect.broker.store.postgres import Store, open_reader
from architect.bus.errors import RemoteError
from architect.bus.messages import Request

MAX_AGE = 1.0   # seconds a snapshot is used for


class ReaderStore(Store):
    """The PostgreSQL store on a read-only connection: no migrations, no writes."""

    def _connect(self, timeout: float = 5.0):
        return open_reader(self.url, timeout)

    def transaction(self, durable: bool = True):
        raise Fenced("a standby's view of the database writes nothing")


class DatabaseView:
    """Thread-safe: one snapshot at a time answers, under a lock."""

    def __init__(self, config, max_age: float = MAX_AGE):
        self.config = config
        self.max_age = max_age
        self._lock = threading.Lock()
        self._store: ReaderStore | None = None
        self._broker = None
        self._built = 0.0

    def _snapshot(self):
        from architect.broker.core import Broker
        if self._broker is not None and time.monotonic() - self._built < self.max_age:
            return self._broker
        if self._store is None or self._store.conn.closed or self._store.conn.broken:
            self._store = ReaderStore(self.config.database_url)
        old, self._broker = self._broker, Broker(self.config, store=self._store)
        self._built = time.monotonic()
        if old is not None:
            old.ssh.close()
        return self._broker

    def call(self, method: str, params: dict | None, on_behalf: dict | None):
        """The result of a read method, or RemoteError (no_leader for a write, or for a
        read that would wait: task.wait)."""
        with self._lock:
            try:
                broker = self._snapshot()
            except self._errors() as exc:
                raise RemoteError("store_unavailable",
                                  f"no active master, and the database cannot be read: {exc}")
            entry = broker.methods.get(method)
            if entry is None or entry.writes:
                raise RemoteError("no_leader", "no master is active right now (a failover is "
                                  "under way); try again in a few seconds")
            reply = broker.on_request(Request(id=0, method=method, params=params or {},
                                              on_behalf=on_behalf), time.time())
        if reply is None:
            raise RemoteError("no_leader", f"{method} waits for the active broker, and no "
                              "master is active right now; try again in a few seconds")
        if reply.ok:
            return reply.result
        error = reply.error or {}
        raise RemoteError(str(error.get("code", "error")), str(error.get("message", "")))

    @staticmethod
    def _errors():
        import psycopg
        return (psycopg.Error,)

    def close(self) -> None:
        with self._lock:
            if self._broker is not None:
                self._broker.ssh.close()
            if self._store is not None:
                self._store.close()
