"""The leader lease and fencing (broker/lease.py, architect_fence) against a real
PostgreSQL: two Lease objects are two masters; a Store with an epoch is a broker's writer.
Process death is a closed session, a partition a session that stops renewing but stays
open (the database cannot tell), a database restart every session ended at once."""

from __future__ import annotations

import time

import psycopg
import pytest

from architect import config as config_mod
from architect.broker.core import Broker
from architect.broker.lease import HOLD_FRACTION, Lease
from architect.broker.store import Fenced
from architect.broker.store.postgres import Store
from architect.bus.messages import Request

TTL = 1.5


@pytest.fixture
def url(pg_server):
    return pg_server.create_database()


@pytest.fixture
def leases(url):
    made = []

    def make(name: str, ttl: float = TTL) -> Lease:
        lease = Lease(url, name, ttl, {"bus": {"control": f"ipc:///{name}"}, "web": name})
        made.append(lease)
        return lease
    yield make
    for lease in made:
        lease.release()


def leader(url) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        epoch, holder = conn.execute("SELECT epoch, holder FROM leader").fetchone()
    return {"epoch": epoch, "holder": holder}


def until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_one_leader_at_a_time(leases, url):
    a, b = leases("a"), leases("b")
    assert a.acquire() == 1
    assert b.acquire() is None and b.epoch is None
    assert a.held() and a.held(1) and not a.held(2) and not b.held()
    assert b.leader["holder"] == "a" and b.leader["bus"] == {"control": "ipc:///a"}
    assert a.renew() and leader(url) == {"epoch": 1, "holder": "a"}


def test_a_dead_session_is_replaced_at_once(leases, url):
    a, b = leases("a"), leases("b")
    a.acquire()
    a.conn.close()   # what kill -9 does: PostgreSQL ends the session, the lock is free
    started = time.monotonic()
    assert until(lambda: b.acquire()) == 2
    assert time.monotonic() - started < 1.0   # not the ttl: the lock was free
    assert leader(url) == {"epoch": 2, "holder": "b"}
    assert not a.renew() and a.epoch is None and not a.held()   # it learns, and stops


def test_a_silent_leader_is_cut_off_after_its_lease_expires(leases, url):
    """A partition: the old session stays open (holding the lock) but stops renewing. The
    old leader stops trusting its lease before the standby may take over."""
    a, b = leases("a"), leases("b")
    a.acquire()
    renewed = time.monotonic()
    assert b.acquire() is None       # not expired yet: the lock is held, nothing happens
    until(lambda: not a.held(), TTL)
    doubt = time.monotonic() - renewed
    assert doubt <= HOLD_FRACTION * TTL + 0.1
    assert until(lambda: b.acquire(), 10) == 2   # expired by the database clock: cut off
    took = time.monotonic() - renewed
    assert took >= TTL - 0.05 and took > doubt   # a stopped before b started
    a.step()                          # its session was ended: an error, dropped
    a.step()                          # a new session: the lock is b's → lost
    assert a.epoch is None and "another master" in a.lost_reason


def test_give_up_hands_over_without_waiting_for_the_ttl(leases, url):
    a, b = leases("a", ttl=30), leases("b", ttl=30)
    a.acquire()
    a.give_up("the broker could not start")
    assert not a.held()
    a.step()                          # the lease thread expires the row and unlocks
    started = time.monotonic()
    assert until(lambda: b.acquire(), 5) == 2
    assert time.monotonic() - started < 2


def test_a_leader_whose_session_broke_keeps_its_epoch_when_nobody_took_over(leases, url):
    """The database restarted (every session ended): the leader gets its lock back and the
    row still says its epoch, so it goes on without a failover."""
    a = leases("a")
    a.acquire()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = 'architect-lease a'")
    a.step()                      # the renewal fails: the session is gone
    a.step()                      # a new session, the lock again, the same epoch
    assert a.epoch == 1 and a.held(1) and leader(url)["epoch"] == 1


