"""Message classes. Each type is a dataclass; `TYPE` is its wire name.

The envelope on the wire is one msgpack map: ``{"v": 1, "type": TYPE, **fields}``.
Field types are checked on decode from the annotations (see codec.py). Add a type by
defining a dataclass here and decorating it with ``@message``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

REGISTRY: dict[str, type] = {}


def message(cls):
    """Register a dataclass as a wire message under its TYPE."""
    cls = dataclass(cls)
    REGISTRY[cls.TYPE] = cls
    return cls


@message
class Heartbeat:
    """Agent → broker (PUB/SUB :5555). The node's identity and its latest metrics.

    metrics: cpu_percent, memory_percent, disk_percent, load_1, load_5, load_15,
    net_bytes_sent, net_bytes_recv, process_count, uptime, boot_time (numbers).
    """
    TYPE = "heartbeat"
    name: str
    ts: float
    metrics: dict
    hostname: str = ""
    ip_address: str = ""
    capabilities: list = field(default_factory=list)
    seq: int = 0


@message
class Request:
    """Client → broker (DEALER/ROUTER :5557). Call `method` with `params`; `id` is echoed."""
    TYPE = "request"
    id: Any
    method: str
    params: dict = field(default_factory=dict)


@message
class Reply:
    """Broker → client. `ok` true: `result` holds the answer; false: `error` = {code, message}."""
    TYPE = "reply"
    id: Any
    ok: bool
    result: Any = None
    error: Optional[dict] = None


@message
class Event:
    """Broker → subscribers (PUB :5558), sent after a topic frame such as `node.web-1.offline`."""
    TYPE = "event"
    topic: str
    ts: float
    data: dict = field(default_factory=dict)
