"""How long the broker's loop iterations take: the measure of "nothing slows the loop".

Each iteration's work (from the poll's return to the end of the iteration, the wait itself
excluded) goes into Prometheus-style cumulative buckets for /metrics and into a ring of the
most recent iterations, from which broker.stats reports p50 / p99 / max.
"""

from __future__ import annotations

import time
from collections import deque

RECENT = 4096     # iterations the percentiles are taken over
FRESH = 1.0       # seconds a snapshot is reused: stats is asked on every dashboard tick


class LoopTimer:
    BOUNDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

    def __init__(self, recent: int = RECENT):
        self.counts = [0] * (len(self.BOUNDS) + 1)
        self.sum = 0.0
        self.recent: deque[float] = deque(maxlen=recent)
        self._snap: tuple[float, dict] | None = None

    def observe(self, seconds: float) -> None:
        self.recent.append(seconds)
        self.sum += seconds
        for i, bound in enumerate(self.BOUNDS):
            if seconds <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1

    def snapshot(self) -> dict:
        """The figures, sorted out at most once a second (a sort of 4,096 floats)."""
        now = time.monotonic()
        if self._snap is not None and now - self._snap[0] < FRESH:
            return self._snap[1]
        ordered = sorted(self.recent)

        def pct(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 6)
        snap = {"bounds": list(self.BOUNDS), "counts": list(self.counts),
                "sum": self.sum, "count": sum(self.counts), "recent": len(ordered),
                "p50": pct(0.50), "p99": pct(0.99),
                "max": round(ordered[-1], 6) if ordered else None}
        self._snap = (now, snap)
        return snap
