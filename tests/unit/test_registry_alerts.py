"""Tier 1: the node registry and the alert book. Pure state; time is passed in."""

from __future__ import annotations

import pytest

from architect.broker import health
from architect.broker.alerts import AlertBook
from architect.broker.health import CRITICAL, HEALTHY, OFFLINE, WARNING, Thresholds
from architect.broker.registry import (InvalidNode, LevelChange, Node, Registry,
                                       check_capabilities, check_name, clean_metrics)

TIMEOUT = 120.0
CALM = {"cpu_percent": 10.0, "memory_percent": 20.0, "disk_percent": 30.0, "load_1": 0.5}
WARM = {**CALM, "cpu_percent": 85.0}          # warning (cpu >= 80)
HOT = {**CALM, "memory_percent": 99.0}        # critical (memory >= 95)


IMMEDIATE = health.Policy(samples=1)   # the tests below grade every sample at once


@pytest.fixture
def reg() -> Registry:
    return Registry(Thresholds(), TIMEOUT, policy=IMMEDIATE)


def row(**kw) -> dict:
    """A `nodes` table row as Registry.load() reads it."""
    base = {"id": 1, "name": "n1", "hostname": "h", "ip_address": "10.0.0.1",
            "capabilities": ["gpu"], "ssh": None, "status": HEALTHY, "reasons": [],
            "drained": 0, "registered_at": 10.0, "last_seen": 100.0, "last_metrics": CALM,
            "source": "register"}
    base.update(kw)
    return base


# ---------------------------------------------------------------------------------------------
# Registration and lookup

def test_register_new_node(reg):
    node, created = reg.register("web-1", 50.0, hostname="web-1.lan", ip_address="10.0.0.5",
                                 capabilities=["ssd", "gpu", "gpu"], ssh={"user": "ops"})
    assert created
    assert node.id == 1 and node.name == "web-1"
    assert node.hostname == "web-1.lan" and node.ip_address == "10.0.0.5"
    assert node.capabilities == ["gpu", "ssd"]  # sorted, deduplicated
    assert node.ssh == {"user": "ops"}
    assert node.registered_at == 50.0 and node.last_seen == 0.0
    assert node.source == "register"
    assert node.status == HEALTHY


def test_register_again_updates_in_place(reg):
    node, _ = reg.register("web-1", 1.0, hostname="old", ip_address="10.0.0.1",
                           capabilities=["a"])
    again, created = reg.register("web-1", 2.0, hostname="", ip_address="10.0.0.2")
    assert not created and again is node
    assert node.id == 1
    assert node.hostname == "old"            # empty means "keep"
    assert node.ip_address == "10.0.0.2"
    assert node.capabilities == ["a"]        # None means "keep"
    assert node.registered_at == 1.0
    reg.register("web-1", 3.0, capabilities=[])
    assert node.capabilities == []


def test_ids_are_sequential_and_not_reused(reg):
    a, _ = reg.register("a", 0)
    b, _ = reg.register("b", 0)
    reg.remove(a)
    c, _ = reg.register("c", 0)
    assert (a.id, b.id, c.id) == (1, 2, 3)


def test_get_by_id_digits_and_name(reg):
    a, _ = reg.register("alpha", 0)
    b, _ = reg.register("beta", 0)
    assert reg.get(1) is a and reg.get(2) is b
    assert reg.get("1") is a and reg.get("2") is b
    assert reg.get("alpha") is a and reg.get("beta") is b
    assert reg.get("gamma") is None
    assert reg.get(3) is None and reg.get("3") is None and reg.get(0) is None


@pytest.mark.parametrize("key", [True, False, None, 1.0, [1], b"alpha", "", "-1", " 1"])
def test_get_with_odd_keys_finds_nothing(reg, key):
    reg.register("alpha", 0)
    assert reg.get(key) is None


def test_get_digit_name_falls_back_to_name_and_id_wins(reg):
    first, _ = reg.register("first", 0)     # id 1
    named_1, _ = reg.register("1", 0)       # id 2, named "1"
    named_42, _ = reg.register("42", 0)     # id 3, named "42"
    assert reg.get("42") is named_42        # no id 42: the name
    assert reg.get("1") is first            # id 1 exists: the id wins
    assert reg.get(2) is named_1


