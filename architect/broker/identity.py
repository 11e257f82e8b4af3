"""Who is on the other end of a heartbeat or a work message, on a secured bus.

The ZAP handler names every message with its key (User-Id); the key's role comes from the
key store. A node key speaks only for its own node: a heartbeat or worker hello under
another node's name is refused, counted and alerted (one alert per key and name). A worker's
routing id (a random secret of the worker process) is bound to the key that first used it,
and a result counts only from the worker that runs the task (work.py). Revoking a key cuts its workers
off at once: their tasks go back to the queue and run elsewhere.
"""

from __future__ import annotations

import logging

from architect.broker.methods import ADMIN, NODE, Caller
from architect.bus.messages import TaskCancel

log = logging.getLogger("architect.broker")


def caller_of(by_public: dict, frame) -> Caller | None:
    """The key behind a received frame (zmq.Frame with metadata: User-Id is the Z85 public
    key), or None when that key is not authorized (any more): the message is dropped."""
    try:
        entry = by_public.get(frame.get("User-Id").encode())
    except Exception:  # no metadata: not a CURVE connection
        return None
    if entry is None:
        return None
    name, role = entry
    try:
        addr = frame.get("Peer-Address")
    except Exception:
        addr = ""
    return Caller(name, role, name, addr or "")


def heartbeat_ok(b, hb, caller: Caller, now: float) -> bool:
    if caller.role == ADMIN or (caller.role == NODE and hb.name == caller.name):
        return True
    b.counters.inc("heartbeats_rejected")
    if caller.role == NODE:
        b.identity_mismatch(caller, hb.name, "heartbeat", now)
    return False


def work_ok(b, ident: bytes, msg, caller: Caller, now: float) -> bool:
    """A work message is accepted when its routing id belongs to this key and, for a
    worker hello, the node it names is the key's own (admin keys: any node)."""
    bound = b.work_keys.get(ident)
    claimed = getattr(msg, "node", None)
    if bound is not None and bound != caller.name:
        b.counters.inc("work_rejected")
        b.identity_mismatch(caller, f"a worker of {bound}", "its routing id", now)
        return False
    if caller.role == NODE and claimed is not None and claimed != caller.name:
        b.counters.inc("work_rejected")
        b.identity_mismatch(caller, claimed, "worker hello", now)
        return False
    if caller.role not in (NODE, ADMIN):
        b.counters.inc("work_rejected")
        return False
    if bound is None:
        if len(b.work_keys) > 100_000:  # bounded: forget ids of workers long gone
            b.work_keys = {i: k for i, k in b.work_keys.items() if i in b.pool.by_identity}
        b.work_keys[ident] = caller.name
    return True


def cut_off(b, key: str, now: float) -> int:
    """After `key` was revoked: its workers are gone and their tasks requeued (a cancel
    goes to each, so it stops the work). Returns how many workers were dropped."""
    idents = [i for i, k in b.work_keys.items() if k == key]
    dropped = 0
    for ident in idents:
        del b.work_keys[ident]
        worker = b.worker_by_identity(ident)
        if worker is None:
            continue
        for task_id, attempt in list(worker.active):
            b.work_out.append((ident, TaskCancel(task_id=task_id, attempt=attempt,
                                                 reason=f"key {key} revoked")))
        b._worker_lost(worker, now, f"worker {worker.id}: key {key} revoked")
        dropped += 1
    return dropped
