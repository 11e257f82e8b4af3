"""Socket helpers: one Context per process, socket options, endpoints.

Every socket here is owned by one thread. Sockets get MAXMSGSIZE (a peer sending a larger
frame is disconnected by libzmq before we see it), linger, and reconnect backoff.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

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


SOCKET_NAMES = ("heartbeat", "work", "control", "events")   # in port order
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# sockaddr_un.sun_path is 108 bytes with its NUL: libzmq refuses a longer ipc path
IPC_PATH_MAX = getattr(zmq, "IPC_PATH_MAX_LEN", 107) or 107


@dataclass(frozen=True)
class Endpoints:
    """The four bus sockets: heartbeat, work, control and events on base_port .. base_port+3,
    or, with `ipc_dir`, the Unix sockets ipc_dir/heartbeat, /work, /control and /events."""
    host: str
    base_port: int = 5555
    ipc_dir: str | None = None

    @classmethod
    def ipc(cls, directory: str | os.PathLike) -> "Endpoints":
        return cls("", 0, str(directory))

    def _url(self, offset: int) -> str:
        if self.ipc_dir is not None:
            return f"ipc://{self.ipc_dir}/{SOCKET_NAMES[offset]}"
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

    def describe(self) -> str:
        """Where the bus is, for a log line: 'ipc://DIR/{...}' or 'HOST:P-P+3'."""
        if self.ipc_dir is not None:
            return f"ipc://{self.ipc_dir}/{{{','.join(SOCKET_NAMES)}}}"
        return f"{self.host}:{self.base_port}-{self.base_port + 3}"


def local_bus_dir(data_dir: str | os.PathLike) -> Path:
    """The folder of the loopback bus's sockets: DATA_DIR/bus, or, when a socket path there
    would pass the ipc limit, /tmp/architect-<uid>-<12 hex of sha256(data dir)>. The data
    dir is taken absolute with symlinks resolved, and <uid> is its owner (the user running
    the broker, who made it; else the caller): broker and clients compute the same path."""
    data = os.path.realpath(os.fspath(data_dir))
    inside = Path(data) / "bus"
    if len(os.fsencode(str(inside / max(SOCKET_NAMES, key=len)))) <= IPC_PATH_MAX:
        return inside
    try:
        uid = os.stat(data).st_uid
    except OSError:
        uid = os.getuid()
    digest = hashlib.sha256(os.fsencode(data)).hexdigest()[:12]
    return Path("/tmp") / f"architect-{uid}-{digest}"  # not $TMPDIR: the same for everyone


def uses_ipc(host: str, *, bus_local: str, curve: bool) -> bool:
    """Whether a broker bound to `host` uses ipc sockets: loopback, no CURVE, bus_local ipc."""
    return host in LOOPBACK_HOSTS and not curve and bus_local == "ipc"


def bind_endpoints(host: str, base_port: int, *, data_dir: str | os.PathLike, bus_local: str,
                   curve: bool) -> Endpoints:
    """What the broker binds (and GET /api/bus reports): the loopback bus without CURVE is
    ipc in local_bus_dir(data_dir) unless bus_local is "tcp"; everything else is tcp."""
    if uses_ipc(host, bus_local=bus_local, curve=curve):
        return Endpoints.ipc(local_bus_dir(data_dir))
    return Endpoints(host, base_port)


def connect_endpoints(host: str, base_port: int, *, data_dir: str | os.PathLike,
                      bus_local: str = "ipc") -> Endpoints:
    """What a client without a dashboard URL connects to: the ipc sockets when `host` is
    loopback and the broker of `data_dir` has made them (its control socket exists), else
    tcp host:base_port.. as before."""
    if host in LOOPBACK_HOSTS and bus_local == "ipc":
        directory = local_bus_dir(data_dir)
        try:
            if stat.S_ISSOCK(os.stat(directory / "control").st_mode):
                return Endpoints.ipc(directory)
        except OSError:
            pass  # none (tcp broker, or no broker yet), or not ours to see
    return Endpoints(host, base_port)


def bus_endpoints(cfg) -> Endpoints:
    """bind_endpoints() for a Config (any object with its fields: no import of config)."""
    return bind_endpoints(cfg.bus_host, cfg.bus_port, data_dir=cfg.data_dir,
                          bus_local=cfg.bus_local, curve=cfg.curve_enabled)


def client_endpoints(cfg) -> Endpoints:
    """connect_endpoints() for a Config: broker_host, bus_port, data_dir, bus_local."""
    return connect_endpoints(cfg.broker_host, cfg.bus_port, data_dir=cfg.data_dir,
                             bus_local=cfg.bus_local)


def ipc_path(endpoint: str) -> str | None:
    """The file of an ipc:// endpoint, None for any other transport."""
    return endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else None


def split_router_frames(frames: list[bytes]) -> tuple[bytes, bytes, bytes] | None:
    """ROUTER frames → (identity, delimiter, payload). DEALER peers send [id, payload],
    REQ peers [id, b"", payload]. Anything else → None (a malformed envelope)."""
    if len(frames) == 2:
        return frames[0], b"", frames[1]
    if len(frames) == 3 and frames[1] == b"":
        return frames[0], b"", frames[2]
    return None