@pytest.mark.parametrize("key", ["²", "9" * 5000], ids=["superscript-two", "5000-digits"])
def test_get_with_unusual_digits_returns_none(reg, key):
    reg.register("alpha", 0)
    assert reg.get(key) is None


def test_remove(reg):
    node, _ = reg.register("a", 0)
    reg.remove(node)
    assert reg.get("a") is None and reg.get(1) is None
    assert reg.take_dirty() == []
    reg.remove(node)  # twice is harmless


@pytest.mark.parametrize("name", ["a", "A", "0", "_", "web-1", "node_2-b", "x" * 128, "1-2-3"])
def test_valid_names(reg, name):
    assert check_name(name) == name
    assert reg.register(name, 0)[0].name == name


@pytest.mark.parametrize("name", [
    "", " ", "a b", "web.1", "-lead", "x" * 129, "né", "a/b", "a:b", "a\tb", "\nweb",
    None, 5, b"web", ["web"],
], ids=repr)
def test_invalid_names(reg, name):
    with pytest.raises(InvalidNode, match="name"):
        reg.register(name, 0)
    assert reg.by_name == {} and reg.take_dirty() == []


def test_name_with_trailing_newline_is_invalid(reg):
    with pytest.raises(InvalidNode):
        reg.register("web-1\n", 0)


@pytest.mark.parametrize("caps", [
    "gpu", ("gpu",), {"gpu"}, [1], ["gpu", None], [""], ["x" * 65],
    [f"c{i}" for i in range(65)], [["gpu"]], [b"gpu"],
], ids=["str", "tuple", "set", "int", "none-item", "empty", "65-chars", "65-items", "nested",
        "bytes"])
def test_invalid_capabilities(reg, caps):
    with pytest.raises(InvalidNode, match="capabilities"):
        check_capabilities(caps)
    existing, _ = reg.register("existing", 0, capabilities=["ok"])
    with pytest.raises(InvalidNode, match="capabilities"):
        reg.register("existing", 1, capabilities=caps)
    assert existing.capabilities == ["ok"]


def test_refused_registration_leaves_no_node(reg):
    with pytest.raises(InvalidNode):
        reg.register("ghost", 0, capabilities=[1])
    assert reg.get("ghost") is None


def test_valid_capabilities_edges():
    assert check_capabilities([]) == []
    assert check_capabilities(["x" * 64]) == ["x" * 64]
    caps = [f"c{i:02d}" for i in range(64)]
    assert check_capabilities(list(reversed(caps))) == caps


# ---------------------------------------------------------------------------------------------
# Heartbeats

def test_heartbeat_auto_registers_unknown_node(reg):
    node, change, created = reg.heartbeat("new-1", {**CALM, "junk": 1}, 500.0,
                                          hostname="new-1.lan", ip_address="10.0.0.9",
                                          capabilities=["b", "a"])
    assert created
    assert reg.get("new-1") is node and reg.get(node.id) is node
    assert node.source == "heartbeat"
    assert node.registered_at == 500.0 and node.last_seen == 500.0
    assert node.hostname == "new-1.lan" and node.ip_address == "10.0.0.9"
    assert node.capabilities == ["a", "b"]
    assert node.metrics == CALM              # unknown keys dropped
    assert node.status == HEALTHY and node.reasons == []
    assert change is None                    # healthy on arrival: no change to report


def test_heartbeat_auto_registered_node_arriving_critical(reg):
    node, change, created = reg.heartbeat("hot", HOT, 1.0)
    assert created
    assert isinstance(change, LevelChange)
    assert (change.node, change.old, change.new) == (node, HEALTHY, CRITICAL)
    assert change.reasons and "memory" in change.reasons[0]


def test_heartbeat_from_known_node(reg):
    node, _ = reg.register("a", 0, hostname="h1", capabilities=["x"])
    same, change, created = reg.heartbeat("a", CALM, 10.0)
    assert same is node and not created and change is None
    assert node.hostname == "h1" and node.capabilities == ["x"]
    assert node.source == "register"
    reg.heartbeat("a", CALM, 11.0, hostname="h2", ip_address="10.1.1.1", capabilities=["y"])
    assert (node.hostname, node.ip_address, node.capabilities) == ("h2", "10.1.1.1", ["y"])
    assert node.last_seen == 11.0


