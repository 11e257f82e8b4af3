"""Dispatch: match queued tasks to workers with free slots, best-scoring node first.

Queues are kept per (queue, task_type, requirements, pinned node), so a task nobody can run
does not block the tasks behind it; among the queues that can place their head, the highest
priority goes first, then the named queue workers list earliest (`--queue high --queue
default`), then the oldest. Each assignment stores the score breakdown.
"""

from __future__ import annotations

import heapq

from architect.broker import placement
from architect.broker.placement import Candidate


def candidates(registry, pool, names=None, prefetch_at: float | None = None) -> list[Candidate]:
    """Placement's view of nodes: the registry's health and metrics plus the workers' slots.
    `names` limits it (default: every registered node and every node with a worker);
    prefetch_at (now): count the workers' open prefetch as slots too."""
    out = []
    for name in (names if names is not None else set(registry.by_name) | set(pool.by_node)):
        node = registry.by_name.get(name)
        active, slots, caps, types, workers = pool.node_capacity(name, prefetch_at)
        if node is None:
            continue
        m = node.metrics
        out.append(Candidate(name=name, status=node.status, drained=node.drained,
                             capabilities=set(node.capabilities) | caps, task_types=types,
                             cpu=float(m.get("cpu_percent") or 0.0),
                             memory=float(m.get("memory_percent") or 0.0),
                             active=active, slots=slots, workers=workers))
    return out


def explain(task, registry, pool) -> dict[str, str]:
    """Why each node cannot take this task now (empty when some node can)."""
    eligible, reasons = placement.rank(candidates(registry, pool), task.task_type,
                                       task.requirements, task.node)
    return {} if eligible else reasons


def dispatch(book, pool, registry, now: float, limit: int = 10_000) -> list[tuple]:
    """Assign as many queued tasks as free slots allow, then, while tasks still wait, as
    many as the workers' open prefetch allows (workers.py: a task is queued on a worker
    behind its running ones only when no worker has a free slot for it, and only on a
    worker turning over short tasks). Returns [(worker, task)]."""
    out = _fill(book, pool, registry, now, limit, None)
    if book.queues and len(out) < limit and \
            any(w.open_prefetch(now) for w in pool.by_id.values()):
        out += _fill(book, pool, registry, now, limit - len(out), now)
    return out


def _fill(book, pool, registry, now: float, limit: int, prefetch_at) -> list[tuple]:
    free = pool.total_free(prefetch_at)
    if free <= 0 or not book.queues:
        return []
    # only the nodes with room: the others cannot take a task, and at a thousand workers
    # scoring every node for every task would cost more than the rest of the task
    room = [node for node, ws in pool.by_node.items() if any(w.free(prefetch_at) > 0 for w in ws)]
    cands = {c.name: c for c in candidates(registry, pool, room, prefetch_at)}
    out = []
    blocked: set = set()
    heaps: dict[tuple, list] = {}
    ranks = pool.queue_ranks(prefetch_at)
    while free > 0 and len(out) < limit:
        best = None
        for key in list(book.queues):
            if key in blocked:
                continue
            task = book.head(key)
            if task is not None:
                order = (-task.priority, ranks.get(key[0], 0), task.id)
                if best is None or order < best[0]:
                    best = (order, key, task)
        if best is None:
            break
        _order, key, task = best
        if book.limits.blocked(key[0], now) is not None:
            blocked.add(key)   # its queue's limit: the others may still go
            continue
        if prefetch_at is not None and task.expires_at is not None:
            blocked.add(key)   # never queued on a worker: it must be able to expire waiting
            continue
        cand = _best(heaps, key, task, cands)
        if cand is None:
            blocked.add(key)
            continue
        worker = pool.best_worker(cand.name, task.task_type, prefetch_at, key[0])
        if worker is None:
            # the node's slots are summed over its workers, and the free one runs another
            # type: place among the nodes with a free worker for this type instead
            fits = [c for c in cands.values()
                    if pool.best_worker(c.name, task.task_type, prefetch_at, key[0])]
            cand = placement.best(fits, task.task_type, task.requirements, task.node)
            if cand is None:
                blocked.add(key)
                continue
            worker = pool.best_worker(cand.name, task.task_type, prefetch_at, key[0])
        breakdown = placement.score(cand)
        book.pop(key)
        book.assign(task, cand.name, worker.id, breakdown, now)
        book.limits.started(key[0])
        worker.active.add((task.id, task.attempt))
        cand.active += 1
        free -= 1
        out.append((worker, task))
    return out


def _entry(c: Candidate) -> tuple:
    return (-placement.total(c), c.active, c.name, c)


def _best(heaps: dict, key: tuple, task, cands: dict) -> Candidate | None:
    """placement.best() for a queue, from a heap of its eligible nodes kept for this
    dispatch call: each task costs a heap step, not a score of every node (a thousand
    workers). An assignment only lowers a node's score, so an entry whose node changed is
    stale and optimistic: it is replaced by the node's current entry, if it still fits."""
    heap = heaps.get(key)
    if heap is None:
        heap = heaps[key] = [_entry(c) for c in cands.values() if placement.why_not(
            c, task.task_type, task.requirements, task.node) is None]
        heapq.heapify(heap)
    while heap:
        top = heap[0]
        c = top[3]
        now = _entry(c)
        if now[:3] == top[:3]:
            return c
        if placement.why_not(c, task.task_type, task.requirements, task.node) is None:
            heapq.heapreplace(heap, now)
        else:
            heapq.heappop(heap)
    return None
