"""Tier 1: notifications (issue 14) without sockets. The routing book with a fake clock
(rules: level, node glob, labels, repeat, resolved notice; silences; retries with backoff),
the Alertmanager payload, redaction, and the broker's methods over a real SQLite file
(roles, the audit keeps no secret, everything survives a restart)."""

from __future__ import annotations

import pytest

from architect import config as config_mod
from architect.broker import notify_channels as C
from architect.broker.core import Broker
from architect.broker.methods import Caller
from architect.broker.notify import Channel, NotifyBook, Rule, labels_of
from architect.bus.messages import Request

T0 = 1_000_000.0
HOOK = Channel("hook", "webhook", {"url": "http://127.0.0.1:9/am?token=s3cret"})
MAIL = Channel("mail", "email", {"host": "127.0.0.1", "port": 25, "from": "a@b.c",
                                 "to": ["ops@b.c"], "starttls": False, "ssl": False})


def alert(aid=1, node="web-1", level="offline", action="opened", at=T0, **extra):
    return {"action": action, "id": aid, "node_id": 1, "node_name": node, "level": level,
            "previous_level": "healthy", "reasons": ["no heartbeat for 3s"],
            "message": f"{node} is {level}", "status": "active", "created_at": at,
            "resolved_at": at + 60 if action == "resolved" else None, **extra}


def book(*rules, silences=()) -> NotifyBook:
    b = NotifyBook(attempts=3, backoff=1.0, external_url="http://dash:8080")
    b.set_channel(HOOK)
    b.set_channel(MAIL)
    for r in rules:
        b.set_rule(r)
    for s in silences:
        b.add_silence(**s)
    b.take_dirty()
    return b


def sent(b: NotifyBook) -> list[tuple[str, str, int]]:
    return [(j.channel, j.event, j.alert_id) for j in b.take_outbox()]


def test_a_rule_routes_an_alert_once_per_channel_and_tells_its_end():
    b = book(Rule("all", ["hook", "mail"]), Rule("again", ["hook"]))
    b.on_alert(alert(), T0)
    assert sorted(sent(b)) == [("hook", "firing", 1), ("mail", "firing", 1)]  # hook once
    b.tick(T0 + 3600)
    assert sent(b) == []                                   # no repeat interval: once
    b.on_alert(alert(action="resolved"), T0 + 60)
    assert sorted(sent(b)) == [("hook", "resolved", 1), ("mail", "resolved", 1)]


@pytest.mark.parametrize("rule,level,node,wanted", [
    (Rule("r", ["hook"], min_level="critical"), "warning", "web-1", False),
    (Rule("r", ["hook"], min_level="critical"), "critical", "web-1", True),
    (Rule("r", ["hook"], min_level="critical"), "offline", "web-1", True),
    (Rule("r", ["hook"], min_level="warning"), "warning", "web-1", True),
    (Rule("r", ["hook"], node="db-*"), "offline", "web-1", False),
    (Rule("r", ["hook"], node="db-*"), "offline", "db-7", True),
    (Rule("r", ["hook"], match={"alertname": "NodeOffline"}), "offline", "x", True),
    (Rule("r", ["hook"], match={"alertname": "NodeOffline"}), "critical", "x", False),
    (Rule("r", ["hook"], match={"rack": "r1*"}), "offline", "x", False),
])
def test_rules_filter_by_level_node_and_labels(rule, level, node, wanted):
    b = book(rule)
    b.on_alert(alert(level=level, node=node), T0)
    assert bool(sent(b)) is wanted


def test_node_labels_from_the_registry_are_matched():
    b = book(Rule("r", ["hook"], match={"rack": "r1*"}))
    b.node_labels = lambda name: {"rack": "r12"} if name == "web-1" else None
    b.on_alert(alert(node="web-1"), T0)
    b.on_alert(alert(aid=2, node="web-2"), T0)
    assert sent(b) == [("hook", "firing", 1)]


def test_repeat_interval_resends_while_firing_until_acknowledged():
    b = book(Rule("r", ["hook"], repeat_interval=600, send_resolved=False))
    b.on_alert(alert(), T0)
    assert sent(b) == [("hook", "firing", 1)]
    b.tick(T0 + 599)
    assert sent(b) == []
    b.tick(T0 + 601)
    assert sent(b) == [("hook", "repeat", 1)]
    b.on_alert(alert(action="acknowledged", acknowledged_at=T0 + 700), T0 + 700)
    b.tick(T0 + 1300)
    assert sent(b) == []                                       # acknowledged: no more
    b.on_alert(alert(action="resolved"), T0 + 1400)
    assert sent(b) == []                                       # send_resolved off