def test_heartbeat_level_changes(reg):
    reg.register("a", 0)
    seq = [(CALM, None), (WARM, (HEALTHY, WARNING)), (WARM, None), (HOT, (WARNING, CRITICAL)),
           ({**HOT, **{"cpu_percent": 90.0}}, None), (WARM, (CRITICAL, WARNING)),
           (CALM, (WARNING, HEALTHY)), (HOT, (HEALTHY, CRITICAL)), ({}, (CRITICAL, HEALTHY))]
    for t, (metrics, expected) in enumerate(seq, start=1):
        node, change, _ = reg.heartbeat("a", metrics, float(t))
        if expected is None:
            assert change is None, t
        else:
            assert isinstance(change, LevelChange), t
            assert (change.old, change.new) == expected, t
            assert change.node is node
            assert change.reasons == node.reasons
        assert node.status == (expected[1] if expected else node.status)


def test_reasons_follow_metrics_even_without_level_change(reg):
    reg.register("a", 0)
    reg.heartbeat("a", WARM, 1.0)
    node, change, _ = reg.heartbeat("a", {**CALM, "disk_percent": 85.0}, 2.0)
    assert change is None and node.status == WARNING
    assert len(node.reasons) == 1 and "disk" in node.reasons[0]


def test_heartbeat_after_offline_comes_back(reg):
    reg.heartbeat("a", CALM, 0.0)
    [change] = reg.check_offline(TIMEOUT + 1)
    assert change.new == OFFLINE
    node, change, created = reg.heartbeat("a", CALM, TIMEOUT + 2)
    assert not created
    assert (change.old, change.new) == (OFFLINE, HEALTHY)
    assert node.reasons == []


@pytest.mark.parametrize("metrics", [{"cpu_percent": True}, {"cpu_percent": "90"},
                                     {"load_1": float("nan")}, {"memory_percent": [1]},
                                     {"uptime": {"s": 1}}])
def test_heartbeat_with_bad_metrics(reg, metrics):
    with pytest.raises(InvalidNode, match="metric"):
        reg.heartbeat("a", metrics, 1.0)
    assert reg.get("a") is None
    known, _ = reg.register("k", 0)
    reg.take_dirty()
    with pytest.raises(InvalidNode):
        reg.heartbeat("k", metrics, 1.0)
    assert known.last_seen == 0.0 and reg.take_dirty() == []


def test_heartbeat_with_invalid_name_for_unknown_node(reg):
    with pytest.raises(InvalidNode, match="name"):
        reg.heartbeat("bad name", CALM, 1.0)
    assert reg.by_name == {}


def test_clean_metrics_keeps_known_numbers():
    out = clean_metrics({"cpu_percent": 1, "load_1": 0.5, "process_count": 200, "other": "x",
                         "disk_percent": None})
    assert out == {"cpu_percent": 1, "load_1": 0.5, "process_count": 200}


def test_loaded_node_heartbeat(reg):
    reg.load([row(id=7, name="old", status=OFFLINE, last_seen=5.0)])
    assert reg.next_id == 8
    node, change, created = reg.heartbeat("old", CALM, 500.0)
    assert not created and node.id == 7
    assert (change.old, change.new) == (OFFLINE, HEALTHY)
    assert reg.register("fresh", 0)[0].id == 8


# ---------------------------------------------------------------------------------------------
# Offline detection, time passed in

def test_check_offline_boundary(reg):
    reg.heartbeat("a", CALM, 100.0)
    assert reg.check_offline(100.0) == []
    assert reg.check_offline(100.0 + TIMEOUT) == []          # exactly the timeout
    [change] = reg.check_offline(100.0 + TIMEOUT + 0.5)
    assert (change.old, change.new) == (HEALTHY, OFFLINE)
    assert change.node.status == OFFLINE
    assert change.reasons == ["no heartbeat for 120s"] or "no heartbeat" in change.reasons[0]
    assert reg.check_offline(10_000.0) == []                  # already offline: reported once


