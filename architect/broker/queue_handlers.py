"""The queue.* control methods (issue 13): each queue's depth, running count, limits and
oldest waiting task; limits set at runtime. Reads for viewers, queue.set for operators."""

from __future__ import annotations

from architect.broker import queues as Q
from architect.broker.methods import read, write
from architect.broker.params import RequestError, get

WAITING_STATES = ("waiting", "scheduled", "queued")


def queue_stats(b, now: float) -> list[dict]:
    """Every queue that has tasks not finished or limits, by name."""
    rows: dict[str, dict] = {}

    def row(name):
        return rows.setdefault(name, {"name": name, "queued": 0, "running": 0,
                                      "oldest_age": None, "concurrency": None, "rate": None,
                                      "held": None})
    for t in b.tasks.active.values():
        r = row(t.queue or Q.DEFAULT)
        if t.status in WAITING_STATES:
            r["queued"] += 1
            age = now - t.created_at
            if r["oldest_age"] is None or age > r["oldest_age"]:
                r["oldest_age"] = round(age, 3)
        else:
            r["running"] += 1
    for name, q in b.tasks.limits.by_name.items():
        r = row(name)
        r["concurrency"], r["rate"] = q.concurrency, q.rate_text
    for r in rows.values():
        r["held"] = b.tasks.limits.blocked(r["name"], now) if r["queued"] else None
    return [rows[k] for k in sorted(rows)]


def queue_list(b, params, ctx):
    """{} → [{name, queued, running, oldest_age, concurrency, rate, held}] by name: every
    queue with unfinished tasks or limits; `held` says why its tasks wait (a limit)."""
    return queue_stats(b, ctx.now)


def queue_set(b, params, ctx):
    """{name, concurrency? (int or null), rate? ("5/s", "100/m" or null)} → the queue's
    limits; both null: no limits. Applies at once, kept in the database."""
    try:
        q = b.tasks.limits.set(get(params, "name", str), params.get("concurrency"),
                               params.get("rate"), ctx.now)
    except Q.QueueError as exc:
        raise RequestError(str(exc)) from None
    return q.public()


QUEUE_METHODS = {
    "queue.list": read(queue_list),
    "queue.set": write(queue_set),
}