def test_a_silence_mutes_records_and_sends_when_it_ends_if_still_firing():
    s = {"node": "web-*", "match": {}, "starts_at": T0, "ends_at": T0 + 100,
         "comment": "disk swap", "created_by": "alice", "created_at": T0}
    b = book(Rule("r", ["hook", "mail"]), silences=[s])
    b.on_alert(alert(), T0 + 1)
    assert sent(b) == []
    rows = b.take_dirty()["rows"]
    assert [(r["channel"], r["outcome"]) for r in rows] == [("hook", "silenced"),
                                                           ("mail", "silenced")]
    assert "disk swap" in rows[0]["error"]
    b.on_alert(alert(aid=2, node="db-1"), T0 + 1)              # not matched: sent
    assert len(sent(b)) == 2
    b.tick(T0 + 50)
    assert sent(b) == []
    b.tick(T0 + 101)                                           # the silence is over
    assert sorted(sent(b)) == [("hook", "firing", 1), ("mail", "firing", 1)]
    assert not b.silences                                      # and gone from memory


def test_a_silenced_alert_that_resolves_tells_nobody():
    s = {"node": None, "match": {"severity": "critical"}, "starts_at": T0, "ends_at": T0 + 999,
         "comment": "x", "created_by": "a", "created_at": T0}
    b = book(Rule("r", ["hook"]), silences=[s])
    b.on_alert(alert(), T0)
    b.on_alert(alert(action="resolved"), T0 + 10)
    assert sent(b) == []


def test_a_failure_is_retried_with_backoff_and_every_attempt_recorded():
    b = book(Rule("r", ["hook"]))
    b.on_alert(alert(), T0)
    job = b.take_outbox()[0]
    b.result(job, "ConnectionRefusedError: refused", "", T0, T0 + 0.1)
    b.tick(T0 + 1.0)
    assert b.take_outbox() == []                               # first retry after 1 s
    b.tick(T0 + 1.2)
    (second,) = b.take_outbox()
    assert second.attempt == 2 and second.delivery == job.delivery
    b.result(second, "timed out", "", T0 + 1.2, T0 + 2.2)
    b.tick(T0 + 2.2 + 1.9)
    assert b.take_outbox() == []                               # then 2 s
    b.tick(T0 + 2.2 + 2.0)
    (third,) = b.take_outbox()
    b.result(third, "timed out", "", T0 + 4.2, T0 + 5.2)       # the last of 3 attempts
    b.tick(T0 + 100)
    assert b.take_outbox() == [] and not b.retries and b.in_flight == 0
    rows = b.take_dirty()["rows"]
    assert [(r["attempt"], r["outcome"], r["retry_at"] is not None) for r in rows] == [
        (1, "failed", True), (2, "failed", True), (3, "failed", False)]
    assert rows[0]["error"].startswith("ConnectionRefusedError") and rows[2]["at"] == T0 + 5.2


def test_the_alertmanager_payload():
    labels = labels_of(alert())
    body = C.payload("firing", alert(), labels, "hook", "http://dash:8080/")
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "hook"
    assert body["groupLabels"] == {"alertname": "NodeOffline", "node": "web-1"}
    assert body["groupKey"] == '{}:{alertname="NodeOffline", node="web-1"}'
    (a,) = body["alerts"]
    assert a["labels"] == {"alertname": "NodeOffline", "node": "web-1", "level": "offline",
                           "severity": "critical", "kind": "health"}
    assert a["annotations"]["summary"] == "web-1 is offline"
    assert a["annotations"]["description"] == "no heartbeat for 3s"
    assert a["startsAt"] == "1970-01-12T13:46:40.000Z" and a["endsAt"] == C.ZERO_TIME
    assert a["generatorURL"] == "http://dash:8080/health" and len(a["fingerprint"]) == 16
    assert body["externalURL"] == "http://dash:8080"
    done = C.payload("resolved", alert(action="resolved"), labels, "hook", "http://d")
    assert done["status"] == "resolved" and done["alerts"][0]["endsAt"].startswith("1970")
    assert labels_of({"kind": "security", "level": "critical", "node_name": "n1",
                      "source": "key-x"})["alertname"] == "IdentityMismatch"
    assert labels_of({"kind": "flapping", "level": "warning"})["alertname"] == "NodeFlapping"
    assert labels_of({"kind": "rule", "level": "critical", "source": "DiskFilling"})[
        "alertname"] == "DiskFilling"


