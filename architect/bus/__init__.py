"""The wire: message classes, msgpack codec, socket helpers and errors. No business logic."""

from architect.bus.errors import ProtocolError, BusError, RequestTimeout, RemoteError
from architect.bus.codec import encode, decode, PROTOCOL_VERSION

__all__ = ["ProtocolError", "BusError", "RequestTimeout", "RemoteError", "encode", "decode",
           "PROTOCOL_VERSION"]
