"""How long the broker's loop iterations take: the measure of "nothing slows the loop".

Each iteration's work (from the poll's return to the end of the iteration, the wait itself
excluded) goes into Prometheus-style cumulative buckets for /metrics and into a ring of the
most recent iterations, from which broker.stats reports p50 / p99 / max.
"""

from __future__ import annotations

from collections import deque

RECENT = 4096     # iterations the percentiles are taken over


class LoopTimer:
    BOUNDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

    def __init__(self, recent: int = RECENT):
        self.counts = [0] * (len(self.BOUNDS) + 1)
        self.sum = 0.0
        self.recent: deque[float] = deque(maxlen=recent)

    def observe(self, seconds: float) -> None:
        self.recent.append(seconds)
        self.sum += seconds
        for i, bound in enumerate(self.BOUNDS):
            if seconds <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1

    def snapshot(self) -> dict:
        ordered = sorted(self.recent)

        def pct(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 6)
        return {"bounds": list(self.BOUNDS), "counts": list(self.counts),
                "sum": self.sum, "count": sum(self.counts), "recent": len(ordered),
                "p50": pct(0.50), "p99": pct(0.99),
                "max": round(ordered[-1], 6) if ordered else None}