def test_check_offline_never_heartbeated_uses_registered_at(reg):
    reg.register("quiet", 1000.0)
    assert reg.check_offline(1000.0 + TIMEOUT) == []
    [change] = reg.check_offline(1000.0 + TIMEOUT + 1)
    assert change.old == HEALTHY and change.new == OFFLINE
    assert "no heartbeat" in change.reasons[0]


def test_check_offline_only_stale_nodes(reg):
    reg.heartbeat("stale", CALM, 0.0)
    reg.heartbeat("fresh", WARM, 100.0)
    changes = reg.check_offline(TIMEOUT + 50)
    assert [c.node.name for c in changes] == ["stale"]
    assert reg.get("fresh").status == WARNING


def test_check_offline_from_warning_and_critical(reg):
    reg.heartbeat("w", WARM, 0.0)
    reg.heartbeat("c", HOT, 0.0)
    changes = {c.node.name: c for c in reg.check_offline(TIMEOUT + 1)}
    assert (changes["w"].old, changes["c"].old) == (WARNING, CRITICAL)
    assert all(c.new == OFFLINE for c in changes.values())


def test_restart_grace_uses_started_at():
    """A broker restarted at t=1000 waits one timeout before calling old nodes offline."""
    reg = Registry(Thresholds(), TIMEOUT, started_at=1000.0, policy=IMMEDIATE)
    reg.load([row(id=1, name="a", status=HEALTHY, registered_at=10.0, last_seen=100.0),
              row(id=2, name="b", status=WARNING, registered_at=10.0, last_seen=0.0)])
    assert reg.check_offline(1000.0) == []
    assert reg.check_offline(1000.0 + TIMEOUT) == []
    changes = reg.check_offline(1000.0 + TIMEOUT + 0.5)
    assert sorted((c.node.name, c.old, c.new) for c in changes) == \
        [("a", HEALTHY, OFFLINE), ("b", WARNING, OFFLINE)]
    a = reg.get("a")
    assert "no heartbeat for 1020s" in a.reasons[0] or "no heartbeat for 1021s" in a.reasons[0]


def test_restart_grace_does_not_extend_a_fresh_heartbeat():
    reg = Registry(Thresholds(), TIMEOUT, started_at=1000.0, policy=IMMEDIATE)
    reg.load([row(name="a", last_seen=100.0)])
    reg.heartbeat("a", CALM, 1100.0)
    assert reg.check_offline(1100.0 + TIMEOUT) == []
    assert len(reg.check_offline(1100.0 + TIMEOUT + 1)) == 1


def test_loaded_offline_node_stays_offline_quietly():
    reg = Registry(Thresholds(), TIMEOUT, started_at=1000.0, policy=IMMEDIATE)
    reg.load([row(name="gone", status=OFFLINE, last_seen=1.0)])
    assert reg.check_offline(5000.0) == []
    assert reg.counts()[OFFLINE] == 1


def test_counts(reg):
    reg.heartbeat("h", CALM, 0.0)
    reg.heartbeat("w", WARM, 0.0)
    reg.heartbeat("c", HOT, 0.0)
    reg.heartbeat("c2", HOT, 200.0)
    reg.check_offline(150.0)
    assert reg.counts() == {HEALTHY: 0, WARNING: 0, CRITICAL: 1, OFFLINE: 3}


# ---------------------------------------------------------------------------------------------
# Dirty tracking

def test_dirty_tracking(reg):
    assert reg.take_dirty() == []
    a, _ = reg.register("a", 0)
    b, _ = reg.register("b", 0)
    reg.register("a", 1, hostname="again")
    assert sorted(n.name for n in reg.take_dirty()) == ["a", "b"]   # each once
    assert reg.take_dirty() == []
    reg.heartbeat("a", CALM, 5.0)
    assert reg.take_dirty() == [a]
    assert reg.check_offline(TIMEOUT) == []                          # b: exactly the timeout
    assert reg.take_dirty() == []                                    # nothing changed
    changes = reg.check_offline(10 ** 6)
    assert {c.node.name for c in changes} == {"a", "b"}
    assert set(reg.take_dirty()) == {a, b}
    reg.remove(b)
    reg.heartbeat("a", CALM, 10 ** 6 + 1)
    assert reg.take_dirty() == [a]


