"""Errors of the bus.

    BusError
    ├── ProtocolError    a frame that is not a valid message (bad msgpack, unknown v/type,
    │                    missing or mistyped field, ext type, too large)
    ├── RequestTimeout   no reply from the broker within the timeout
    └── RemoteError      the broker answered {ok: false, error: {code, message}}
"""


class BusError(Exception):
    """Base of every bus error."""


class ProtocolError(BusError):
    """A frame that does not decode to a valid message."""


class RequestTimeout(BusError):
    """The broker did not answer in time (it may be down or unreachable)."""


class RemoteError(BusError):
    """The broker refused a request; `code` is machine-readable, `message` is for people."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
