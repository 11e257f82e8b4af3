"""`architect server` on PostgreSQL: one of several masters (ARCHITECTURE.md §11).

A Master is standby until its Lease (lease.py) makes it the leader; then it builds a broker
from the database (the same start as after a restart: unfinished tasks wait for their
workers to claim them) with every transaction fenced by the lease's epoch, and runs its
loop. It goes back to standby, closing the bus, as soon as the lease is in doubt or the
database fences it; a standby never binds the bus. The web server of every master stays
up: a standby forwards the dashboard's and the API's calls to the active broker, whose
addresses are in the leader row (route()).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from architect.broker.lease import Lease

log = logging.getLogger("architect.ha")


def holder_name(config) -> str:
    """Who holds the lease: the master's name and this process (unique per run)."""
    return f"{config.node_name or socket.gethostname()}:{os.getpid()}"


class Master:
    """Runs as one of _Together's runners (run / stop), beside the web server.
    make_loop(epoch, holder, guard) builds the broker loop for a won lease (binds the bus);
    guard() is False as soon as the lease is in doubt (the store then writes nothing)."""

    def __init__(self, config, make_loop, advert: dict, local_route):
        self.config = config
        self.make_loop = make_loop
        self.holder = holder_name(config)
        self.lease = Lease(config.database_url, self.holder, config.lease_ttl, advert)
        self.local_route = local_route   # (control endpoint, curve) of our own broker
        self.role = "standby"
        self.since = time.time()
        self.last_demotion = ""
        self.stop_event = threading.Event()
        self._lease_stop = threading.Event()
        self._loop = None

    # --- what the web server reads ---------------------------------------------------
    def info(self) -> dict:
        leader = self.lease.leader if self.role == "active" else self.lease.known_leader()
        return {"role": self.role, "epoch": self.lease.epoch if self.role == "active" else None,
                "since": self.since, "holder": self.holder, "ha": True,
                "lease_ttl": self.config.lease_ttl,
                "leader": {k: leader.get(k) for k in ("holder", "epoch", "since", "web",
                                                      "expired")} if leader else None,
                **({"last_demotion": self.last_demotion} if self.last_demotion else {})}

    def leader_bus(self) -> dict | None:
        """The active broker's bus (what /api/bus answers), or None during a failover."""
        if self.role == "active":
            return self.lease.advert.get("bus")
        leader = self.lease.known_leader()
        return leader.get("bus") if leader else None

    def route(self):
        """(control endpoint, CURVE options or None) of the active broker, or None."""
        if self.role == "active":
            return self.local_route
        bus = self.leader_bus()
        if bus is None:
            return None
        curve = None
        if bus.get("server_key"):
            from architect.bus.security import local_client
            mine = local_client(self.config.data_dir)  # the masters share this key (keymirror)
            if mine is not None:
                curve = {**mine, "server": bus["server_key"].encode()}
        return bus["control"], curve

    # --- running ----------------------------------------------------------------------
    def run(self) -> None:
        keeper = threading.Thread(target=self.lease.keep, args=(self._lease_stop,),
                                  name="lease", daemon=True)
        keeper.start()
        log.info("master %s: standby until it holds the lease (ttl %gs)", self.holder,
                 self.config.lease_ttl)
        try:
            while not self.stop_event.is_set():
                epoch = self.lease.epoch
                if epoch is None or not self.lease.held(epoch):
                    self.stop_event.wait(0.05)
                    continue
                self._lead(epoch)
        finally:
            self._lease_stop.set()
            keeper.join(10)

    def _lead(self, epoch: int) -> None:
        guard = lambda: self.lease.held(epoch)  # noqa: E731
        try:
            loop = self.make_loop(epoch, self.holder, guard)
        except Exception as exc:  # e.g. the database went away while the broker loaded
            log.error("master %s: the broker could not start with epoch %d: %s", self.holder,
                      epoch, exc)
            self.lease.give_up(f"the broker could not start: {exc}")
            self.stop_event.wait(1.0)
            return
        self._loop = loop
        if self.stop_event.is_set():   # stopped while the broker was loading
            loop.stop()
        self.role, self.since = "active", time.time()
        log.info("master %s: active, epoch %d", self.holder, epoch)
        done = threading.Event()
        watchdog = threading.Thread(target=self._watch, args=(loop, guard, done),
                                    name="lease-watchdog", daemon=True)
        watchdog.start()
        try:
            loop.run(guard=guard)
        finally:
            done.set()
            self._loop = None
            self.role, self.since = "standby", time.time()
        if self.stop_event.is_set():
            return
        broker = _broker_of(loop)
        fenced = getattr(broker, "fenced", False)
        why = f"fenced ({fenced})" if fenced else "its lease was in doubt"
        self.last_demotion = f"epoch {epoch} ended at {time.time():.3f}: {why}"
        log.warning("master %s: standby again, %s", self.holder, why)
        if self.lease.epoch == epoch:
            self.lease.give_up(why)   # a fenced or failed loop: hand over at once

    def _watch(self, loop, guard, done: threading.Event) -> None:
        """When the lease goes into doubt while the broker's thread waits on the database
        (a partition: the statement would wait for TCP), cut that wait short, so the loop
        sees its guard at once and stops dispatching."""
        while not done.wait(0.05):
            if not guard():
                store = _store_of(loop)
                if store is not None:
                    store.interrupt()
                loop.stop()
                return

    def stop(self) -> None:
        self.stop_event.set()
        loop = self._loop
        if loop is not None:
            loop.stop()


def _broker_of(loop):
    """The Broker of a BrokerLoop, or of the loop inside a local-bus runner."""
    return getattr(loop, "broker", None) or getattr(getattr(loop, "loop", None), "broker", None)


def _store_of(loop):
    broker = _broker_of(loop)
    return getattr(broker, "store", None)