def test_removed_node_is_not_dirty(reg):
    node, _ = reg.register("a", 0)
    reg.remove(node)
    assert reg.take_dirty() == []


def test_loading_does_not_mark_dirty(reg):
    reg.load([row()])
    assert reg.take_dirty() == []


def test_record_and_public(reg):
    node, _, _ = reg.heartbeat("a", CALM, 100.0, hostname="h")
    rec = node.record()
    assert rec["name"] == "a" and rec["last_metrics"] == CALM and rec["drained"] == 0
    pub = node.public(now=102.5)
    assert pub["heartbeat_age"] == 2.5 and pub["metrics"] == CALM and pub["drained"] is False
    assert "last_metrics" not in pub
    fresh, _ = reg.register("b", 0)
    assert fresh.public(now=5.0)["heartbeat_age"] is None


# ---------------------------------------------------------------------------------------------
# Alerts

@pytest.fixture
def book() -> AlertBook:
    return AlertBook()


def change(reg: Registry, name: str, metrics: dict, now: float) -> LevelChange:
    _node, ch, _ = reg.heartbeat(name, metrics, now)
    assert ch is not None
    return ch


def test_alert_opened_on_worsening(reg, book):
    reg.register("a", 0)
    ch = change(reg, "a", WARM, 1.0)
    resolved, opened = book.on_change(ch, 1.0)
    assert resolved is None
    assert opened["id"] == 1 and opened["node_id"] == ch.node.id and opened["node_name"] == "a"
    assert (opened["level"], opened["previous_level"]) == (WARNING, HEALTHY)
    assert opened["status"] == "active" and opened["created_at"] == 1.0
    assert opened["resolved_at"] is None and opened["acknowledged_at"] is None
    assert opened["reasons"] == ch.reasons and opened["reasons"] is not ch.reasons
    assert "worse" in opened["message"] and "a is warning" in opened["message"]
    assert book.active[ch.node.id] is opened and book.by_id[1] is opened


def test_alert_resolved_on_recovery(reg, book):
    reg.register("a", 0)
    _, opened = book.on_change(change(reg, "a", HOT, 1.0), 1.0)
    resolved, new = book.on_change(change(reg, "a", CALM, 2.0), 2.0)
    assert new is None
    assert resolved is opened
    assert resolved["status"] == "resolved" and resolved["resolved_at"] == 2.0
    assert book.active == {} and book.by_id == {}


def test_critical_to_warning_resolves_and_opens_warning(reg, book):
    reg.register("a", 0)
    _, crit = book.on_change(change(reg, "a", HOT, 1.0), 1.0)
    resolved, warn = book.on_change(change(reg, "a", WARM, 2.0), 2.0)
    assert resolved is crit and crit["status"] == "resolved" and crit["level"] == CRITICAL
    assert warn["id"] != crit["id"]
    assert (warn["level"], warn["previous_level"], warn["status"]) == (WARNING, CRITICAL, "active")
    assert "better" in warn["message"]
    assert book.active[warn["node_id"]] is warn
    assert set(book.by_id) == {warn["id"]}


def test_warning_to_critical_to_offline(reg, book):
    reg.register("a", 0)
    _, warn = book.on_change(change(reg, "a", WARM, 1.0), 1.0)
    resolved, crit = book.on_change(change(reg, "a", HOT, 2.0), 2.0)
    assert resolved is warn and crit["level"] == CRITICAL
    [off_change] = reg.check_offline(2.0 + TIMEOUT + 1)
    resolved, off = book.on_change(off_change, 2.0 + TIMEOUT + 1)
    assert resolved is crit
    assert off["level"] == OFFLINE and "no heartbeat" in off["message"]
    resolved, none = book.on_change(change(reg, "a", CALM, 500.0), 500.0)
    assert resolved is off and none is None
    assert book.active == {}


