"""Health grading. Pure: plain values in, a level and reasons out; time is a parameter.

A metric at or above its warning threshold makes the node `warning`, at or above critical
makes it `critical`; no heartbeat within the timeout makes it `offline` (at once).

Hysteresis (assess): a node's level follows its samples only after `Policy.samples`
consecutive samples point the same way, and a level clears only once the metric is below
its threshold minus a margin (`Policy.margin` percentage points for CPU, memory and disk,
`Policy.load_margin` for the load average; never more than half the threshold). The state
between samples is a `Hold`, passed in and returned. Flapping (flap_step): a node whose level
changed more than `Policy.flap_changes` times within `Policy.flap_window` seconds is flapping
until its level has held for a whole window. See docs/HEALTH.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from architect.bus.protocol import (CRITICAL, HEALTHY, LEVELS, OFFLINE,  # noqa: F401
                                    SEVERITY, WARNING)
from architect.config import Thresholds  # the settings' type (registry imports it from here)

HEALTH_FACTOR = {HEALTHY: 1.0, WARNING: 0.5, CRITICAL: 0.0, OFFLINE: 0.0}

# metric key in a heartbeat → (threshold attribute, label, unit)
GRADED = (("cpu_percent", "cpu", "CPU", "%"),
          ("memory_percent", "memory", "memory", "%"),
          ("disk_percent", "disk", "disk", "%"),
          ("load_1", "load", "load (1 min)", ""))


@dataclass(frozen=True)
class Policy:
    """How levels change (docs/HEALTH.md): from Config via from_config()."""
    samples: int = 3            # consecutive samples before a level changes (1: at once)
    margin: float = 5.0         # percentage points below a % threshold before it clears
    load_margin: float = 0.5    # the same for the load average (its own unit)
    flap_changes: int = 5       # more level changes than this within flap_window: flapping
    flap_window: float = 600.0  # seconds

    @classmethod
    def from_config(cls, config) -> "Policy":
        return cls(samples=config.health_samples, margin=config.health_margin,
                   load_margin=config.health_load_margin, flap_changes=config.flap_changes,
                   flap_window=config.flap_window)


@dataclass(frozen=True)
class Hold:
    """A node's hysteresis between samples: `streak` consecutive samples have pointed away
    from its level, toward `toward` (the least change all of them support)."""
    streak: int = 0
    toward: str = HEALTHY


def grade(metrics: dict, th: Thresholds) -> tuple[str, list[str]]:
    """Level and reasons for one set of metrics (no offline check here, no hysteresis)."""
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


def clear_point(threshold: float, margin: float) -> float:
    """Below this a level set by `threshold` clears: threshold - margin, the margin at most
    half the threshold (so a small threshold still clears)."""
    return threshold - min(margin, abs(threshold) / 2)


def held_grade(metrics: dict, th: Thresholds, policy: Policy,
               level: str) -> tuple[str, list[str]]:
    """The level the metrics still support for a node now at `level`: a threshold counts
    down to its clear point, but only for a level the node is at or above (a healthy node
    does not turn warning inside the margin). Reasons name the margin."""
    out = HEALTHY
    reasons: list[str] = []
    for key, attr, label, unit in GRADED:
        value = metrics.get(key)
        if value is None:
            continue
        margin = policy.margin if unit == "%" else policy.load_margin
        warn, crit = getattr(th, attr)
        for thr, lv in ((crit, CRITICAL), (warn, WARNING)):
            low = thr if SEVERITY[level] < SEVERITY[lv] else clear_point(thr, margin)
            if value >= low:
                if SEVERITY[lv] > SEVERITY[out]:
                    out = lv
                if value >= thr:
                    reasons.append(f"{label} {value:.1f}{unit} >= {lv} {thr:g}{unit}")
                else:
                    reasons.append(f"{label} {value:.1f}{unit} within the margin of {lv} "
                                   f"{thr:g}{unit} (clears below {low:g}{unit})")
                break
    return out, reasons


def _less(a: str, b: str) -> str:
    return a if SEVERITY[a] <= SEVERITY[b] else b


def _more(a: str, b: str) -> str:
    return a if SEVERITY[a] >= SEVERITY[b] else b


def assess(level: str, hold: Hold, metrics: dict, th: Thresholds,
           policy: Policy) -> tuple[str, list[str], Hold]:
    """One sample through the hysteresis: (new level, reasons, new hold).

    Worse: `samples` samples in a row at or beyond a worse level move the node to the least
    severe level all of them reached. Better: `samples` samples in a row below the clear
    point move it to the worst level they still support. A node back from offline takes
    its sample's level at once (its earlier state is unknown)."""
    raw, raw_reasons = grade(metrics, th)
    if level == OFFLINE or policy.samples <= 1:
        return (raw, raw_reasons, Hold()) if level == OFFLINE or raw != level else \
            (level, raw_reasons, Hold())
    held, held_reasons = held_grade(metrics, th, policy, level)
    if SEVERITY[raw] > SEVERITY[level]:
        going_up = hold.streak > 0 and SEVERITY[hold.toward] > SEVERITY[level]
        toward = _less(hold.toward, raw) if going_up else raw
        streak = hold.streak + 1 if going_up else 1
        reasons = raw_reasons
    elif SEVERITY[held] < SEVERITY[level]:
        going_down = hold.streak > 0 and SEVERITY[hold.toward] < SEVERITY[level]
        toward = _more(hold.toward, held) if going_down else held
        streak = hold.streak + 1 if going_down else 1
        reasons = held_reasons
    else:
        return level, held_reasons, Hold()
    if streak >= policy.samples:
        return toward, held_grade(metrics, th, policy, toward)[1], Hold()
    return level, reasons + [f"{toward} after {policy.samples} samples in a row "
                             f"({streak} so far)"], Hold(streak, toward)


def flap_step(changes: tuple, now: float, policy: Policy) -> tuple[tuple, bool]:
    """Record a level change at `now` in the times of recent changes; → (times within the
    window, whether that is more than flap_changes)."""
    kept = tuple(t for t in changes if now - t < policy.flap_window) + (now,)
    return kept, len(kept) > policy.flap_changes


def flap_over(last_change: float, now: float, policy: Policy) -> bool:
    """A flapping node is stable again once its level has held for a whole window."""
    return now - last_change >= policy.flap_window


def is_offline(last_seen: float, now: float, timeout: float) -> bool:
    return now - last_seen > timeout


def offline_reason(last_seen: float, now: float) -> str:
    return f"no heartbeat for {now - last_seen:.0f}s"


def worsened(old: str, new: str) -> bool:
    return SEVERITY[new] > SEVERITY[old]
