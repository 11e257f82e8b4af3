"""The broker's loop timer (broker/looptime.py): buckets for /metrics, p50/p99/max of the
recent iterations for stats, sorted out at most once a second."""

from architect.broker import looptime
from architect.broker.looptime import LoopTimer


def test_buckets_percentiles_and_a_bounded_ring(monkeypatch):
    t = LoopTimer(recent=100)
    assert t.snapshot()["p99"] is None and t.snapshot()["count"] == 0
    monkeypatch.setattr(looptime, "FRESH", 0.0)
    for ms in range(1, 201):                      # 1..200 ms; the ring keeps the last 100
        t.observe(ms / 1000)
    s = t.snapshot()
    assert s["count"] == 200 and s["recent"] == 100
    assert (s["p50"], s["p99"], s["max"]) == (0.151, 0.2, 0.2)
    assert s["counts"][LoopTimer.BOUNDS.index(0.05)] == 25          # 26..50 ms
    assert s["counts"][-1] == 0 and abs(s["sum"] - sum(range(1, 201)) / 1000) < 1e-9


def test_a_snapshot_is_reused_within_a_second(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(looptime.time, "monotonic", lambda: now[0])
    t = LoopTimer()
    t.observe(0.001)
    first = t.snapshot()
    t.observe(0.5)
    assert t.snapshot() is first                  # within FRESH: not sorted again
    now[0] += 1.0
    assert t.snapshot()["max"] == 0.5
