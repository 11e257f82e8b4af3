"""Request/reply over the control socket (DEALER → broker ROUTER), Lazy Pirate style.

A request that gets no reply within the timeout closes and reopens the socket (so a late
reply cannot be mistaken for the next one) and raises RequestTimeout. Not thread-safe: one
RpcClient per thread.
"""

from __future__ import annotations

import itertools
import os
import time

import zmq

from architect.bus.codec import decode, encode
from architect.bus.errors import ProtocolError, RemoteError, RequestTimeout
from architect.bus.messages import Reply, Request
from architect.bus.transport import make_socket


ABORT_EVERY = 0.2   # seconds between abort() checks while a call waits


class RequestAborted(RequestTimeout):
    """The caller's abort() said to stop waiting (no reply came in the meantime)."""


class RpcClient:
    def __init__(self, endpoint: str, timeout: float = 5.0, curve: dict | None = None):
        self.endpoint = endpoint
        self.curve = curve
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid()}-{id(self):x}-"
        self._sock: zmq.Socket | None = None
        self._pending: set[str] = set()       # sent with send(), no reply read yet
        self._replies: dict[str, Reply] = {}  # read, not yet receive()d

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            self._sock = make_socket(zmq.DEALER, max_msg_size=-1,  # the broker is trusted
                                     curve=self.curve)
            # replies are never refused here (the broker drops what a full pipe would not
            # take): send() callers bound what they keep in flight themselves
            self._sock.setsockopt(zmq.RCVHWM, 0)
            self._sock.connect(self.endpoint)
        return self._sock

    def _reset(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        self._pending.clear()   # whatever was in flight has no reply coming any more

    def call(self, method: str, params: dict | None = None, timeout: float | None = None,
             on_behalf: dict | None = None, abort=None):
        """Send one request and return its result; raise RemoteError or RequestTimeout.
        `on_behalf` {user, role, addr}: the master's web server calling for a web user.
        `abort()`, asked every 0.2 s while waiting: True gives up at once (RequestAborted),
        e.g. a standby's web server whose active broker changed under a forwarded call."""
        req_id = self._prefix + str(next(self._ids))
        sock = self._socket()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        # a DEALER with no live connection (the broker down, or refusing this key's handshake)
        # would block in send: wait for room until the deadline instead
        while True:
            left = deadline - time.monotonic()
            step = min(left, ABORT_EVERY) if abort is not None else left
            if sock.poll(max(int(step * 1000), 0) + 1, zmq.POLLOUT):
                break
            if abort is not None and left > ABORT_EVERY and not abort():
                continue
            if abort is not None and left > ABORT_EVERY:
                self._reset()
                raise RequestAborted(f"'{method}' to {self.endpoint} abandoned: the broker "
                                     "there is no longer the one to ask")
            self._reset()
            raise RequestTimeout(f"could not send '{method}' to the broker at {self.endpoint} "
                                 f"within {self.timeout if timeout is None else timeout:g}s "
                                 "(not running, or not accepting this client's key)")
        try:
            sock.send(encode(Request(id=req_id, method=method, params=params or {},
                                     on_behalf=on_behalf)), zmq.NOBLOCK)
        except zmq.Again:  # the connection went between poll and send
            self._reset()
            raise RequestTimeout(f"could not send '{method}' to the broker at "
                                 f"{self.endpoint}") from None
        while True:
            left = deadline - time.monotonic()
            if abort is not None and left > 0:
                if not sock.poll(int(min(left, ABORT_EVERY) * 1000) + 1):
                    if abort():
                        self._reset()
                        raise RequestAborted(f"'{method}' to {self.endpoint} abandoned: "
                                             "the broker there is no longer the one to ask")
                    continue
            elif left <= 0 or not sock.poll(int(left * 1000) + 1):
                left = 0
            if left <= 0:
                self._reset()
                raise RequestTimeout(f"no reply from the broker at {self.endpoint} to "
                                     f"'{method}' within {self.timeout if timeout is None else timeout:g}s")
            try:
                reply = decode(sock.recv(), max_size=1 << 30, trusted=True)
            except ProtocolError:
                continue
            if isinstance(reply, Reply) and reply.id in self._pending:
                self._pending.discard(reply.id)   # one of send()'s: kept for receive()
                self._replies[reply.id] = reply
                continue
            if not isinstance(reply, Reply) or (reply.id != req_id and reply.id is not None):
                continue  # a late reply to an earlier request
            if reply.ok:
                return reply.result
            err = reply.error or {}
            raise RemoteError(str(err.get("code", "error")), str(err.get("message", "")))

    # --- several requests in flight on one DEALER (pipelining) ----------------------------
    def send(self, method: str, params: dict | None = None,
             on_behalf: dict | None = None) -> str:
        """Send a request without waiting for its reply; its id, for receive(). The broker
        answers requests in the order of its loop, each reply after the commit it needs;
        many in flight share one commit. RequestTimeout if it cannot be sent within the
        timeout (no broker)."""
        req_id = self._prefix + str(next(self._ids))
        sock = self._socket()
        if not sock.poll(int(self.timeout * 1000) + 1, zmq.POLLOUT):
            self._reset()
            raise RequestTimeout(f"could not send '{method}' to the broker at {self.endpoint} "
                                 f"within {self.timeout:g}s")
        sock.send(encode(Request(id=req_id, method=method, params=params or {},
                                 on_behalf=on_behalf)), zmq.NOBLOCK)
        self._pending.add(req_id)
        return req_id

    def receive(self, req_id: str, timeout: float | None = None):
        """The result of a request sent with send(): waits for its reply, keeping the
        replies of other requests in flight that come first. RemoteError, or
        RequestTimeout (then every request in flight is lost: the socket is reset)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while req_id not in self._replies:
            if req_id not in self._pending:
                raise KeyError(f"no request {req_id} in flight")
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(int(left * 1000) + 1):
                self._reset()
                raise RequestTimeout(f"no reply from the broker at {self.endpoint} within "
                                     f"{self.timeout if timeout is None else timeout:g}s")
            self.take_replies()
        reply = self._replies.pop(req_id)
        if reply.ok:
            return reply.result
        err = reply.error or {}
        raise RemoteError(str(err.get("code", "error")), str(err.get("message", "")))

    def take_replies(self) -> int:
        """Read every reply waiting on the socket (no blocking); how many."""
        got = 0
        while self._sock is not None:
            try:
                frame = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                reply = decode(frame, max_size=1 << 30, trusted=True)
            except ProtocolError:
                continue
            if isinstance(reply, Reply) and reply.id in self._pending:
                self._pending.discard(reply.id)
                self._replies[reply.id] = reply
                got += 1
        return got

    def has_reply(self, req_id: str) -> bool:
        """Has the reply of this request been read (receive() will not wait)?"""
        return req_id in self._replies

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        self._reset()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
