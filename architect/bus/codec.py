"""msgpack codec: one `encode()` / `decode()` pair for every message type.

decode() raises ProtocolError and nothing else for any input: bad msgpack, a non-map
envelope, unknown ``v`` or ``type``, a missing or mistyped field, an ext type, or a frame
over the size limit.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import msgpack

from architect.bus.errors import ProtocolError
from architect.bus.messages import REGISTRY

PROTOCOL_VERSION = 1
MAX_MESSAGE_SIZE = 1 << 20  # 1 MiB, also the sockets' MAXMSGSIZE

_NONE = type(None)
_SIMPLE = {str: (str,), int: (int,), float: (int, float), bool: (bool,),
           dict: (dict,), list: (list,)}


def _accepted_types(hint) -> tuple | None:
    """Python types a field accepts, from its annotation; None means anything."""
    if hint is Any:
        return None
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        out: tuple = ()
        for arg in typing.get_args(hint):
            acc = _accepted_types(arg)
            if acc is None:
                return None
            out += acc
        return out
    if hint is _NONE:
        return (_NONE,)
    return _SIMPLE[hint]


def _field_specs(cls) -> list[tuple[str, tuple | None, bool]]:
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        specs.append((f.name, _accepted_types(hints[f.name]), required))
    return specs


_SPECS = {name: _field_specs(cls) for name, cls in REGISTRY.items()}


def _reject_ext(code, data):
    raise ProtocolError(f"ext type {code} is not allowed")


_NAMES = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in REGISTRY.values()}


def encode(msg) -> bytes:
    """Pack a message dataclass into one frame."""
    body = {"v": PROTOCOL_VERSION, "type": msg.TYPE}
    for name in _NAMES.get(type(msg)) or [f.name for f in dataclasses.fields(msg)]:
        body[name] = getattr(msg, name)
    return msgpack.packb(body, use_bin_type=True)


def unpack(data: bytes, max_size: int = MAX_MESSAGE_SIZE) -> Any:
    """Unpack one msgpack frame with limits; any failure is a ProtocolError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("frame is not bytes")
    if len(data) > max_size:
        raise ProtocolError(f"frame of {len(data)} bytes is over the {max_size} byte limit")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True,
                               ext_hook=_reject_ext)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises many kinds; all mean "not a message"
        raise ProtocolError(f"not valid msgpack: {type(exc).__name__}: {exc}") from None


def decode(data: bytes, max_size: int = MAX_MESSAGE_SIZE, trusted: bool = False):
    """Decode one frame into its message dataclass, validating envelope and fields.
    trusted=True (a reply from our own broker) skips the deep scan for timestamp ext values
    in nested fields; the envelope and field types are still checked."""
    body = unpack(data, max_size)
    if not isinstance(body, dict):
        raise ProtocolError("message is not a map")
    version = body.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {version!r}")
    mtype = body.get("type")
    if not isinstance(mtype, str) or mtype not in REGISTRY:
        raise ProtocolError(f"unknown message type {mtype!r}")
    return build(mtype, body, trusted)


def build(mtype: str, body: dict, trusted: bool = False):
    """The message of type `mtype` from a map of its fields, each checked as decode()
    checks it (for the items of a batch message, such as `results`)."""
    if not isinstance(body, dict):
        raise ProtocolError(f"{mtype}: not a map")
    kwargs = {}
    if isinstance(body.get("id"), msgpack.Timestamp):
        raise ProtocolError(f"{mtype}: field 'id' is an ext type (timestamp)")
    for name, accepted, required in _SPECS[mtype]:
        if name not in body:
            if required:
                raise ProtocolError(f"{mtype}: missing field '{name}'")
            continue
        value = body[name]
        if accepted is not None and (not isinstance(value, accepted) or
                                     (isinstance(value, bool) and bool not in accepted)):
            raise ProtocolError(f"{mtype}: field '{name}' has type {type(value).__name__}")
        if not trusted and isinstance(value, (dict, list)) and _has_timestamp(value):
            raise ProtocolError(f"{mtype}: field '{name}' holds an ext type (timestamp)")
        kwargs[name] = value
    return REGISTRY[mtype](**kwargs)


def _has_timestamp(value) -> bool:
    """msgpack decodes ext type -1 (timestamp) itself, past ext_hook: look for it."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, msgpack.Timestamp):
            return True
    return False