def test_checks_and_redaction():
    with pytest.raises(C.ChannelError, match="'url'"):
        C.check("webhook", {"url": "ftp://x/"})
    with pytest.raises(C.ChannelError, match="takes no password"):
        C.check("webhook", {"url": "http://x/", "password": "p"})
    with pytest.raises(C.ChannelError, match="'to'"):
        C.check("email", {"host": "h", "from": "a@b", "to": ["nobody"]})
    with pytest.raises(C.ChannelError, match="goes with a 'username'"):
        C.check("email", {"host": "h", "from": "a@b", "to": ["x@y"], "password": "p"})
    with pytest.raises(C.ChannelError, match="'to'"):
        C.check("email", {"host": "h", "from": "a@b", "to": "x@y"})
    with pytest.raises(C.ChannelError, match="port out of range"):
        C.check("webhook", {"url": "http://h:99999/"})
    assert C.check("email", {"host": "h", "from": "a@b", "to": ["x@y"], "port": None,
                             "timeout": None})["port"] == 25
    with pytest.raises(C.ChannelError, match="apprise"):
        C.check("apprise", {"url": "nonsense://"})
    assert C.check("apprise", {"url": "json://127.0.0.1:9/"}) == {"url": "json://127.0.0.1:9/"}
    assert C.redacted("webhook", HOOK.config) == {"url": "http://127.0.0.1:9/***"}
    assert C.redacted("apprise", {"url": "slack://T/B/C"}) == {"url": "slack://***"}
    assert C.redacted("email", {**MAIL.config, "username": "u", "password": "pw"})[
        "password"] == "***"


# --- the broker's methods (a real SQLite file, no sockets) ---------------------------------

VIEWER, OPERATOR = Caller("web:vic", "viewer"), Caller("web:olga", "operator")


@pytest.fixture
def broker(tmp_path):
    env = {"ARCHITECT_DATA_DIR": str(tmp_path / "data")}
    cfg = config_mod.load(env=env, config_file=tmp_path / "none.json")
    brokers = [Broker(cfg, now=T0)]
    yield brokers
    for b in brokers:
        b.close()


def call(b, method, params, caller=Caller("local", "admin"), now=T0):
    reply = b.on_request(Request(id=1, method=method, params=params), now, caller=caller)
    assert b.persist(now)
    return reply


def test_methods_roles_audit_and_restart(broker, tmp_path):
    b = broker[0]
    url = "http://127.0.0.1:9/hook?token=s3cret"
    assert call(b, "notify.channel.add", {"name": "hook", "kind": "webhook", "url": url}).ok
    assert call(b, "notify.rule.add", {"name": "r", "channels": ["hook"],
                                       "repeat_interval": "30m", "node": "web-*"}).ok
    # a viewer writes nothing, an operator configures no channel or rule
    for caller, method, params in (
            (VIEWER, "silence.add", {"node": "x", "comment": "c"}),
            (VIEWER, "node.maintenance", {"node": "x", "on": True}),
            (VIEWER, "notify.channel.remove", {"name": "hook"}),
            (OPERATOR, "notify.channel.add", {"name": "evil", "kind": "webhook",
                                              "url": "http://evil/"}),
            (OPERATOR, "notify.rule.remove", {"name": "r"}),
            (OPERATOR, "notify.channel.test", {"name": "hook"})):
        reply = call(b, method, params, caller)
        assert not reply.ok and reply.error["code"] == "forbidden", (caller, method)
    assert sorted(b.notify.channels) == ["hook"] and sorted(b.notify.rules) == ["r"]
    assert not b.notify.silences and not b.notify.outbox
    # the secret is shown to admins only, and never kept in the audit
    seen = call(b, "notify.channels", {}, VIEWER).result[0]["config"]["url"]
    assert "s3cret" not in seen and seen.endswith("/***")
    assert call(b, "notify.channels", {}).result[0]["config"]["url"] == url
    assert "s3cret" not in repr(b.store.audit_log(limit=1000))
    # an apprise URL keeps its tokens in the host part: the audit keeps only the scheme
    assert call(b, "notify.channel.add", {"name": "push", "kind": "apprise",
                                          "url": "pover://userkey@apptoks3cret"}).ok
    assert "apptoks3cret" not in repr(b.store.audit_log(limit=1000))
    assert "pover://***" in repr(b.store.audit_log(limit=1000))
    call(b, "notify.channel.remove", {"name": "push"})
    # bad input is a clear error
    for method, params, why in (
            ("notify.rule.add", {"name": "q", "channels": ["nope"]}, "no channel"),
            ("notify.rule.add", {"name": "q", "channels": ["hook"], "min_level": "x"},
             "min_level"),
            ("silence.add", {"node": "x"}, "comment"),
            ("silence.add", {"comment": "c"}, "needs 'node'"),
            ("silence.add", {"node": "x", "comment": "c", "duration": "soon"}, "duration"),
            ("notify.channel.remove", {"name": "hook"}, "rules send"),
            ("notify.channel.add", {"name": "hook", "kind": "webhook", "url": url},
             "exists")):
        reply = call(b, method, params)
        assert not reply.ok and why in reply.error["message"], (method, reply)
    s = call(b, "silence.add", {"node": "web-3", "comment": "swap", "duration": "2h"},
             OPERATOR).result
    assert s["created_by"] == "web:olga" and s["ends_at"] == T0 + 7200 and s["active"]
    b.close()
    broker.clear()
    cfg = config_mod.load(env={"ARCHITECT_DATA_DIR": str(tmp_path / "data")},
                          config_file=tmp_path / "none.json")
    again = Broker(cfg, now=T0 + 1)
    broker.append(again)
    assert again.notify.channels["hook"].config["url"] == url
    assert again.notify.rules["r"].repeat_interval == 1800 and again.notify.rules["r"].node == "web-*"
    assert [x["id"] for x in call(again, "silence.list", {}, VIEWER, T0 + 1).result] == [s["id"]]
    ended = call(again, "silence.remove", {"id": s["id"]}, OPERATOR, T0 + 2).result
    assert ended["state"] == "expired"
    assert call(again, "silence.list", {}, VIEWER, T0 + 3).result == []
    assert [x["id"] for x in call(again, "silence.list", {"all": True}, VIEWER,
                                  T0 + 3).result] == [s["id"]]


