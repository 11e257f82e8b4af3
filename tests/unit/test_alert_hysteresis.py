"""Tier 1: hysteresis (health.assess), flapping (AlertBook) and per-node thresholds
(Registry). Pure state; time and samples are passed in; no sockets, no sleeping."""

from __future__ import annotations

import pytest

from architect.broker import health
from architect.broker.alerts import FLAPPING, AlertBook
from architect.broker.health import (CRITICAL, HEALTHY, OFFLINE, WARNING, Hold, Policy,
                                     Thresholds)
from architect.broker.registry import Registry

TH = Thresholds()          # cpu 80 / 95, memory 85 / 95, disk 80 / 90, load 4 / 8
P = Policy()               # 3 samples, 5 points (load 0.5), 5 changes in 600 s


def run(levels_and_metrics, level=HEALTHY, policy=P, th=TH):
    """Feed samples; → the level after each one."""
    hold, out = Hold(), []
    for metrics in levels_and_metrics:
        level, _reasons, hold = health.assess(level, hold, metrics, th, policy)
        out.append(level)
    return out


def cpu(*values):
    return [{"cpu_percent": v} for v in values]


def test_alternating_across_the_threshold_never_changes_the_level():
    assert set(run(cpu(*[85, 70] * 20))) == {HEALTHY}
    assert set(run(cpu(*[85, 79.9] * 20))) == {HEALTHY}
    assert set(run(cpu(*[96, 90] * 20), level=WARNING)) == {WARNING}


def test_three_in_a_row_change_it():
    assert run(cpu(85, 85, 85)) == [HEALTHY, HEALTHY, WARNING]
    assert run(cpu(85, 85, 70, 85, 85, 85)) == [HEALTHY] * 5 + [WARNING]   # a break restarts


def test_the_least_severe_level_all_samples_reached():
    assert run(cpu(96, 85, 96)) == [HEALTHY, HEALTHY, WARNING]
    assert run(cpu(96, 96, 96)) == [HEALTHY, HEALTHY, CRITICAL]


def test_it_clears_only_below_the_threshold_minus_the_margin():
    # warning at 80: inside the margin (75 <= cpu < 80) the node stays warning
    assert set(run(cpu(*[78] * 10), level=WARNING)) == {WARNING}
    assert set(run(cpu(*[75] * 10), level=WARNING)) == {WARNING}
    assert run(cpu(74.9, 74.9, 74.9), level=WARNING) == [WARNING, WARNING, HEALTHY]
    # critical at 95: 91 still holds critical, 89 is warning (it is above warning 80)
    assert set(run(cpu(*[91] * 5), level=CRITICAL)) == {CRITICAL}
    assert run(cpu(89, 89, 89), level=CRITICAL) == [CRITICAL, CRITICAL, WARNING]
    # down to the worst level the samples still support
    assert run(cpu(10, 85, 10), level=CRITICAL) == [CRITICAL, CRITICAL, WARNING]


def test_the_margin_inside_a_healthy_node_does_not_raise_it():
    assert set(run(cpu(*[78] * 5))) == {HEALTHY}


def test_load_has_its_own_margin_and_the_margin_is_at_most_half_the_threshold():
    loads = [{"load_1": v} for v in (3.6, 3.6, 3.6)]
    assert run(loads, level=WARNING) == [WARNING] * 3        # 4.0 - 0.5 = 3.5
    assert run([{"load_1": 3.4}] * 3, level=WARNING) == [WARNING, WARNING, HEALTHY]
    assert health.clear_point(4.0, 5.0) == 2.0                # never below half
    assert health.clear_point(80.0, 5.0) == 75.0


def test_offline_back_takes_the_sample_at_once_and_samples_1_is_immediate():
    assert run(cpu(85), level=OFFLINE) == [WARNING]
    assert run(cpu(10), level=OFFLINE) == [HEALTHY]
    once = Policy(samples=1)
    assert run(cpu(85, 70, 85), policy=once) == [WARNING, HEALTHY, WARNING]


def test_reasons_say_why_the_level_holds_or_waits():
    level, reasons, hold = health.assess(HEALTHY, Hold(), {"cpu_percent": 85}, TH, P)
    assert level == HEALTHY and hold == Hold(1, WARNING)
    assert reasons == ["CPU 85.0% >= warning 80%", "warning after 3 samples in a row (1 so far)"]
    level, reasons, hold = health.assess(WARNING, Hold(), {"cpu_percent": 77}, TH, P)
    assert level == WARNING and hold == Hold()
    assert reasons == ["CPU 77.0% within the margin of warning 80% (clears below 75%)"]


