"""The notification tables (m015) behave the same on SQLite and PostgreSQL: channels and
rules upserted and deleted, silences kept after they expire, delivery attempts listed newest
first with filters, and the ids a restarted broker goes on from."""

from __future__ import annotations

from architect.broker.notify import Channel, Changes, Rule, Silence
from tests.contract.test_store import backend, store  # noqa: F401  (the fixtures)

T0 = 1_000_000.0


def attempt(i, delivery, channel="hook", outcome="sent", **extra):
    return {"id": i, "delivery": delivery, "attempt": 1, "channel": channel, "kind": "webhook",
            "event": "firing", "rule": "r", "alert_id": 7, "node": "web-1",
            "outcome": outcome, "error": None, "detail": "HTTP 200", "at": T0 + i,
            "duration": 0.01, "retry_at": None, **extra}


def test_a_round_trip(backend, store):  # noqa: F811
    assert store.load_notify(T0) == {"channels": [], "rules": [], "silences": [],
                                     "retries": [], "max_silence": 0, "max_row": 0,
                                     "max_delivery": 0}
    changes = Changes()
    changes["channels"] = {"hook": Channel("hook", "webhook", {"url": "http://h/?t=1"}, T0, "a"),
                           "mail": Channel("mail", "email", {"host": "h", "to": ["x@y"]}, T0)}
    changes["rules"] = {"r": Rule("r", ["hook", "mail"], "critical", "db-*",
                                  {"alertname": "Node*"}, 600.0, False, T0, "a")}
    changes["silences"] = {
        1: Silence(1, "web-*", {}, T0, T0 + 60, "swap", "olga", T0),
        2: Silence(2, None, {"severity": "warning"}, T0, None, "noisy", "olga", T0,
                   "maintenance")}
    changes["rows"] = [attempt(1, 1), attempt(2, 2, "mail", "failed", error="refused",
                                              retry_at=T0 + 5)]
    with store.transaction():
        store.save_notify(changes)
    state = store.load_notify(T0 + 1)
    assert [c["name"] for c in state["channels"]] == ["hook", "mail"]
    assert state["channels"][0] == {"name": "hook", "kind": "webhook",
                                    "config": {"url": "http://h/?t=1"}, "created_at": T0,
                                    "created_by": "a"}
    (rule,) = state["rules"]
    assert Rule(**rule) == changes["rules"]["r"]
    assert [Silence(**s) for s in state["silences"]] == list(changes["silences"].values())
    assert (state["max_silence"], state["max_row"], state["max_delivery"]) == (2, 2, 2)
    # the failed attempt with a retry to come is what a restarted broker takes up again
    assert state["retries"] == [attempt(2, 2, "mail", "failed", error="refused",
                                        retry_at=T0 + 5)]
    assert [s["id"] for s in store.load_notify(T0 + 61)["silences"]] == [2]   # 1 expired
    assert [s["id"] for s in store.silence_history()] == [2, 1]               # kept

    assert [r["id"] for r in store.notifications()] == [2, 1]
    (failed,) = store.notifications(outcome="failed")
    assert failed == attempt(2, 2, "mail", "failed", error="refused", retry_at=T0 + 5)
    assert [r["id"] for r in store.notifications(channel="hook", alert_id=7)] == [1]
    assert [r["id"] for r in store.notifications(delivery=2, limit=1)] == [2]
    # once a later attempt of that delivery is recorded, it is no longer pending
    done = Changes()
    done["rows"] = [attempt(3, 2, "mail", "sent", attempt=2)]
    with store.transaction():
        store.save_notify(done)
    assert store.load_notify(T0 + 6)["retries"] == []

    later = Changes()
    later["channels"] = {"mail": None,
                         "hook": Channel("hook", "webhook", {"url": "http://other/"}, T0 + 9)}
    later["rules"] = {"r": None}
    later["silences"] = {2: Silence(2, None, {"severity": "warning"}, T0, T0 + 30, "noisy",
                                    "olga", T0, "maintenance")}
    with store.transaction():
        store.save_notify(later)
    again = backend.reopen(store)
    try:
        state = again.load_notify(T0 + 61)
        assert [(c["name"], c["config"]) for c in state["channels"]] == [
            ("hook", {"url": "http://other/"})]
        assert state["rules"] == [] and state["silences"] == []
        assert state["max_silence"] == 2
    finally:
        again.close()
