"""The task worker: a DEALER on the broker's work socket that runs tasks concurrently.

Paranoid Pirate on the worker side: it sends `ready` on connect, `wping` every interval,
and when it hears nothing from the broker for `liveness` intervals it reopens the socket
and sends `ready` again (listing the tasks it is running), with backoff. Results are kept
and resent until the broker acknowledges them, so a broker restart loses none.

One thread owns the DEALER. Tasks run on a thread pool (`slots` threads); those threads
talk to the socket thread through an inproc PUSH/PULL pair, each with its own socket.
The worker takes `prefetch` tasks beyond its slots and keeps them queued, so a slot that
frees starts the next task without waiting for the broker. What ends in one turn of the
loop goes out as one `results` message; a task that ended before its `started` went out
sends only its result (which says when it started).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import zmq

from architect.agent import executors
from architect.agent import metrics as node_metrics
from architect.agent.node_agent import rediscover, resolve_endpoints
from architect.bus.codec import decode, encode
from architect.bus.errors import ProtocolError
from architect.bus.messages import (BrokerPing, TaskAck, TaskAcks, TaskAssign, TaskCancel,
                                    TaskOutput, TaskResult, TaskResults, TaskStarted, WorkerBye,
                                    WorkerPing, WorkerReady)
from architect.bus.transport import WORK_MAX_MESSAGE, context, make_socket
from architect.config import Config

log = logging.getLogger("architect.worker")
RECONNECT_MAX = 30.0
BATCH_BYTES = WORK_MAX_MESSAGE // 2   # a `results` message stays under this (or is one result)
BATCH_COUNT = 1000


class PirateClock:
    """The worker side's Paranoid Pirate timers, with time passed in (`now`, monotonic).

    Ping the broker every `interval`; anything heard from it proves it alive and resets the
    reconnect backoff; silence for more than `interval × liveness` means it is dead:
    reconnect after `next_backoff()` (interval, doubling, capped at `reconnect_max`). A
    result not acknowledged goes out again with the ping once `resend_after` has passed
    since it was last sent. Pure: no sockets, no sleeping; TaskWorker.run feeds it the clock.
    """

    def __init__(self, interval: float, liveness: float, now: float,
                 reconnect_max: float = RECONNECT_MAX):
        self.interval = interval
        self.liveness = liveness
        self.reconnect_max = reconnect_max
        self.resend_after = 2 * interval
        self.heard_at = now
        self.next_ping = now + interval
        self.backoff = interval

    def heard(self, now: float) -> None:
        """A frame from the broker: it is alive, and the backoff starts over."""
        self.heard_at = now
        self.backoff = self.interval

    def silence(self, now: float) -> float:
        return now - self.heard_at

    def broker_dead(self, now: float) -> bool:
        return now - self.heard_at > self.interval * self.liveness

    def next_backoff(self) -> float:
        """How long to wait before reconnecting; each call doubles the next (capped)."""
        wait = min(self.backoff, self.reconnect_max)
        self.backoff = min(self.backoff * 2, self.reconnect_max)
        return wait

    def gone(self) -> None:
        """The broker said it is leaving: count it dead now; reconnect after half an
        interval (another master needs a moment to take over)."""
        self.heard_at = float("-inf")
        self.backoff = self.interval / 2

    def reconnected(self, now: float) -> None:
        """A new socket: give the broker a full liveness window (the backoff stays)."""
        self.heard_at = now

    def poll_ms(self, now: float) -> int:
        """How long to poll for before the next ping is due (at least 1 ms)."""
        return max(0, int((self.next_ping - now) * 1000)) + 1

    def due_ping(self, now: float) -> bool:
        """True when a ping is due; the next one is then scheduled an interval from now."""
        if now >= self.next_ping:
            self.next_ping = now + self.interval
            return True
        return False

    def due_resend(self, sent_at: float, now: float, older_than: float | None = None) -> bool:
        """Whether a result last sent at `sent_at` should go out again now."""
        return now - sent_at >= (self.resend_after if older_than is None else older_than)


class Running:
    """One task on this worker."""

    def __init__(self, msg: TaskAssign):
        self.msg = msg
        self.cancel = threading.Event()
        self.key = (msg.task_id, msg.attempt)


class TaskWorker:
    def __init__(self, config: Config, slots: int | None = None, task_types=None,
                 max_output: int = 1 << 20, kill_grace: float = 5.0, shutdown_grace: float = 5.0,
                 prefetch: int | None = None, queues=None):
        self.config = config
        self.slots = slots or os.cpu_count() or 1
        # tasks taken beyond the slots, queued here (default: one per slot)
        self.prefetch = self.slots if prefetch is None else prefetch
        self.queues = list(queues or ())     # the queues it serves ([]: "default")
        self.task_types = sorted(task_types or executors.TASK_TYPES)
        self.max_output = max_output
        self.kill_grace = kill_grace
        self.shutdown_grace = shutdown_grace
        self.abandoned: set = set()
        self.draining = False
        self.capabilities = sorted(set(config.capabilities) | set(node_metrics.detect_capabilities()))
        self.worker_id = f"{config.node_name}-{os.getpid()}-{secrets.token_hex(4)}"
        # the routing id on the work socket: the same across reconnects (the broker hands
        # it back: ROUTER_HANDOVER), secret, so no other client can take this worker's place
        self._routing_id = secrets.token_bytes(16)
        self.interval = config.worker_heartbeat_interval
        self.liveness = config.worker_liveness
        self.clock = PirateClock(self.interval, self.liveness, 0.0)   # restarted by run()
        self.stop_event = threading.Event()
        self.running: dict[tuple[int, int], Running] = {}
        self.unacked: dict[tuple[int, int], TaskResult] = {}
        self._sent_at: dict[tuple[int, int], float] = {}   # when each unacked result went out
        self.pool = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="task")
        self._pipe_addr = f"inproc://worker-{id(self):x}"
        self._local = threading.local()
        self._sock: zmq.Socket | None = None
        self._pull: zmq.Socket | None = None
        self.endpoints: dict = {}
        self._curve: dict | None = None
        self.hostname = socket.gethostname()

    # --- socket thread ------------------------------------------------------------------
    def _connect(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
        self._sock = make_socket(zmq.DEALER, max_msg_size=-1, curve=self._curve)
        self._sock.setsockopt(zmq.ROUTING_ID, self._routing_id)
        self._sock.connect(self.endpoints["work"])
        self._send(self._status(WorkerReady))
        self._resend_unacked(time.monotonic(), older_than=0.0)

    def _status(self, cls):
        return cls(worker_id=self.worker_id, node=self.config.node_name, slots=self.slots,
                   capabilities=self.capabilities, task_types=self.task_types,
                   # held = running, or finished with the result not yet acknowledged: the
                   # broker must not count those as lost when this worker reconnects
                   running=[list(k) for k in {*self.running, *self.unacked}],
                   hostname=self.hostname, prefetch=self.prefetch, queues=self.queues,
                   pid=os.getpid(), metrics=self._metrics())

    @staticmethod
    def _metrics() -> dict:
        return {"cpu_percent": psutil.cpu_percent(interval=None),
                "memory_percent": psutil.virtual_memory().percent,
                "load_1": psutil.getloadavg()[0]}

    def _send(self, msg) -> None:
        try:
            self._sock.send(encode(msg), zmq.NOBLOCK)
        except zmq.Again:
            log.debug("send queue full; dropped %s", msg.TYPE)

    def run(self) -> None:
        self.endpoints, self._curve = resolve_endpoints(self.config, self.stop_event)
        self._pull = make_socket(zmq.PULL, max_msg_size=-1)
        self._pull.bind(self._pipe_addr)
        self._connect()
        log.info("worker %s: %d slots, types %s, capabilities %s, broker %s", self.worker_id,
                 self.slots, ",".join(self.task_types), ",".join(self.capabilities),
                 self.endpoints["work"])
        poller = zmq.Poller()
        poller.register(self._pull, zmq.POLLIN)
        clock = self.clock = PirateClock(self.interval, self.liveness, time.monotonic())
        try:
            while not self.stop_event.is_set():
                poller.register(self._sock, zmq.POLLIN)
                ready = dict(poller.poll(clock.poll_ms(time.monotonic())))
                if self._sock in ready:
                    clock.heard(time.monotonic())
                    self._drain_broker()
                if self._pull in ready:
                    self._drain_pipe()
                now = time.monotonic()
                if clock.broker_dead(now):
                    log.warning("no word from the broker for %.1fs; reconnecting",
                                clock.silence(now))
                    poller.unregister(self._sock)
                    self.stop_event.wait(clock.next_backoff())
                    moved = rediscover(self.config, self.endpoints, self._curve)
                    if moved is not None:   # another master is active (a failover)
                        self.endpoints, self._curve = moved
                    self._connect()
                    clock.reconnected(time.monotonic())
                    continue
                if clock.due_ping(now):
                    self._send(self._status(WorkerPing))
                    # a broker that restarted faster than our liveness window never got
                    # them, and we did not reconnect: send results again until acked
                    self._resend_unacked(now, clock.resend_after)
        finally:
            self.close()

    def _hold_result(self, result: TaskResult, now: float) -> None:
        """A finished run: kept (and resent) until the broker acknowledges it."""
        key = (result.task_id, result.attempt)
        self.running.pop(key, None)
        self.unacked[key] = result
        self._sent_at[key] = now

    def _due_results(self, now: float, older_than: float) -> list[TaskResult]:
        """The unacknowledged results last sent `older_than` seconds ago or more, marked as
        sent now (pure: the caller sends them)."""
        due = []
        for key, result in list(self.unacked.items()):
            if self.clock.due_resend(self._sent_at.get(key, 0.0), now, older_than):
                self._sent_at[key] = now
                due.append(result)
        return due

    def _resend_unacked(self, now: float, older_than: float) -> None:
        self._send_results([(r, len(encode(r))) for r in self._due_results(now, older_than)])

    def _send_results(self, results: list[tuple[TaskResult, int]]) -> None:
        """Results as few `results` messages as the size limit allows ((result, its
        encoded size) pairs); a lone one goes as a plain `result`."""
        batch, size = [], 0
        for result, n in results + [(None, 0)]:
            if batch and (result is None or len(batch) >= BATCH_COUNT or size + n > BATCH_BYTES):
                if len(batch) == 1:
                    self._send(batch[0])
                else:
                    self._send(TaskResults(results=[_fields(r) for r in batch]))
                batch, size = [], 0
            if result is not None:
                batch.append(result)
                size += n

    def _drain_broker(self) -> None:
        while True:
            try:
                frame = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = decode(frame, WORK_MAX_MESSAGE)
            except ProtocolError as exc:
                log.warning("bad frame from the broker: %s", exc)
                continue
            handler = self.BROKER_HANDLERS.get(type(msg))
            if handler is not None:
                handler(self, msg)

    def _on_task(self, msg: TaskAssign) -> None:
        key = (msg.task_id, msg.attempt)
        if key in self.running or key in self.unacked:
            return  # a duplicate delivery
        if self.draining:
            return  # sent before the broker saw our bye: it goes back with the final bye
        run = Running(msg)
        self.running[key] = run
        self.pool.submit(self._execute, run)

    def _on_cancel(self, msg: TaskCancel) -> None:
        run = self.running.get((msg.task_id, msg.attempt))
        if run is not None:
            log.info("cancelling task %s/%s: %s", msg.task_id, msg.attempt, msg.reason,
                     extra={"task_id": msg.task_id})
            run.cancel.set()

    def _on_ack(self, msg: TaskAck) -> None:
        self.unacked.pop((msg.task_id, msg.attempt), None)
        self._sent_at.pop((msg.task_id, msg.attempt), None)

    def _on_acks(self, msg: TaskAcks) -> None:
        for pair in msg.acks:
            if isinstance(pair, list) and len(pair) == 2:
                key = (pair[0], pair[1])
                self.unacked.pop(key, None)
                self._sent_at.pop(key, None)

    def _on_ping(self, msg: BrokerPing) -> None:
        if msg.leaving:   # hearing anything counts; a broker that stops says so
            log.info("the broker is stopping; looking for the active one")
            self.clock.gone()

    BROKER_HANDLERS = {TaskAssign: _on_task, TaskCancel: _on_cancel, TaskAck: _on_ack,
                       TaskAcks: _on_acks, BrokerPing: _on_ping}

    def _drain_pipe(self) -> None:
        """What the task threads said since the last turn, in order, except a `started`
        whose result is here too; then the results, batched."""
        frames = []
        while True:
            try:
                frames.append(self._pull.recv(zmq.NOBLOCK))
            except zmq.Again:
                break
        msgs = [(decode(f, WORK_MAX_MESSAGE, trusted=True), len(f)) for f in frames]
        ended = {(m.task_id, m.attempt) for m, _ in msgs if type(m) is TaskResult}
        results = []
        now = time.monotonic()
        for msg, size in msgs:
            key = (msg.task_id, msg.attempt)
            if key in self.abandoned:
                continue  # given back to the broker at shutdown: it will run again elsewhere
            if type(msg) is TaskResult:
                self._hold_result(msg, now)
                results.append((msg, size))
            elif not (type(msg) is TaskStarted and key in ended):
                self._send(msg)
        self._send_results(results)

    # --- task threads -------------------------------------------------------------------
    def _push(self, msg) -> None:
        sock = getattr(self._local, "push", None)
        if sock is None:
            sock = self._local.push = context().socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 1000)
            sock.connect(self._pipe_addr)
        sock.send(encode(msg))

    def _execute(self, run: Running) -> None:
        m = run.msg
        started = time.time()
        if run.cancel.is_set():   # cancelled while it waited (prefetched): never started
            self._push(TaskResult(task_id=m.task_id, attempt=m.attempt, state="cancelled",
                                  error="cancelled before it started", started_at=None,
                                  finished_at=started))
            return
        self._push(TaskStarted(task_id=m.task_id, attempt=m.attempt, ts=started))
        seq = [0]

        def on_output(stream: str, text: str) -> None:
            seq[0] += 1
            self._push(TaskOutput(task_id=m.task_id, attempt=m.attempt, stream=stream,
                                  data=text, seq=seq[0]))

        if m.task_type not in self.task_types:
            out = {"state": "failed", "exit_code": None, "stdout": "", "stderr": "",
                   "truncated": False, "result": None, "duration": 0.0,
                   "error": f"this worker does not run task type {m.task_type!r}"}
        else:
            try:
                out = executors.execute(m.task_type, m.payload, timeout=m.timeout,
                                        cancel=run.cancel, on_output=on_output,
                                        max_output=self.max_output, kill_grace=self.kill_grace,
                                        soft_timeout=m.soft_timeout)
            except Exception as exc:  # the executor promises not to raise; be sure anyway
                log.exception("task %s crashed the executor", m.task_id,
                              extra={"task_id": m.task_id})
                out = {"state": "failed", "exit_code": None, "stdout": "", "stderr": "",
                       "truncated": False, "result": None, "duration": time.time() - started,
                       "error": f"{type(exc).__name__}: {exc}"}
        result = TaskResult(task_id=m.task_id, attempt=m.attempt, state=out["state"],
                            exit_code=out["exit_code"], stdout=out["stdout"],
                            stderr=out["stderr"], truncated=out["truncated"],
                            result=out["result"], error=out["error"],
                            duration=out["duration"], started_at=started,
                            finished_at=time.time())
        if len(encode(result)) > WORK_MAX_MESSAGE - 4096:
            result.result = None
            result.state = "failed"
            result.error = "result too large to send (over the work socket's message limit)"
        self._push(result)

    def stop(self) -> None:
        """Graceful: the loop ends; close() lets running tasks finish (shutdown grace)."""
        self.stop_event.set()

    def close(self) -> None:
        """Tell the broker we are draining, give running tasks `shutdown_grace` seconds,
        then stop the rest and hand them back (bye final): the broker requeues them."""
        if self._sock is not None and self._pull is not None:
            self.draining = True
            self._send(WorkerBye(worker_id=self.worker_id, final=False))
            deadline = time.monotonic() + self.shutdown_grace
            next_ping = time.monotonic()
            while self.running and time.monotonic() < deadline:
                if time.monotonic() >= next_ping:  # still alive while draining
                    next_ping = time.monotonic() + self.interval
                    self._send(self._status(WorkerPing))
                if self._pull.poll(50):
                    self._drain_pipe()
                if self._sock.poll(0):
                    self._drain_broker()
            self.abandoned = set(self.running)
            for run in self.running.values():
                run.cancel.set()
            if self.abandoned:
                log.warning("stopping with %d tasks still running: handing them back",
                            len(self.abandoned))
            self._drain_pipe_final()
            self._send(WorkerBye(worker_id=self.worker_id, final=True))
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self._pull is not None:
            self._pull.close(0)
        if self._sock is not None:
            self._sock.close(linger=2000)

    def _drain_pipe_final(self) -> None:
        """Send the results that finished meanwhile before saying goodbye."""
        try:
            while self._pull.poll(100):
                self._drain_pipe()
        except zmq.ZMQError:
            pass


def _fields(msg) -> dict:
    """A message's fields as a map (an item of a batch message)."""
    return {name: getattr(msg, name) for name in msg.__dataclass_fields__}
