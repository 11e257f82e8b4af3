"""The broker loop: poll → drain heartbeats / control requests → timers → persist → send.

One thread owns every socket. A bad frame is logged, counted and (where there is a peer
to tell) answered with an error; it never stops the loop.
"""

from __future__ import annotations

import logging
import threading
import time

import msgpack
import zmq

from architect.broker.core import Broker
from architect.broker.identity import caller_of, work_ok
from architect.broker.methods import LOCAL
from architect.broker.work import WORK_HANDLERS, BadWorkerMessage
from architect.bus.codec import decode, encode
from architect.bus.errors import ProtocolError
from architect.bus.messages import BrokerPing, Event, Heartbeat, Reply, Request, TaskAssign
from architect.bus.protocol import ASSIGNED, RUNNING
from architect.bus.transport import (WORK_MAX_MESSAGE, Endpoints, make_socket,
                                     split_router_frames)

log = logging.getLogger("architect.broker")

POLL_MS = 100
DRAIN_HEARTBEATS = 5000   # max heartbeats handled per iteration
DRAIN_REQUESTS = 1000
DRAIN_WORK = 5000
HEARTBEAT_HWM = 200_000
CONTROL_HWM = 50_000


class BrokerLoop:
    def __init__(self, broker: Broker, endpoints: Endpoints, security=None):
        self.broker = broker
        self.endpoints = endpoints
        self.security = security  # ServerSecurity: CURVE on every socket, ZAP checks keys
        broker.security = security
        self.stop_event = threading.Event()
        size = broker.config.max_message_size
        self.hb = make_socket(zmq.SUB, max_msg_size=size, hwm=HEARTBEAT_HWM)
        self.hb.setsockopt(zmq.SUBSCRIBE, b"")
        # replies go out NOBLOCK (a full pipe drops them): room for clients that keep many
        # requests in flight (zmq may refuse well below the HWM: credit comes back in chunks)
        self.control = make_socket(zmq.ROUTER, max_msg_size=size, hwm=CONTROL_HWM)
        # XPUB: we see subscriptions, and encode only events somebody subscribed to
        self.events = make_socket(zmq.XPUB, max_msg_size=size)
        self.subscriptions: dict[bytes, int] = {}
        broker.subscribed = self.subscriptions  # the same dict: the broker sees who listens
        self.work = make_socket(zmq.ROUTER, max_msg_size=max(size, WORK_MAX_MESSAGE))
        # a reconnecting worker takes its routing id back at once. That id is a secret of
        # the worker process (random, never shown), so nobody else can take it over.
        self.work.setsockopt(zmq.ROUTER_HANDOVER, 1)
        if security is not None:
            for sock, domain in ((self.hb, "heartbeat"), (self.control, "control"),
                                 (self.events, "events"), (self.work, "work")):
                security.apply(sock, domain)
        try:
            self.hb.bind(endpoints.heartbeat)
            self.work.bind(endpoints.work)
            self.control.bind(endpoints.control)
            self.events.bind(endpoints.events)
        except zmq.ZMQError:   # e.g. address in use: nothing stays bound or open
            for sock in (self.hb, self.control, self.events, self.work):
                sock.close(0)
            raise
        self.poller = zmq.Poller()
        self.poller.register(self.hb, zmq.POLLIN)
        self.poller.register(self.control, zmq.POLLIN)
        self.poller.register(self.work, zmq.POLLIN)
        self.poller.register(self.events, zmq.POLLIN)
        self.poller.register(broker.ssh.wake, zmq.POLLIN)
        # (routing envelope, reply, whether it acknowledges a write)
        self._replies: list[tuple[list[bytes], Reply, bool]] = []
        self._guard = None   # run(guard): the lease, with several masters

    # --- verbs ----------------------------------------------------------------------
    def _recv_secured(self, sock, multipart: bool):
        """(frames or frame as bytes, Caller or None) on a secured bus: the key that sent it
        comes with the message (ZAP User-Id). Raises zmq.Again when there is nothing."""
        if multipart:
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            return [f.bytes for f in frames], caller_of(self.security.by_public, frames[-1])
        frame = sock.recv(zmq.NOBLOCK, copy=False)
        return frame.bytes, caller_of(self.security.by_public, frame)

    def _revoked(self, socket_name: str) -> None:
        self.broker.counters.inc("revoked_dropped")
        log.debug("%s message from a key that is no longer authorized: dropped", socket_name)

    def process_heartbeats(self, now: float) -> None:
        secured = self.security is not None
        caller = None
        for _ in range(DRAIN_HEARTBEATS):
            try:
                if secured:
                    frame, caller = self._recv_secured(self.hb, False)
                else:
                    frame = self.hb.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if self.hb.getsockopt(zmq.RCVMORE):
                while self.hb.getsockopt(zmq.RCVMORE):
                    self.hb.recv()
                self._bad("heartbeat", "multi-frame message")
                continue
            try:
                msg = decode(frame, self.broker.config.max_message_size)
            except ProtocolError as exc:
                self._bad("heartbeat", exc)
                continue
            if secured and caller is None:
                self._revoked("heartbeat")
            elif type(msg) is Heartbeat:
                self.broker.on_heartbeat(msg, now, caller)
            else:
                self._bad("heartbeat", f"unexpected {msg.TYPE} message")

    def process_control(self, now: float) -> None:
        secured = self.security is not None
        caller = LOCAL  # a plain bus: only the data dir's owner can reach it (ipc, 0700)
        for _ in range(DRAIN_REQUESTS):
            try:
                if secured:
                    frames, caller = self._recv_secured(self.control, True)
                else:
                    frames = self.control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if caller is None:
                self._revoked("control")
                continue
            parts = split_router_frames(frames)
            if parts is None:
                self._bad("control", f"{len(frames)} frames")
                continue
            ident, delim, payload = parts
            envelope = [ident, delim] if len(frames) == 3 else [ident]
            try:
                msg = decode(payload, self.broker.config.max_message_size)
            except ProtocolError as exc:
                self._bad("control", exc)
                self._replies.append((envelope, Reply(id=_guess_id(payload), ok=False, error={
                    "code": "protocol_error", "message": str(exc)}), False))
                continue
            if type(msg) is not Request:
                self._replies.append((envelope, Reply(id=None, ok=False, error={
                    "code": "protocol_error", "message": f"expected a request, got {msg.TYPE}"}),
                    False))
                continue
            reply = self.broker.on_request(msg, now, token=envelope, caller=caller)
            if reply is not None:
                self._replies.append((envelope, reply, self.broker.writes(msg.method)))

    def process_work(self, now: float) -> None:
        secured = self.security is not None
        caller = None
        for _ in range(DRAIN_WORK):
            try:
                if secured:
                    frames, caller = self._recv_secured(self.work, True)
                else:
                    frames = self.work.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if secured and caller is None:
                self._revoked("work")
                continue
            if len(frames) != 2:
                self._bad("work", f"{len(frames)} frames")
                continue
            ident, payload = frames
            try:
                msg = decode(payload, WORK_MAX_MESSAGE)
                handler = WORK_HANDLERS.get(type(msg))
                if handler is None:
                    raise ProtocolError(f"unexpected {msg.TYPE} message on the work socket")
                if secured and not work_ok(self.broker, ident, msg, caller, now):
                    continue
                handler(self.broker, ident, msg, now)
            except (ProtocolError, BadWorkerMessage) as exc:
                self._bad("work", exc)
            except Exception:
                log.exception("work message handling failed")

    def send_work(self, pings_only: bool = False) -> None:
        """What the broker decided for workers. An assignment that was superseded while
        commits failed (the task was lost and given to another worker meanwhile) is not
        sent: the worker would start it only to be cancelled. pings_only: while the
        database refuses writes, workers still hear the broker (no needless reconnects),
        and everything else waits for the commit."""
        out, self.broker.work_out = self.broker.work_out, []
        if pings_only:
            self.broker.work_out = [(i, m) for i, m in out if type(m) is not BrokerPing]
            out = [(i, m) for i, m in out if type(m) is BrokerPing]
        for ident, msg in out:
            if type(msg) is TaskAssign and not self._still_assigned(ident, msg):
                self.broker.counters.inc("assignments_superseded")
                continue
            try:
                self.work.send_multipart([ident, encode(msg)], zmq.NOBLOCK)
            except zmq.ZMQError:  # worker gone (ROUTER_MANDATORY) or its queue full
                self.broker.counters.inc("work_unroutable")
                self.broker.unsendable(ident, msg)

    def _still_assigned(self, ident: bytes, msg) -> bool:
        task = self.broker.tasks.active.get(msg.task_id)
        worker = self.broker.pool.by_identity.get(ident)
        return task is not None and worker is not None and task.attempt == msg.attempt \
            and task.worker_id == worker.id and task.status in (ASSIGNED, RUNNING)

    def send_replies(self) -> None:
        replies, self._replies = self._replies, []
        for envelope, reply, _writes in replies:
            try:
                payload = encode(reply)
            except (TypeError, ValueError, OverflowError, msgpack.PackException) as exc:
                log.exception("reply not encodable")
                payload = encode(Reply(id=reply.id if isinstance(reply.id, (str, int)) else None,
                                       ok=False, error={"code": "internal",
                                                        "message": f"reply not encodable: {exc}"}))
            try:
                self.control.send_multipart(envelope + [payload], zmq.NOBLOCK)
            except zmq.ZMQError:  # peer gone (ROUTER_MANDATORY) or its queue full
                self.broker.counters.inc("replies_dropped")

    def process_subscriptions(self) -> None:
        """XPUB delivers b'\x01prefix' on subscribe and b'\x00prefix' on unsubscribe."""
        while True:
            try:
                frame = self.events.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not frame or frame[0] not in (0, 1):
                continue
            prefix, count = frame[1:], self.subscriptions.get(frame[1:], 0)
            count += 1 if frame[0] == 1 else -1
            if count > 0:
                self.subscriptions[prefix] = count
            else:
                self.subscriptions.pop(prefix, None)

    def _wanted(self, topic: bytes) -> bool:
        return any(topic.startswith(prefix) for prefix in self.subscriptions)

    def publish_events(self, now: float) -> None:
        events = self.broker.take_events()
        if not self.subscriptions:
            return
        for topic, data in events:
            if not self._wanted(topic.encode()):
                continue
            try:
                self.events.send_multipart(
                    [topic.encode(), encode(Event(topic=topic, ts=now, data=data))], zmq.NOBLOCK)
            except zmq.ZMQError:
                self.broker.counters.inc("events_dropped")

    def _bad(self, socket_name: str, why) -> None:
        self.broker.counters.inc("protocol_errors")
        self.broker.counters.inc(f"protocol_errors_{socket_name}")
        log.debug("bad frame on %s socket: %s", socket_name, why)

    # --- the loop ---------------------------------------------------------------------
    def run_once(self, timeout_ms: int = POLL_MS) -> None:
        ready = dict(self.poller.poll(timeout_ms))
        began = time.perf_counter()
        try:
            self._iterate(ready)
        finally:
            self.broker.loop_time.observe(time.perf_counter() - began)

    def _iterate(self, ready: dict) -> None:
        now = time.time()
        if self.hb in ready:
            self.process_heartbeats(now)
        if self.events in ready:
            self.process_subscriptions()
        if self.broker.ssh.wake in ready:
            self.broker.ssh.collect(now)
        if self.work in ready:
            self.process_work(now)
        if self.control in ready:
            self.process_control(now)
        self.broker.tick(now)
        if not self.broker.persist(now):
            if self._replies:
                self._fail_pending("store_unavailable",
                                   "the broker could not write its database; try again")
            if not self.broker.fenced and (self._guard is None or self._guard()):
                self.publish_events(now)   # (a fenced leader announces nothing it did)
                self.send_work(pings_only=True)
            self.send_replies()
            return  # nothing else goes to workers until their tasks' state is on disk
        self.broker.ssh.start_pending()  # their audit rows are on disk now
        self._replies.extend((env, r, False) for env, r in self.broker.take_deferred())
        self._replies.extend((env, r, False) for env, r in self.broker.ssh.take_replies())
        self.send_replies()
        self.send_work()
        self.publish_events(now)

    def _fail_pending(self, code: str, message: str) -> None:
        """Writes this iteration could not commit are refused; reads still get answers."""
        self._replies = [(env, Reply(id=r.id, ok=False, error={"code": code, "message": message})
                          if writes and r.ok else r, writes) for env, r, writes in self._replies]

    def run(self, guard=None) -> None:
        """Until stop(); with several masters also until guard() (the lease) says no or
        the database fences this broker: then it stops at once, dispatching nothing more."""
        log.info("broker listening: %s", self.endpoints.as_dict())
        self._guard = guard
        try:
            while not self.stop_event.is_set():
                if self.broker.fenced or (guard is not None and not guard()):
                    break
                try:
                    self.run_once()
                except Exception:
                    log.exception("broker loop iteration failed; continuing")
                    time.sleep(0.05)
        finally:
            self.close()

    def stop(self) -> None:
        self.stop_event.set()

    def _say_goodbye(self) -> None:
        """A clean stop: tell every worker, so each looks for the active broker at once
        (several masters) instead of after its liveness window."""
        bye = encode(BrokerPing(ts=time.time(), leaving=True))
        for worker in list(self.broker.pool.by_id.values()):
            try:
                self.work.send_multipart([worker.identity, bye], zmq.NOBLOCK)
            except zmq.ZMQError:
                pass

    def close(self) -> None:
        if self.stop_event.is_set() and not self.broker.fenced:
            self._say_goodbye()
        try:
            self.broker.close()
        finally:
            for sock in (self.hb, self.control, self.events):
                sock.close(0)
            self.work.close(200)   # the goodbyes still go out (linger 200 ms)
            if self.security is not None:
                self.security.stop()


def _guess_id(payload: bytes):
    """The request id of a frame that failed validation, when it can be read (so the
    client matches the error to its request); else None."""
    try:
        body = msgpack.unpackb(payload, raw=False, strict_map_key=True, ext_hook=lambda c, d: None)
    except Exception:
        return None
    if isinstance(body, dict) and isinstance(body.get("id"), (str, int)) \
            and not isinstance(body.get("id"), bool):
        return body["id"]
    return None
