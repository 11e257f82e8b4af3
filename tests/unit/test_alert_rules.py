"""Tier 1: custom alert rules (alert_rules.py: the grammar, evaluation) and the broker's alert
methods (alert_handlers.py) on a Broker driven with a fake clock and a real SQLite file; no
sockets, no sleeping."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from architect import config as config_mod
from architect.broker import alert_rules as R
from architect.broker.core import Broker
from architect.broker.methods import ADMIN, OPERATOR, VIEWER, Caller
from architect.bus.messages import Heartbeat, Request

T0 = 1_000_000.0
CALM = {"cpu_percent": 10.0, "memory_percent": 20.0, "disk_percent": 30.0, "load_1": 0.1}


# --- the grammar ------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("disk_percent > 70 for 10m", ("disk_percent", ">", 70.0, 600.0)),
    ("heartbeat_age > 30s", ("heartbeat_age", ">", 30.0, 0.0)),
    ("heartbeat_age>2m", ("heartbeat_age", ">", 120.0, 0.0)),
    ("cpu_percent >= 90% for 30", ("cpu_percent", ">=", 90.0, 30.0)),
    ("load_5 < .5 for 1h", ("load_5", "<", 0.5, 3600.0)),
    ("net_bytes_recv <= 2 KiB", ("net_bytes_recv", "<=", 2048.0, 0.0)),
    ("  uptime < 1 d  for 2 s ", ("uptime", "<", 86400.0, 2.0)),
])
def test_rules_that_parse(text, expected):
    e = R.parse(text)
    assert (e.metric, e.op, e.value, e.duration) == expected


@pytest.mark.parametrize("text,says", [
    ("", "empty"), ("   ", "empty"), ("dsk_percent > 70", "expected a metric"),
    ("disk_percent = 70", "expected a comparison"), ("disk_percent == 70", "comparison"),
    ("disk_percent > high", "expected a number"), ("disk_percent > 70 s", "unit 's'"),
    ("heartbeat_age > 30%", "unit '%'"), ("load_1 > 5 GB", "unit 'GB'"),
    ("load_1 > 5x", "unexpected 'x'"),
    ("disk_percent > 70 for", "duration"), ("disk_percent > 70 for 10 minutes", "'minutes'"),
    ("disk_percent > 70 for -1m", "duration"), ("disk_percent > 70 and cpu_percent > 5",
                                               "unexpected 'and'"),
    ("disk_percent > 70 for 1m 2m", "unexpected"), ("x" * 201, "longer than 200"),
    ("disk_percent > 70 ; drop table", "unexpected"),
])
def test_rules_that_do_not_parse_say_why(text, says):
    with pytest.raises(R.RuleError, match=re.escape(says)):
        R.parse(text)


SPEC = re.compile(R.SPEC_PATTERN)


@settings(max_examples=120, deadline=None)
@given(st.from_regex(R.SPEC_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 200))
def test_everything_the_spec_pattern_allows_parses(text):
    R.parse(text)


TOKENS = st.sampled_from(["disk_percent", "heartbeat_age", "load_1", "net_bytes_sent", ">", ">=",
                          "<", "=", "70", "-3", ".5", "2.", "%", "s", "m", "GiB", "for", "x",
                          " ", "  ", "\t", "\u2003", "\n", "1e5", "_"])


@settings(max_examples=400, deadline=None)
@given(st.lists(TOKENS, max_size=9).map("".join))
def test_the_parser_and_the_spec_pattern_agree(text):
    try:
        R.parse(text)
        ok = True
    except R.RuleError:
        ok = False
    assert ok == bool(SPEC.match(text)), text


def test_make_rule_checks_every_field():
    assert R.make_rule("disk-70", "disk_percent > 70").level == "warning"
    for kwargs, says in [({"name": "bad name"}, "rule name"), ({"level": "info"}, "level"),
                         ({"node": "db 1"}, "node"), ({"capability": ""}, "capability"),
                         ({"expr": "nope"}, "metric")]:
        args = {"name": "r", "expr": "disk_percent > 70", **kwargs}
        with pytest.raises(R.RuleError, match=says):
            R.make_rule(**args)


def test_threshold_overrides_are_checked():
    th = R.Thresholds()
    assert R.check_overrides({"disk": {"warning": 90, "critical": 97}}, th) == \
        {"disk": {"warning": 90.0, "critical": 97.0}}
    assert R.check_overrides({"disk": {"critical": 99}, "cpu": None}, th) == \
        {"disk": {"critical": 99.0}}
    for bad, says in [({"disk": {"warning": 95}}, "above critical"),     # default critical 90
                      ({"disk": {"warning": 101, "critical": 102}}, "0-100"),
                      ({"load": {"warning": 0}}, "greater than 0"),
                      ({"gpu": {"warning": 1}}, "unknown metric"),
                      ({"disk": {"warning": True}}, "number"), ({"disk": [1, 2]}, "object"),
                      ({"disk": {"high": 1}}, "object")]:
        with pytest.raises(R.RuleError, match=says):
            R.check_overrides(bad, th)


# --- on a broker, fake clock --------------------------------------------------------------------
@pytest.fixture
def broker(tmp_path):
    env = {"ARCHITECT_DATA_DIR": str(tmp_path / "data"), "ARCHITECT_FLAP_WINDOW": "60"}
    cfg = config_mod.load(env=env, config_file=tmp_path / "none.json")
    b = Broker(cfg, now=T0)
    yield b
    b.close()


class Clock:
    def __init__(self, b):
        self.b, self.now = b, T0

    def beat(self, name, dt=1.0, **metrics):
        self.now += dt
        self.b.on_heartbeat(Heartbeat(name=name, ts=self.now, metrics={**CALM, **metrics}),
                            self.now)
        self.step(0)

    def step(self, dt):
        self.now += dt
        self.b.tick(self.now)
        assert self.b.persist(self.now)

    def call(self, method, role=ADMIN, **params):
        reply = self.b.on_request(Request(id=1, method=method, params=params), self.now,
                                  caller=Caller("tester", role))
        return reply.result if reply.ok else reply.error

    def alert_events(self):
        return [(d["action"], d.get("kind"), d.get("source"), d["node_name"])
                for topic, d in self.b.take_events()
                if topic.startswith("alert.") and d["action"] in ("opened", "resolved")]


def test_alternating_samples_open_no_alert_and_flapping_opens_one(broker):
    c = Clock(broker)
    for i in range(40):
        c.beat("n1", cpu_percent=85.0 if i % 2 else 70.0)
    assert c.alert_events() == []                       # at most one: here none at all
    for i in range(8):                                   # 8 real changes, 3 samples each
        for _ in range(3):
            c.beat("n1", cpu_percent=90.0 if i % 2 == 0 else 10.0)
    events = c.alert_events()
    assert [e for e in events if e[1] == "flapping"] == [("opened", "flapping", None, "n1")]
    assert sum(1 for e in events if e[0] == "opened") == 4   # 3 level alerts, then flapping
    c.step(61)
    assert c.alert_events() == [("resolved", "flapping", None, "n1")]   # healthy at the end
    rows = broker.store.alerts(all_=True)
    assert [r["kind"] for r in rows].count("flapping") == 1


def test_a_rule_for_2s_opens_after_2s_and_resolves(broker):
    c = Clock(broker)
    assert c.call("alert_rule.add", name="disk-70", expr="disk_percent > 70 for 2s",
                  level="critical")["duration"] == 2.0
    c.beat("db-1", disk_percent=75.0)
    c.step(1.0)
    assert c.alert_events() == []
    c.step(1.0)                                          # 2 s after the first sample
    assert c.alert_events() == [("opened", "rule", "disk-70", "db-1")]
    [alert] = [a for a in broker.store.alerts() if a["kind"] == "rule"]
    assert alert["level"] == "critical" and "rule disk-70" in alert["reasons"][0]
    assert c.call("alert_rule.list")[0]["firing"] == ["db-1"]
    c.beat("db-1", disk_percent=75.0)                    # still holds: no second alert
    assert c.alert_events() == []
    c.beat("db-1", disk_percent=40.0)
    assert c.alert_events() == [("resolved", "rule", "disk-70", "db-1")]


def test_heartbeat_age_rule_node_match_and_removal(broker):
    c = Clock(broker)
    c.call("alert_rule.add", name="quiet", expr="heartbeat_age > 5s", node="db-*")
    c.beat("db-1")
    c.beat("web-1")
    c.step(6.0)
    assert c.alert_events() == [("opened", "rule", "quiet", "db-1")]   # web-1 not matched
    c.beat("db-1", dt=0.0)
    assert c.alert_events() == [("resolved", "rule", "quiet", "db-1")]
    c.step(6.0)
    assert c.alert_events() == [("opened", "rule", "quiet", "db-1")]
    assert c.call("alert_rule.remove", name="quiet") == {"removed": "quiet", "resolved": 1}
    assert c.alert_events() == [("resolved", "rule", "quiet", "db-1")]
    assert c.call("alert_rule.remove", name="quiet")["code"] == "not_found"


def test_rules_and_overrides_survive_a_restart(broker, tmp_path):
    c = Clock(broker)
    c.beat("db-1")
    c.call("alert_rule.add", name="load", expr="load_5 >= 6 for 1m", capability="ssd")
    c.call("node.set_thresholds", node="db-1", thresholds={"disk": {"warning": 90,
                                                                    "critical": 97}})
    c.step(0)
    again = Broker(broker.config, now=c.now, store=None)
    try:
        assert again.alert_config.rules["load"].capability == "ssd"
        node = again.registry.get("db-1")
        assert again.registry.thresholds_for(node).disk == (90.0, 97.0)
        assert again.registry.thresholds_for(node).cpu == (80.0, 95.0)
    finally:
        again.store.close()


def test_an_override_changes_that_node_only(broker):
    c = Clock(broker)
    out = c.call("node.set_thresholds", node="x", thresholds={})
    assert out["code"] == "not_found"
    c.beat("db-1")
    c.beat("web-1")
    out = c.call("node.set_thresholds", node="db-1", thresholds={"disk": {"warning": 90,
                                                                          "critical": 97}})
    assert out["thresholds"]["disk"] == {"warning": 90.0, "critical": 97.0}
    assert out["defaults"]["disk"] == {"warning": 80.0, "critical": 90.0}
    for _ in range(3):
        c.beat("db-1", disk_percent=85.0)
        c.beat("web-1", disk_percent=85.0)
    assert broker.registry.get("db-1").status == "healthy"
    assert broker.registry.get("web-1").status == "warning"
    assert c.call("node.set_thresholds", node="db-1",
                  thresholds={"disk": {"warning": 99}})["code"] == "bad_request"
    assert c.call("node.set_thresholds", node="db-1", thresholds={})["overrides"] == {}


@pytest.mark.parametrize("role", [VIEWER, OPERATOR])
def test_viewers_and_operators_are_refused_the_writes_and_nothing_changes(broker, role):
    c = Clock(broker)
    c.beat("db-1")
    c.call("alert_rule.add", name="keep", expr="disk_percent > 70")
    before = (dict(broker.alert_config.rules), dict(broker.alert_config.overrides))
    for method, params in [("alert_rule.add", {"name": "new", "expr": "cpu_percent > 1"}),
                           ("alert_rule.remove", {"name": "keep"}),
                           ("node.set_thresholds", {"node": "db-1",
                                                    "thresholds": {"cpu": {"warning": 1}}})]:
        assert c.call(method, role=role, **params)["code"] == "forbidden"
    assert (dict(broker.alert_config.rules), dict(broker.alert_config.overrides)) == before
    assert [r["name"] for r in c.call("alert_rule.list", role=VIEWER)] == ["keep"]
    assert c.call("node.thresholds", role=VIEWER, node="db-1")["overrides"] == {}
    c.step(0)
    rules, thresholds = broker.store.load_alert_config()
    assert [r["name"] for r in rules] == ["keep"] and thresholds == []


def test_bad_requests_are_clear(broker):
    c = Clock(broker)
    for params, says in [({"name": "r", "expr": "disk_percent >> 70"}, "position"),
                         ({"name": "r"}, "expr"), ({"name": "r", "expr": 5}, "string"),
                         ({"name": "r", "expr": "cpu_percent > 1", "level": "info"}, "level"),
                         ({"name": "r", "expr": "cpu_percent > 1", "replace": {}}, "replace")]:
        out = c.call("alert_rule.add", **params)
        assert out["code"] == "bad_request" and says in out["message"], out
    c.call("alert_rule.add", name="r", expr="cpu_percent > 1")
    assert c.call("alert_rule.add", name="r", expr="cpu_percent > 2")["code"] == "conflict"
    assert c.call("alert_rule.add", name="r", expr="cpu_percent > 2",
                  replace=True)["value"] == 2.0
