"""Tier 1: health levels at every threshold boundary (ARCHITECTURE.md §4).

Thresholds come from the environment through architect.config.load(env=...).thresholds().
"""

from __future__ import annotations

import math

import pytest

from architect import config
from architect.broker import health
from architect.broker.health import CRITICAL, HEALTHY, OFFLINE, WARNING, Thresholds

METRICS = {  # threshold name -> (heartbeat key, env prefix, word a reason must contain)
    "cpu": ("cpu_percent", "ARCHITECT_CPU", "cpu"),
    "memory": ("memory_percent", "ARCHITECT_MEMORY", "memory"),
    "disk": ("disk_percent", "ARCHITECT_DISK", "disk"),
    "load": ("load_1", "ARCHITECT_LOAD", "load"),
}

# Environments to grade against: the defaults, and custom values for every threshold.
CUSTOM_ENV = {
    "ARCHITECT_CPU_WARNING": "70", "ARCHITECT_CPU_CRITICAL": "90",
    "ARCHITECT_MEMORY_WARNING": "60.5", "ARCHITECT_MEMORY_CRITICAL": "85",
    "ARCHITECT_DISK_WARNING": "75", "ARCHITECT_DISK_CRITICAL": "92.5",
    "ARCHITECT_LOAD_WARNING": "3", "ARCHITECT_LOAD_CRITICAL": "6.25",
}
ENVS = {"defaults": {}, "custom": CUSTOM_ENV}


def load_config(env: dict, tmp_path):
    return config.load(env={**env, "ARCHITECT_CONFIG": str(tmp_path / "absent.json")})


@pytest.fixture(params=sorted(ENVS))
def env_thresholds(request, tmp_path):
    env = ENVS[request.param]
    return env, load_config(env, tmp_path).thresholds()


def below(x: float) -> float:
    return math.nextafter(x, -math.inf)


def above(x: float) -> float:
    return math.nextafter(x, math.inf)


def test_custom_env_reaches_the_thresholds(tmp_path):
    th = load_config(CUSTOM_ENV, tmp_path).thresholds()
    assert th == Thresholds(cpu=(70, 90), memory=(60.5, 85), disk=(75, 92.5), load=(3, 6.25))


def test_default_env_gives_the_table(tmp_path):
    th = load_config({}, tmp_path).thresholds()
    assert (th.cpu, th.memory, th.disk, th.load) == ((80, 95), (85, 95), (80, 90), (4, 8))


def _boundary_cases():
    # (label, value as a function of (warning, critical), expected level)
    yield "zero", lambda w, c: 0.0, HEALTHY
    yield "just-below-warning", lambda w, c: below(w), HEALTHY
    yield "0.01-below-warning", lambda w, c: w - 0.01, HEALTHY
    yield "exactly-warning", lambda w, c: w, WARNING
    yield "just-above-warning", lambda w, c: above(w), WARNING
    yield "between", lambda w, c: (w + c) / 2, WARNING
    yield "just-below-critical", lambda w, c: below(c), WARNING
    yield "0.01-below-critical", lambda w, c: c - 0.01, WARNING
    yield "exactly-critical", lambda w, c: c, CRITICAL
    yield "just-above-critical", lambda w, c: above(c), CRITICAL
    yield "far-above-critical", lambda w, c: c * 10, CRITICAL


BOUNDARIES = list(_boundary_cases())


@pytest.mark.parametrize("metric", sorted(METRICS))
@pytest.mark.parametrize("label,value_of,expected", BOUNDARIES, ids=[b[0] for b in BOUNDARIES])
def test_grade_at_boundary(metric, label, value_of, expected, env_thresholds):
    _env, th = env_thresholds
    key, _prefix, word = METRICS[metric]
    warn, crit = getattr(th, metric)
    value = value_of(warn, crit)
    level, reasons = health.grade({key: value}, th)
    assert level == expected, f"{metric}={value!r} with warning={warn} critical={crit}"
    if expected == HEALTHY:
        assert reasons == []
    else:
        assert len(reasons) == 1
        assert word in reasons[0].lower()
        assert expected in reasons[0]  # "... >= warning 80%" / "... >= critical 95%"


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_int_values_at_int_thresholds(metric, tmp_path):
    _key, prefix, _word = METRICS[metric]
    th = load_config({f"{prefix}_WARNING": "10", f"{prefix}_CRITICAL": "20"}, tmp_path).thresholds()
    key = METRICS[metric][0]
    assert [health.grade({key: v}, th)[0] for v in (9, 10, 19, 20, 21)] == \
        [HEALTHY, WARNING, WARNING, CRITICAL, CRITICAL]


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_warning_equal_to_critical_goes_straight_to_critical(metric, tmp_path):
    key, prefix, _word = METRICS[metric]
    th = load_config({f"{prefix}_WARNING": "5", f"{prefix}_CRITICAL": "5"}, tmp_path).thresholds()
    assert health.grade({key: below(5.0)}, th)[0] == HEALTHY
    assert health.grade({key: 5.0}, th)[0] == CRITICAL


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_only_that_metric_is_graded(metric, env_thresholds):
    """A metric's own threshold applies, not another metric's."""
    _env, th = env_thresholds
    key = METRICS[metric][0]
    warn, crit = getattr(th, metric)
    others = {METRICS[m][0]: below(getattr(th, m)[0]) for m in METRICS if m != metric}
    assert health.grade({**others, key: below(warn)}, th) == (HEALTHY, [])
    level, reasons = health.grade({**others, key: crit}, th)
    assert level == CRITICAL and len(reasons) == 1