def test_registry_alternating_heartbeats_change_nothing_and_overrides_are_per_node():
    reg = Registry(TH, 120.0)
    for t in range(20):
        for name in ("db-1", "web-1"):
            _node, change, _ = reg.heartbeat(name, {"cpu_percent": 85 if t % 2 else 70}, t)
            assert change is None
    reg.node_thresholds["db-1"] = Thresholds(disk=(90.0, 97.0))
    for name in ("db-1", "web-1"):       # calm: the last 85% sample's streak ends
        assert reg.heartbeat(name, {"cpu_percent": 10.0}, 19.5)[1] is None
    changes = {}
    for t in range(20, 23):
        for name in ("db-1", "web-1"):
            _node, change, _ = reg.heartbeat(name, {"disk_percent": 92.0}, t)
            if change:
                changes[name] = change.new
    assert changes == {"db-1": WARNING, "web-1": CRITICAL}
    assert reg.thresholds_for(reg.get("web-1")) is TH


def test_offline_stays_immediate(reg=None):
    reg = Registry(TH, 10.0)
    reg.heartbeat("a", {"cpu_percent": 85}, 0.0)      # a streak toward warning ...
    [change] = reg.check_offline(10.5)                # ... offline wins at once
    assert change.new == OFFLINE and reg.get("a").hold == Hold()


# --- flapping ---------------------------------------------------------------------------------
def flap(book, reg, name, start, count, step=10.0):
    """`count` level changes, `step` seconds apart; → every (resolved, opened) pair."""
    out = []
    for i in range(count):
        metrics = {"cpu_percent": 90.0 if i % 2 == 0 else 10.0}
        t = start + i * step
        for k in range(3):                              # three samples make a change
            _node, change, _ = reg.heartbeat(name, metrics, t + k)
        assert change is not None
        out.append(book.on_change(change, t + 2))
    return out


def test_more_than_five_changes_in_ten_minutes_give_one_flapping_alert():
    reg, book = Registry(TH, 1e9), AlertBook(P)
    pairs = flap(book, reg, "n", 0.0, 20)
    opened = [o for _r, o in pairs if o is not None]
    kinds = [o.get("kind") for o in opened]
    assert kinds.count(FLAPPING) == 1
    assert kinds[:3] == [None, None, None] and kinds[3] == FLAPPING   # changes 1, 3, 5; 6th
    assert len(opened) == 4                                          # nothing after it
    flapping = opened[3]
    assert "changed 6 times in 600s" in flapping["reasons"][0]
    assert book.active == {} and book.flapping[flapping["node_id"]] is flapping
    assert pairs[5][0]["status"] == "resolved"       # the level alert it replaced


def test_flapping_resolves_after_a_stable_window_and_a_level_alert_opens_if_needed():
    reg, book = Registry(TH, 1e9), AlertBook(P)
    flap(book, reg, "n", 0.0, 7)                     # ends warning (7th change: to 90%)
    node = reg.get("n")
    assert node.status == WARNING and node.id in book.flapping
    last = 6 * 10.0 + 2
    assert book.tick(reg.by_id, last + 599) == []
    out = book.tick(reg.by_id, last + 600)
    assert [(a.get("kind"), action) for a, action in out] == [(FLAPPING, "resolved"),
                                                              (None, "opened")]
    assert out[1][0]["level"] == WARNING and "no longer flapping" in out[1][0]["message"]
    assert book.flapping == {} and book.active[node.id] is out[1][0]


def test_slow_changes_are_not_flapping():
    reg, book = Registry(TH, 1e9), AlertBook(P)
    pairs = flap(book, reg, "n", 0.0, 12, step=130.0)   # at most 5 in any 600 s
    assert all(o is None or o.get("kind") is None for _r, o in pairs)
    assert book.flapping == {}


@pytest.mark.parametrize("changes,window,expected", [(5, 600.0, False), (6, 600.0, True)])
def test_flap_step_counts_the_window(changes, window, expected):
    times = ()
    for i in range(changes):
        times, flapping = health.flap_step(times, float(i), Policy(flap_window=window))
    assert flapping is expected
    assert health.flap_step((0.0, 1.0), 700.0, P)[0] == (700.0,)   # old ones drop out
