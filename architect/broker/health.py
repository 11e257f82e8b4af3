"""Health grading. Pure: plain values in, a level and reasons out; time is a parameter.

A metric at or above its warning threshold makes the node `warning`, at or above critical
makes it `critical`; no heartbeat within the timeout makes it `offline`.
"""

from __future__ import annotations

from architect.bus.protocol import (CRITICAL, HEALTHY, LEVELS, OFFLINE,  # noqa: F401
                                    SEVERITY, WARNING)
from architect.config import Thresholds  # the settings' type (registry imports it from here)

HEALTH_FACTOR = {HEALTHY: 1.0, WARNING: 0.5, CRITICAL: 0.0, OFFLINE: 0.0}

# metric key in a heartbeat → (threshold attribute, label, unit)
GRADED = (("cpu_percent", "cpu", "CPU", "%"),
          ("memory_percent", "memory", "memory", "%"),
          ("disk_percent", "disk", "disk", "%"),
          ("load_1", "load", "load (1 min)", ""))


def grade(metrics: dict, th: Thresholds) -> tuple[str, list[str]]:
    """Level and reasons for one set of metrics (no offline check here)."""
    level = HEALTHY
    reasons: list[str] = []
    for key, attr, label, unit in GRADED:
        value = metrics.get(key)
        if value is None:
            continue
        warn, crit = getattr(th, attr)
        if value >= crit:
            level = CRITICAL
            reasons.append(f"{label} {value:.1f}{unit} >= critical {crit:g}{unit}")
        elif value >= warn:
            if level == HEALTHY:
                level = WARNING
            reasons.append(f"{label} {value:.1f}{unit} >= warning {warn:g}{unit}")
    return level, reasons


def is_offline(last_seen: float, now: float, timeout: float) -> bool:
    return now - last_seen > timeout


def offline_reason(last_seen: float, now: float) -> str:
    return f"no heartbeat for {now - last_seen:.0f}s"


def worsened(old: str, new: str) -> bool:
    return SEVERITY[new] > SEVERITY[old]
