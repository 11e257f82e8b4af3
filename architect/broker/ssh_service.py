"""The broker's SSH service: runs pooled SSH commands on worker threads for the control
methods ssh.*, and writes every attempt to `ssh_audit` before the command runs.

Flow (all state changes on the broker loop thread): a request writes its audit rows and
queues its jobs; the loop commits (fsync), then start_pending() hands the jobs to the thread
pool; threads put results on a queue and wake the loop through an inproc socket; the loop
records outcomes and answers the deferred request.
"""

from __future__ import annotations

import getpass
import itertools
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import zmq

from architect.bus.messages import Reply
from architect.bus.transport import context
from architect.ssh.pool import SSHError, SSHPool, Target
from architect.ssh.run import execute

log = logging.getLogger("architect.ssh")
_wake_ids = itertools.count()


@dataclass
class Batch:
    token: object
    req_id: object
    single: bool
    started: float
    pending: set = field(default_factory=set)
    results: dict = field(default_factory=dict)      # audit id -> result
    order: list = field(default_factory=list)


class SSHService:
    def __init__(self, config, now: float, next_audit_id: int):
        self.config = config
        self.pool = SSHPool(config.known_hosts_path, config.ssh_max_per_host,
                            config.ssh_connect_timeout, config.ssh_idle_timeout,
                            config.ssh_keepalive, config.ssh_accept_new_hosts)
        self.executor = ThreadPoolExecutor(max_workers=config.ssh_max_parallel,
                                           thread_name_prefix="ssh")
        self.done: queue.Queue = queue.Queue()
        self.addr = f"inproc://ssh-done-{next(_wake_ids)}"
        self.wake = context().socket(zmq.PULL)
        self.wake.bind(self.addr)
        self._local = threading.local()
        self.next_id = next_audit_id
        self.audit_dirty: list[dict] = []
        self.audit_rows: dict[int, dict] = {}
        self.pending_jobs: list[tuple] = []
        self.batches: dict[int, Batch] = {}      # audit id -> batch
        self.replies: list[tuple] = []
        self._next_reap = now + 30.0

    # --- targets -------------------------------------------------------------------------
    def target(self, node) -> Target:
        ssh = node.ssh or {}
        host = ssh.get("host") or node.ip_address or node.hostname
        if not host:
            raise ValueError(f"node {node.name} has no address (ip_address, hostname or ssh.host)")
        return Target(host=host, port=int(ssh.get("port") or 22),
                      user=ssh.get("user") or self.config.ssh_user or getpass.getuser(),
                      key_file=ssh.get("key_file") or self.config.ssh_key_file)

    # --- requests (loop thread) -------------------------------------------------------
    def audit(self, who: str, action: str, node, target: str, command: str, now: float,
              status: str = "started", error: str | None = None, batch: str | None = None) -> dict:
        row = {"id": self.next_id, "ts": now, "who": who, "action": action,
               "node": node.name if node else None, "node_id": node.id if node else None,
               "target": target, "command": command, "status": status, "exit_code": None,
               "duration": None, "error": error, "finished_at": now if status != "started" else None,
               "batch": batch}
        self.next_id += 1
        self.audit_dirty.append(row)
        if status == "started":
            self.audit_rows[row["id"]] = row
        return row

    def command_job(self, target: Target, command: str, timeout: float):
        return lambda: execute(self.pool, target, command, timeout, self.config.ssh_max_output)

    def trust_job(self, target: Target):
        return lambda: trust_result(self.pool, target)

    def submit(self, token, req_id, single: bool, jobs: list[tuple], refused: list[dict],
               now: float) -> None:
        """jobs: [(audit_row, node_name, target, fn)] where fn() → result dict; refused:
        results that end at once (e.g. a node with no address). The jobs start after the
        commit that holds their audit rows (start_pending)."""
        batch = Batch(token, req_id, single, time.monotonic())
        for row, node_name, target, fn in jobs:
            batch.pending.add(row["id"])
            batch.order.append(row["id"])
            self.batches[row["id"]] = batch
            self.pending_jobs.append((row["id"], node_name, target, fn))
        for result in refused:
            key = ("refused", len(batch.order))
            batch.order.append(key)
            batch.results[key] = result
        if not batch.pending:
            self._answer(batch)

    def start_pending(self) -> None:
        """After the commit that holds the audit rows: start the commands."""
        jobs, self.pending_jobs = self.pending_jobs, []
        for job in jobs:
            self.executor.submit(self._run, *job)

    # --- worker threads ----------------------------------------------------------------
    def _run(self, audit_id, node_name, target, fn) -> None:
        try:
            result = fn()
        except Exception as exc:  # execute() promises not to raise; keep the loop fed anyway
            log.exception("ssh job failed")
            result = {"exit_code": None, "stdout": "", "stderr": "", "truncated": False,
                      "duration": 0.0, "error": f"internal error: {exc}", "error_kind": "internal"}
        result["node"] = node_name
        result["target"] = target.label
        self.done.put((audit_id, result))
        sock = getattr(self._local, "push", None)
        if sock is None:
            sock = self._local.push = context().socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self.addr)
        sock.send(b"")

    # --- completions (loop thread) -----------------------------------------------------
    def collect(self, now: float) -> None:
        while True:
            try:
                self.wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        while True:
            try:
                audit_id, result = self.done.get_nowait()
            except queue.Empty:
                return
            row = self.audit_rows.pop(audit_id, None)
            if row is not None:
                kind = result.get("error_kind")
                if result.get("error"):
                    row["status"] = "refused" if kind == "hostkey" else (kind or "error")
                else:
                    row["status"] = "ok" if result.get("exit_code", 0) == 0 else "failed"
                row.update(exit_code=result.get("exit_code"), duration=result.get("duration"),
                           error=result.get("error"), finished_at=now)
                self.audit_dirty.append(row)
            batch = self.batches.pop(audit_id, None)
            if batch is not None:
                batch.pending.discard(audit_id)
                batch.results[audit_id] = result
                if not batch.pending:
                    self._answer(batch)

    def _answer(self, batch: Batch) -> None:
        results = [batch.results[k] for k in batch.order]
        if batch.single:
            body = results[0]
        else:
            body = {"results": results, "count": len(results),
                    "ok": sum(1 for r in results if r.get("exit_code") == 0 and not r.get("error")),
                    "failed": sum(1 for r in results if r.get("exit_code") != 0 or r.get("error")),
                    "duration": round(time.monotonic() - batch.started, 3)}
        self.replies.append((batch.token, Reply(id=batch.req_id, ok=True, result=body)))

    def tick(self, now: float) -> None:
        if now >= self._next_reap:
            self._next_reap = now + 30.0
            self.executor.submit(self.pool.cleanup, self.config.ssh_idle_timeout)

    # --- unit of work: the broker's persist() takes the audit rows and puts them back on failure
    @property
    def dirty(self) -> list[dict]:
        return self.audit_dirty

    def take_dirty(self) -> list[dict]:
        rows, self.audit_dirty = self.audit_dirty, []
        return rows

    def put_back(self, rows: list[dict]) -> None:
        self.audit_dirty = rows + self.audit_dirty

    def take_replies(self) -> list[tuple]:
        out, self.replies = self.replies, []
        return out

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.pool.close()
        self.wake.close(0)


def trust_result(pool: SSHPool, target: Target) -> dict:
    started = time.monotonic()
    try:
        return {"ok": True, "error": None, "duration": round(time.monotonic() - started, 3),
                **pool.trust(target)}
    except SSHError as exc:
        return {"ok": False, "error": str(exc), "error_kind": exc.kind,
                "duration": round(time.monotonic() - started, 3)}