def test_maintenance_drains_and_silences_in_one_call(broker):
    from architect.bus.messages import Heartbeat
    b = broker[0]
    b.on_heartbeat(Heartbeat(name="web-3", ts=T0, metrics={"cpu_percent": 1.0}), T0)
    on = call(b, "node.maintenance", {"node": "web-3", "on": True, "comment": "kernel"},
              OPERATOR).result
    assert on["drained"] and on["silences"][0]["kind"] == "maintenance"
    assert on["silences"][0]["ends_at"] is None and b.registry.get("web-3").drained
    again = call(b, "node.maintenance", {"node": "web-3", "on": True}, OPERATOR).result
    assert again["silences"][0]["id"] == on["silences"][0]["id"]      # one silence
    assert b.notify.silenced_by({"node": "web-3"}, T0 + 5) is not None
    off = call(b, "node.maintenance", {"node": "web-3", "on": False}, OPERATOR, T0 + 10).result
    assert not off["drained"] and not b.registry.get("web-3").drained
    assert b.notify.silenced_by({"node": "web-3"}, T0 + 11) is None
    assert not call(b, "node.maintenance", {"node": "nope", "on": True}, OPERATOR).ok


def test_a_retry_waiting_at_a_restart_is_taken_up_again(broker, tmp_path):
    """A delivery that failed with attempts left is retried by the next broker (the retry
    waited in memory; its attempt row names when): the same delivery, the next attempt."""
    from architect.bus.messages import Heartbeat
    b = broker[0]
    assert call(b, "notify.channel.add", {"name": "hook", "kind": "webhook",
                                          "url": "http://127.0.0.1:9/"}).ok
    assert call(b, "notify.rule.add", {"name": "all", "channels": ["hook"]}).ok
    now = T0
    for _ in range(4):                       # hot for 3 samples in a row: an alert opens
        b.on_heartbeat(Heartbeat(name="web-9", ts=now, metrics={"cpu_percent": 99.0}), now)
        now += 1                             # (no tick: the test plays the delivery thread)
    jobs = b.notify.take_outbox()
    assert [(j.channel, j.event, j.attempt) for j in jobs] == [("hook", "firing", 1)]
    b.notify.result(jobs[0], "ConnectionRefusedError", "", now, now + 0.1)
    test_delivery = b.notify.test(b.notify.channels["hook"], "admin", now)
    test_job = [j for j in b.notify.take_outbox() if j.delivery == test_delivery][0]
    b.notify.result(test_job, "ConnectionRefusedError", "", now, now + 0.1)
    assert len(b.notify.retries) == 2
    assert b.persist(now + 0.2, force=True)
    b.close()
    broker.clear()
    cfg = config_mod.load(env={"ARCHITECT_DATA_DIR": str(tmp_path / "data")},
                          config_file=tmp_path / "none.json")
    again = Broker(cfg, now=now + 1)
    broker.append(again)
    resumed = sorted((j.delivery, j.event, j.attempt, j.message["status"])
                     for _due, _seq, j in again.notify.retries)
    assert resumed == [(jobs[0].delivery, "firing", 2, "firing"), (test_delivery, "test", 2,
                                                                    "firing")]
    alert_job = [j for _d, _s, j in again.notify.retries if j.event == "firing"][0]
    assert alert_job.message["alerts"][0]["labels"]["node"] == "web-9"
    # once that attempt is recorded, a third broker does not take the same retry up again
    again.notify.tick(now + 3600)
    for job in again.notify.take_outbox():
        again.notify.result(job, None, "HTTP 200", now + 3600, now + 3600.1)
    assert again.persist(now + 3601, force=True)
    again.close()
    broker.clear()
    third = Broker(cfg, now=now + 3602)
    broker.append(third)
    assert third.notify.retries == []