def test_the_database_refuses_a_write_from_an_old_epoch(leases, url):
    a, b = leases("a"), leases("b")
    epoch = a.acquire()
    old = Store(url, epoch=epoch, holder="a")
    with old.transaction():
        old._query("INSERT INTO users (name, role) VALUES ('before', 'viewer')")
    a.conn.close()
    until(lambda: b.acquire())
    with pytest.raises(Fenced, match="epoch 1"):
        with old.transaction():
            old._query("INSERT INTO users (name, role) VALUES ('after', 'viewer')")
    new = Store(url, epoch=2, holder="b")
    with new.transaction():
        new._query("INSERT INTO users (name, role) VALUES ('new', 'viewer')")
    names = {r["name"] for r in new._query("SELECT name FROM users")}
    assert names == {"before", "new"}
    old.close()
    new.close()


def test_a_fenced_broker_acknowledges_nothing_and_stops(leases, url, tmp_path):
    """The broker's group commit fails on the fence: the submit is refused, not acked,
    nothing is in the database, and the broker marks itself fenced (its loop stops)."""
    a, b = leases("a"), leases("b")
    epoch = a.acquire()
    env = {"ARCHITECT_DATA_DIR": str(tmp_path / "data"), "ARCHITECT_DATABASE_URL": url}
    cfg = config_mod.load(env=env, config_file=tmp_path / "none.json")
    broker = Broker(cfg, store=Store(url, epoch=epoch, holder="a"))
    a.conn.close()
    until(lambda: b.acquire())
    now = time.time()
    reply = broker.on_request(Request(id=1, method="task.submit", params={
        "task_type": "shell", "payload": {"command": "true"}}), now)
    assert reply is not None and reply.ok    # decided in memory, acked only after the commit
    assert broker.persist(now) is False and broker.fenced
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 0
    broker.store.close()


def test_a_long_broker_transaction_does_not_cost_the_lease(leases, url):
    """The fence's key-share lock lets renewals through: a commit that takes longer than
    a renewal may wait (0.4 × ttl) is not a failover."""
    import threading
    a, b = leases("a"), leases("b")
    epoch = a.acquire()
    store = Store(url, epoch=epoch, holder="a")
    started = threading.Event()

    def slow():
        with store.transaction():
            started.set()
            store._query("SELECT pg_sleep(%s)", (TTL * 0.8,))
    t = threading.Thread(target=slow)
    t.start()
    started.wait(5)
    time.sleep(0.1)
    assert a.renew() and a.held(epoch)          # not blocked by the open transaction
    assert b.acquire() is None
    t.join()
    assert a.renew() and leader(url)["epoch"] == 1
    store.close()


def test_a_takeover_waits_for_a_fenced_commit_in_flight(leases, url):
    """The old leader's transaction that passed the fence before the takeover commits
    before the new epoch exists; nothing of the old epoch lands after it."""
    import threading
    a, b = leases("a"), leases("b", ttl=5)
    epoch = a.acquire()
    old = Store(url, epoch=epoch, holder="a")
    inside, order = threading.Event(), []

    def in_flight():
        with old.transaction():
            old._query("INSERT INTO users (name, role) VALUES ('in-flight', 'viewer')")
            inside.set()
            time.sleep(0.5)
        order.append("old committed")
    t = threading.Thread(target=in_flight)
    t.start()
    inside.wait(5)
    a.conn.close()                      # the old leader's session dies: the lock is free
    assert until(lambda: b.acquire()) == 2
    order.append("new epoch")
    t.join()
    assert order == ["old committed", "new epoch"]
    with pytest.raises(Fenced):
        with old.transaction():
            old._query("INSERT INTO users (name, role) VALUES ('late', 'viewer')")
    with psycopg.connect(url, autocommit=True) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM users")}
    assert names == {"in-flight"}
    old.close()


def test_the_leader_stops_trusting_a_lease_whose_session_broke(leases, url):
    """Its lock went with the session: a standby may hold it already, so held() is False
    at once (not after 0.6 × ttl)."""
    a = leases("a", ttl=30)
    epoch = a.acquire()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = 'architect-lease a'")
    a.step()                            # the renewal finds the session gone
    assert not a.held(epoch)
    a.step()                            # nobody took over: the same epoch, trusted again
    assert a.held(epoch)
