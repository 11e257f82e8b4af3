"""The store contract for per-node thresholds and custom alert rules (m014: node_thresholds,
alert_rules; BaseStore.load_alert_config / save_alert_config), on every backend of
tests/contract/test_store.py (SQLite, and PostgreSQL on a real server)."""

from __future__ import annotations

from architect.broker import alert_rules as R
from tests.contract.test_store import backend, store  # noqa: F401  (fixtures)


def test_alert_config_round_trip_upsert_and_delete(backend, store):  # noqa: F811
    assert {"node_thresholds", "alert_rules"} <= backend.tables(store)
    assert "m014_alert_rules" in backend.migrations(store)
    assert store.load_alert_config() == ([], [])
    cfg = R.AlertConfig()
    cfg.add(R.make_rule("disk-70", "disk_percent > 70 for 10m", "critical", "db-*", None,
                        5.0, "alice"))
    cfg.add(R.make_rule("quiet", "heartbeat_age > 30s", capability="ssd", now=6.0))
    cfg.set_overrides("db-1", {"disk": {"warning": 90.0, "critical": 97.0}}, 7.0, "bob")
    cfg.set_overrides("db-2", {"load": {"critical": 12.0}}, 8.0, "bob")
    with store.transaction():
        store.save_alert_config(cfg.take_dirty())
    rules, thresholds = store.load_alert_config()
    assert [r["name"] for r in rules] == ["disk-70", "quiet"]
    assert rules[0] == {"name": "disk-70", "expr": "disk_percent > 70 for 10m",
                        "level": "critical", "node": "db-*", "capability": None,
                        "created_at": 5.0, "created_by": "alice"}
    assert [R.overrides_of(t) for t in thresholds] == [
        {"disk": {"warning": 90.0, "critical": 97.0}}, {"load": {"critical": 12.0}}]
    cfg.add(R.make_rule("disk-70", "disk_percent > 80", now=9.0))     # replaced
    cfg.remove("quiet")
    cfg.set_overrides("db-2", {}, 10.0, "bob")                       # dropped
    cfg.set_overrides("db-1", {"cpu": {"warning": 50.0}}, 11.0, "carol")
    with store.transaction():
        store.save_alert_config(cfg.take_dirty())
    assert cfg.take_dirty() == []
    again = R.AlertConfig()
    again.load(*store.load_alert_config())
    assert list(again.rules) == ["disk-70"] and again.rules["disk-70"].expr == "disk_percent > 80"
    assert again.overrides == {"db-1": {"cpu": {"warning": 50.0}}}
    assert again.override_meta["db-1"] == (11.0, "carol")
