"""Socket helpers: one Context per process, socket options, endpoints.

Every socket here is owned by one thread. Sockets get MAXMSGSIZE (a peer sending a larger
frame is disconnected by libzmq before we see it), linger, and reconnect backoff.
"""

from __future__ import annotations

from dataclasses import dataclass

import zmq

from architect.bus.codec import MAX_MESSAGE_SIZE

WORK_MAX_MESSAGE = 8 << 20  # the work socket carries task output: a larger limit
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 5000


def context() -> zmq.Context:
    """The process-wide Context."""
    return zmq.Context.instance()


def make_socket(kind: int, *, max_msg_size: int = MAX_MESSAGE_SIZE, linger_ms: int = 0,
                hwm: int | None = None, ctx: zmq.Context | None = None,
                curve: dict | None = None) -> zmq.Socket:
    """A socket with the project's options set (MAXMSGSIZE, linger, reconnect backoff);
    `curve` {"public", "secret", "server"} makes it a CURVE client of a secured bus."""
    sock = (ctx or context()).socket(kind)
    if curve:
        sock.curve_secretkey = curve["secret"]
        sock.curve_publickey = curve["public"]
        sock.curve_serverkey = curve["server"]
    sock.setsockopt(zmq.MAXMSGSIZE, max_msg_size)
    sock.setsockopt(zmq.LINGER, linger_ms)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    if kind == zmq.ROUTER:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if hwm is not None:
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.RCVHWM, hwm)
    return sock


@dataclass(frozen=True)
class Endpoints:
    """The four bus sockets: heartbeat, work, control and events on base_port .. base_port+3."""
    host: str
    base_port: int = 5555

    def _url(self, offset: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.base_port + offset}"

    @property
    def heartbeat(self) -> str:
        return self._url(0)

    @property
    def work(self) -> str:
        return self._url(1)

    @property
    def control(self) -> str:
        return self._url(2)

    @property
    def events(self) -> str:
        return self._url(3)

    def as_dict(self) -> dict:
        return {"heartbeat": self.heartbeat, "work": self.work, "control": self.control,
                "events": self.events}


def split_router_frames(frames: list[bytes]) -> tuple[bytes, bytes, bytes] | None:
    """ROUTER frames → (identity, delimiter, payload). DEALER peers send [id, payload],
    REQ peers [id, b"", payload]. Anything else → None (a malformed envelope)."""
    if len(frames) == 2:
        return frames[0], b"", frames[1]
    if len(frames) == 3 and frames[1] == b"":
        return frames[0], b"", frames[2]
    return None