def test_one_active_alert_per_node(reg, book):
    reg.register("a", 0)
    reg.register("b", 0)
    _, a1 = book.on_change(change(reg, "a", WARM, 1.0), 1.0)
    _, b1 = book.on_change(change(reg, "b", HOT, 1.0), 1.0)
    _, a2 = book.on_change(change(reg, "a", HOT, 2.0), 2.0)
    assert book.active == {a2["node_id"]: a2, b1["node_id"]: b1}
    assert a1["status"] == "resolved" and b1["status"] == "active"
    assert [a1["id"], b1["id"], a2["id"]] == [1, 2, 3]


def test_acknowledge_is_idempotent(reg, book):
    reg.register("a", 0)
    _, opened = book.on_change(change(reg, "a", WARM, 1.0), 1.0)
    book.take_dirty()
    acked = book.acknowledge(opened, "alice", 5.0)
    assert acked is opened
    assert (acked["acknowledged_at"], acked["acknowledged_by"]) == (5.0, "alice")
    again = book.acknowledge(opened, "bob", 9.0)
    assert (again["acknowledged_at"], again["acknowledged_by"]) == (5.0, "alice")
    assert acked["status"] == "active"
    assert book.take_dirty() == [opened]     # one write, not two


def test_acknowledge_a_copy_updates_the_live_alert(reg, book):
    reg.register("a", 0)
    _, opened = book.on_change(change(reg, "a", WARM, 1.0), 1.0)
    copy = dict(opened)                       # e.g. a row read back from the database
    live = book.acknowledge(copy, "alice", 3.0)
    assert live is opened and opened["acknowledged_by"] == "alice"


def test_acknowledge_a_resolved_alert(reg, book):
    reg.register("a", 0)
    _, opened = book.on_change(change(reg, "a", WARM, 1.0), 1.0)
    book.on_change(change(reg, "a", CALM, 2.0), 2.0)
    book.take_dirty()
    historical = dict(opened)
    out = book.acknowledge(historical, "carol", 4.0)
    assert out is historical and out["acknowledged_by"] == "carol"
    assert out["status"] == "resolved"
    assert book.acknowledge(historical, "dave", 5.0)["acknowledged_by"] == "carol"
    assert book.take_dirty() == [historical]


def test_take_dirty_dedups(reg, book):
    reg.register("a", 0)
    _, first = book.on_change(change(reg, "a", WARM, 1.0), 1.0)
    book.acknowledge(first, "x", 1.5)
    resolved, second = book.on_change(change(reg, "a", HOT, 2.0), 2.0)
    dirty = book.take_dirty()
    ids = [a["id"] for a in dirty]
    assert sorted(ids) == [first["id"], second["id"]]
    assert len(ids) == len(set(ids))
    by_id = {a["id"]: a for a in dirty}
    assert by_id[first["id"]]["status"] == "resolved"   # the latest state of the row
    assert book.take_dirty() == []


def test_node_removed_resolves_its_alert(reg, book):
    reg.register("a", 0)
    _, opened = book.on_change(change(reg, "a", HOT, 1.0), 1.0)
    assert book.node_removed(opened["node_id"], 9.0) is opened
    assert opened["status"] == "resolved" and opened["resolved_at"] == 9.0
    assert book.node_removed(opened["node_id"], 10.0) is None


def test_alert_book_load_continues_ids(reg, book):
    active = {"id": 41, "node_id": 1, "node_name": "a", "level": WARNING, "status": "active",
              "acknowledged_at": None, "acknowledged_by": None}
    book.load([active], max_id=41)
    reg.load([row(id=1, name="a", status=WARNING)])
    resolved, opened = book.on_change(change(reg, "a", HOT, 5.0), 5.0)
    assert resolved is active and active["status"] == "resolved"
    assert opened["id"] == 42


def test_offline_change_opens_alert_and_recovery_resolves(reg, book):
    """F4 at the unit level: offline after the timeout opens an alert; back resolves it."""
    reg.heartbeat("n", CALM, 0.0)
    [off] = reg.check_offline(TIMEOUT + 0.1)
    _, opened = book.on_change(off, TIMEOUT + 0.1)
    assert opened["level"] == OFFLINE and opened["previous_level"] == HEALTHY
    _, back, _ = reg.heartbeat("n", CALM, 300.0)
    resolved, new = book.on_change(back, 300.0)
    assert resolved is opened and new is None
    assert health.SEVERITY[back.new] == 0
