"""Tier 1 (the Broker driven directly, time passed in): backup.run, backup.schedule and the
periodic backup the master's broker takes itself (broker/backup_handlers.py).

The backup runs on a thread (a real SQLite online backup of the broker's real database);
its answer comes on a later tick, as the loop would drive it.
"""

from __future__ import annotations

import json
import time

import pytest

from architect.broker import backup
from architect import config as config_mod
from architect.broker.core import Broker
from architect.broker.methods import Caller
from architect.bus.messages import Request
from tests.helpers import wait_for

NOW = 1_800_000_000.0


@pytest.fixture
def broker(tmp_path):
    cfg = config_mod.load(env={"ARCHITECT_DATA_DIR": str(tmp_path / "data")},
                          config_file=tmp_path / "none.json")
    b = Broker(cfg, now=NOW)
    b.persist(NOW, force=True)
    yield b
    b.close()


def ask(b, method, params=None, now=NOW, caller=None, rid=1):
    kwargs = {"caller": caller} if caller else {}
    reply = b.on_request(Request(id=rid, method=method, params=params or {}), now, token=b"t",
                         **kwargs)
    b.persist(now)
    return reply


def answered(b, now):
    """Tick until the deferred replies come (the backup thread is done)."""
    def ready():
        b.tick(now)
        return b.take_deferred()
    return wait_for(ready, 20, what="the backup's answer")


def copies(b) -> list:
    return sorted(p.name for p in b.backups.directory.glob("architect-*.db"))


def test_backup_run_answers_later_with_a_checked_copy(broker):
    assert ask(broker, "backup.run") is None            # deferred: the loop goes on
    (token, reply), = answered(broker, NOW + 1)
    assert token == b"t" and reply.ok, reply
    out = reply.result
    assert out["integrity"] == "ok" and backup.verify(out["backup"])["integrity"] == "ok"
    assert out["bytes"] > 0 and copies(broker) == [out["backup"].rsplit("/", 1)[1]]
    status = ask(broker, "backup.status").result
    assert status["last"]["backup"] == out["backup"] and status["running"] is None


def test_one_backup_at_a_time(broker):
    assert ask(broker, "backup.run") is None
    second = ask(broker, "backup.run", rid=2)
    assert not second.ok and second.error["code"] == "conflict"
    answered(broker, NOW + 1)


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_an_admin_may_back_up_or_schedule(broker, role):
    who = Caller(f"web:{role}", role, "local")
    for method, params in (("backup.run", {}), ("backup.schedule", {"every": "1h"}),
                           ("backup.status", {})):
        reply = ask(broker, method, params, caller=who)
        assert not reply.ok and reply.error["code"] == "forbidden", (method, reply)
    time.sleep(0.2)
    broker.tick(NOW + 1)
    assert broker.backups.running is None and not copies(broker)
    assert not broker.backups.policy_path.exists()


@pytest.mark.parametrize("every", ["10s", 5, "1x", -1, True, None, "400d"])
def test_bad_schedules_are_refused(broker, every):
    params = {} if every is None else {"every": every}
    reply = ask(broker, "backup.schedule", params)
    assert not reply.ok and reply.error["code"] == "bad_request", reply
    assert not broker.backups.policy_path.exists()


def test_the_schedule_backs_up_when_due_and_prunes(broker, tmp_path):
    folder = broker.backups.directory
    folder.mkdir(parents=True, exist_ok=True)
    ancient = folder / "architect-20000101-000000.db"      # one of ours, long expired
    ancient.write_text("old")
    stranger = folder / "keep-me.db"
    stranger.write_text("not ours")
    policy = ask(broker, "backup.schedule", {"every": "1h", "keep_days": 7}).result
    assert policy["every"] == 3600 and policy["next_due"] == NOW + 3600
    stored = json.loads(broker.backups.policy_path.read_text())
    assert stored["every"] == 3600 and stored["keep_days"] == 7
    broker.tick(NOW + 3599)
    assert broker.backups.running is None               # not yet
    broker.tick(NOW + 3600)
    assert broker.backups.running is not None
    wait_for(lambda: (broker.tick(NOW + 3601), broker.backups.running is None)[1], 20,
             what="the periodic backup")
    last = broker.backups.policy.last
    assert "error" not in last, last
    assert last["reason"] == "schedule" and last["pruned"] == [str(ancient)]
    assert not ancient.exists() and stranger.exists()
    assert broker.backups.policy.next_due() == NOW + 3601 + 3600


def test_a_restarted_broker_keeps_the_policy_and_catches_up_once(tmp_path):
    cfg = config_mod.load(env={"ARCHITECT_DATA_DIR": str(tmp_path / "data")},
                          config_file=tmp_path / "none.json")
    b = Broker(cfg, now=NOW)
    ask(b, "backup.schedule", {"every": "1h"})
    b.close()
    later = NOW + 10 * 3600                             # down for ten due times
    b = Broker(cfg, now=later)
    try:
        assert b.backups.policy.every == 3600
        b.tick(later)
        assert b.backups.running is not None             # one backup, at once
        wait_for(lambda: (b.tick(later + 1), b.backups.running is None)[1], 20)
        b.tick(later + 2)
        assert b.backups.running is None and len(copies(b)) == 1
        off = ask(b, "backup.schedule", {"every": "off"}, now=later + 3).result
        assert off["every"] == 0 and off["next_due"] is None
    finally:
        b.close()