def test_no_metrics_is_healthy():
    assert health.grade({}, Thresholds()) == (HEALTHY, [])
    assert health.grade({"cpu_percent": None, "load_1": None}, Thresholds()) == (HEALTHY, [])
    assert health.grade({"net_bytes_sent": 10 ** 12, "uptime": 1e9}, Thresholds()) == (HEALTHY, [])


def test_mixed_metrics_take_the_worst(env_thresholds):
    _env, th = env_thresholds
    warn_cpu = th.cpu[0]
    crit_mem = th.memory[1]
    level, reasons = health.grade({"cpu_percent": warn_cpu, "memory_percent": crit_mem,
                                   "disk_percent": 0, "load_1": 0}, th)
    assert level == CRITICAL
    assert len(reasons) == 2
    assert any("cpu" in r.lower() and "warning" in r for r in reasons)
    assert any("memory" in r.lower() and "critical" in r for r in reasons)


def test_critical_before_warning_in_order_stays_critical(env_thresholds):
    _env, th = env_thresholds
    # cpu is graded first; a later warning metric must not lower the level
    level, reasons = health.grade({"cpu_percent": th.cpu[1], "load_1": th.load[0]}, th)
    assert level == CRITICAL
    assert len(reasons) == 2


def test_every_metric_at_warning(env_thresholds):
    _env, th = env_thresholds
    metrics = {METRICS[m][0]: getattr(th, m)[0] for m in METRICS}
    level, reasons = health.grade(metrics, th)
    assert level == WARNING
    assert len(reasons) == 4
    for m in METRICS:
        assert any(METRICS[m][2] in r.lower() for r in reasons), m


def test_every_metric_at_critical(env_thresholds):
    _env, th = env_thresholds
    metrics = {METRICS[m][0]: getattr(th, m)[1] for m in METRICS}
    level, reasons = health.grade(metrics, th)
    assert level == CRITICAL and len(reasons) == 4
    assert all("critical" in r for r in reasons)


def test_one_below_warning_and_one_at_warning(env_thresholds):
    _env, th = env_thresholds
    level, reasons = health.grade({"cpu_percent": below(th.cpu[0]),
                                   "disk_percent": th.disk[0]}, th)
    assert level == WARNING
    assert len(reasons) == 1 and "disk" in reasons[0].lower()


def test_reason_shows_value_and_threshold():
    level, reasons = health.grade({"cpu_percent": 97.25}, Thresholds())
    assert level == CRITICAL
    assert reasons == ["CPU 97.2% >= critical 95%"] or reasons == ["CPU 97.3% >= critical 95%"]
    level, reasons = health.grade({"load_1": 5}, Thresholds())
    assert reasons == ["load (1 min) 5.0 >= warning 4"]


# ---------------------------------------------------------------------------------------------
# Offline

@pytest.mark.parametrize("timeout_env,timeout", [({}, 120.0),
                                                 ({"ARCHITECT_HEARTBEAT_TIMEOUT": "30"}, 30.0),
                                                 ({"ARCHITECT_HEARTBEAT_TIMEOUT": "7.5"}, 7.5)])
@pytest.mark.parametrize("last_seen", [0.0, 1000.0, 1_700_000_000.0])
def test_is_offline_boundary(timeout_env, timeout, last_seen, tmp_path):
    cfg = load_config({**timeout_env, "ARCHITECT_HEARTBEAT_INTERVAL": "1"}, tmp_path)
    assert cfg.heartbeat_timeout == timeout
    t = cfg.heartbeat_timeout
    assert not health.is_offline(last_seen, last_seen, t)
    assert not health.is_offline(last_seen, last_seen + t / 2, t)
    assert not health.is_offline(last_seen, below(last_seen + t), t)
    assert not health.is_offline(last_seen, last_seen + t, t)        # exactly the timeout
    assert health.is_offline(last_seen, above(last_seen + t), t)     # timeout + epsilon
    assert health.is_offline(last_seen, last_seen + t + 0.001, t)
    assert health.is_offline(last_seen, last_seen + 10 * t, t)


def test_clock_going_backwards_is_not_offline():
    assert not health.is_offline(1000.0, 900.0, 120.0)


def test_offline_reason():
    assert health.offline_reason(1000.0, 1125.0) == "no heartbeat for 125s"


def test_levels_and_severity():
    assert health.LEVELS == (HEALTHY, WARNING, CRITICAL, OFFLINE)
    assert [health.SEVERITY[lv] for lv in health.LEVELS] == [0, 1, 2, 3]
    assert health.HEALTH_FACTOR == {HEALTHY: 1.0, WARNING: 0.5, CRITICAL: 0.0, OFFLINE: 0.0}


@pytest.mark.parametrize("old,new,expected", [
    (HEALTHY, WARNING, True), (WARNING, CRITICAL, True), (CRITICAL, OFFLINE, True),
    (HEALTHY, OFFLINE, True), (CRITICAL, WARNING, False), (OFFLINE, HEALTHY, False),
    (WARNING, WARNING, False),
])
def test_worsened(old, new, expected):
    assert health.worsened(old, new) is expected


def test_thresholds_as_dict(tmp_path):
    th = load_config(CUSTOM_ENV, tmp_path).thresholds()
    assert th.as_dict() == {"cpu": {"warning": 70, "critical": 90},
                            "memory": {"warning": 60.5, "critical": 85},
                            "disk": {"warning": 75, "critical": 92.5},
                            "load": {"warning": 3, "critical": 6.25}}
