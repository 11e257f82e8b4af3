"""Named queues and their limits (issue 13), pure state; time passed in.

Every task is in one queue (`queue`, default `default`). A worker serves the queues it
names (`architect worker --queue high --queue default`; default: `default` only). A queue
may have, set at runtime and kept in the database (`queues` table):
- `concurrency`: at most this many of its tasks assigned or running across the cluster;
- `rate`: at most N starts per second or minute, as a token bucket (capacity: one second's
  worth, at least 1), so a burst is bounded too.
A task held back by a limit waits `queued`, with the reason `rate limited` or `queue at its
concurrency limit`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
DEFAULT = "default"
RATE_RE = re.compile(r"^([1-9][0-9]*(?:\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)/(s|sec|second|m|min|minute)$")


class QueueError(ValueError):
    pass


def check_name(name) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise QueueError("a queue name is 1-64 letters, digits, '_', '.', ':' or '-'")
    return name


def parse_rate(text) -> float | None:
    """'5/s', '100/m' → starts per second; None → no limit."""
    if text is None:
        return None
    m = RATE_RE.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise QueueError(f"rate {text!r}: use N/s or N/m (5/s, 100/m)")
    per = 1.0 if m.group(2).startswith("s") else 60.0
    return float(m.group(1)) / per


@dataclass
class Queue:
    name: str
    concurrency: int | None = None
    rate: float | None = None          # starts per second
    rate_text: str | None = None       # as it was set ("100/m")
    tokens: float = 0.0
    refilled_at: float = 0.0

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate or 0.0)

    def refill(self, now: float) -> None:
        if self.rate is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.refilled_at) * self.rate)
        self.refilled_at = now

    def public(self) -> dict:
        return {"name": self.name, "concurrency": self.concurrency, "rate": self.rate_text}


@dataclass
class QueueBook:
    by_name: dict = field(default_factory=dict)
    inflight: dict = field(default_factory=dict)     # queue -> ids assigned or running
    dirty: dict = field(default_factory=dict)        # name -> Queue (None: limits removed)

    def get(self, name: str) -> Queue | None:
        return self.by_name.get(name)

    def load(self, row: dict, now: float) -> None:
        q = Queue(row["name"], row.get("concurrency"), row.get("rate"), row.get("rate_text"))
        q.tokens, q.refilled_at = q.capacity, now
        self.by_name[q.name] = q

    def set(self, name: str, concurrency, rate_text, now: float) -> Queue:
        check_name(name)
        if concurrency is not None and (isinstance(concurrency, bool) or
                                        not isinstance(concurrency, int) or
                                        not 1 <= concurrency <= 1_000_000):
            raise QueueError("concurrency must be 1-1000000, or null for no limit")
        rate = parse_rate(rate_text)
        if concurrency is None and rate is None:
            self.by_name.pop(name, None)
            self.dirty[name] = None
            return Queue(name)
        q = self.by_name.get(name) or Queue(name)
        q.concurrency, q.rate, q.rate_text = concurrency, rate, (rate_text or None)
        q.tokens, q.refilled_at = q.capacity, now
        self.by_name[name] = q
        self.dirty[name] = q
        return q

    def track(self, task) -> None:
        """After a task changed state: keep the set of its queue's assigned or running."""
        ids = self.inflight.setdefault(task.queue or DEFAULT, set())
        if task.status in ("assigned", "running"):
            ids.add(task.id)
        else:
            ids.discard(task.id)

    def blocked(self, name: str, now: float) -> str | None:
        """Why a task of this queue may not start now (None: it may)."""
        q = self.by_name.get(name)
        if q is None:
            return None
        if q.concurrency is not None and len(self.inflight.get(name, ())) >= q.concurrency:
            return "queue at its concurrency limit"
        if q.rate is not None:
            q.refill(now)
            if q.tokens < 1.0:
                return "rate limited"
        return None

    def started(self, name: str) -> None:
        q = self.by_name.get(name)
        if q is not None and q.rate is not None:
            q.tokens -= 1.0

    # --- unit of work -----------------------------------------------------------------
    def take_dirty(self) -> dict:
        taken, self.dirty = self.dirty, {}
        return taken

    def put_back(self, taken: dict) -> None:
        for name, q in taken.items():
            self.dirty.setdefault(name, q)
