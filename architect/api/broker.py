"""The web process's way to the broker: one control client per thread (never a shared
socket), broker errors mapped to REST errors."""

from __future__ import annotations

import threading

from flask import g, has_request_context

from architect.api.errors import ApiError, BadRequest, Conflict, Forbidden, NotFound, Unavailable
from architect.bus.errors import RemoteError, RequestTimeout
from architect.bus.rpc import RequestAborted, RpcClient

_STATUS = {"bad_request": BadRequest, "not_found": NotFound, "unknown_method": BadRequest,
           "not_secured": Conflict, "conflict": Conflict, "forbidden": Forbidden,
           "protocol_error": BadRequest}


class BrokerGateway:
    """`route`, with several masters: a function giving the active broker's (control
    endpoint, CURVE options), or None during a failover; a standby's web server forwards
    every call there (ha.Master.route)."""

    def __init__(self, control_endpoint: str, timeout: float = 5.0, curve: dict | None = None,
                 route=None, fallback=None):
        self.endpoint = control_endpoint
        self.curve = curve
        self.timeout = timeout
        self.route = route
        # several masters: reads nobody active can answer come from the database
        # (standby_reads.DatabaseView), marked X-Architect-Source: database
        self.fallback = fallback
        self._local = threading.local()

    def _target(self):
        return self.route() if self.route is not None else (self.endpoint, self.curve)

    def _client(self) -> RpcClient:
        target = (self.endpoint, self.curve)
        if self.route is not None:
            target = self.route()
            if target is None:
                raise Unavailable("no master is active right now (a failover is under way); "
                                  "try again in a few seconds", code="no_leader")
        client = getattr(self._local, "client", None)
        if client is not None and getattr(self._local, "target", None) != target:
            client.close()
            client = None
        if client is None:
            client = self._local.client = RpcClient(target[0], timeout=self.timeout,
                                                    curve=target[1])
            self._local.target = target
        return client

    def _forward(self, method, params, timeout, as_server):
        """One call. With several masters it is given up as soon as the active broker
        changes, and a read (a GET, or no web request) is then asked again of the new one;
        a read nobody active answers comes from the database."""
        on_behalf = _open_route() if as_server else _on_behalf()
        if self.route is None:
            return self._client().call(method, params or {}, timeout=timeout,
                                       on_behalf=on_behalf)
        for attempt in range(2):
            if self.route() is None:   # a failover under way: nobody to forward to
                break
            client = self._client()
            target = self._local.target
            try:
                return client.call(method, params or {}, timeout=timeout, on_behalf=on_behalf,
                                   abort=lambda: self._target() != target)
            except RequestAborted:
                if not _is_read():
                    raise
            except RequestTimeout:
                if not _is_read() or self.fallback is None:
                    raise
                break
        if self.fallback is None or not _is_read():
            raise Unavailable("no master is active right now (a failover is under way); "
                              "try again in a few seconds", code="no_leader")
        result = self.fallback.call(method, params, on_behalf)
        if has_request_context():
            g.architect_source = "database"
        return result

    def where(self) -> str:
        if self.route is None:
            return self.endpoint
        target = self.route()
        return target[0] if target else "no active master"

    def call(self, method: str, params: dict | None = None, timeout: float | None = None,
             as_server: bool = False):
        """Call the broker for the current request's user (its role is checked there), or
        as the web server itself (`as_server`: open routes such as joining the bus)."""
        try:
            return self._forward(method, params, timeout, as_server)
        except (OverflowError, ValueError, TypeError) as exc:  # e.g. an integer msgpack can't hold
            raise BadRequest(f"a value in the request cannot be sent on: {exc}") from None
        except RequestAborted:
            raise Unavailable("the active master changed while this request was under way: it "
                              "may or may not have been carried out; try again (with an "
                              "idempotency key for a submit)", code="no_leader") from None
        except RequestTimeout:
            raise Unavailable("the broker did not answer in time; is it running? "
                              f"({self.where()})") from None
        except RemoteError as exc:
            if exc.code in ("store_unavailable", "no_leader"):
                raise Unavailable(exc.message, code=exc.code) from None
            cls = _STATUS.get(exc.code)
            if cls is None:
                raise ApiError(exc.message, code=exc.code, status=502) from None
            raise cls(exc.message) from None

    def reachable(self) -> bool:
        try:
            self._client().call("ping", timeout=1.0)
            return True
        except Exception:
            return False


def _is_read() -> bool:
    if not has_request_context():
        return True
    from flask import request
    return request.method in ("GET", "HEAD", "OPTIONS")


def _on_behalf() -> dict | None:
    """The web user of the current request (set by auth), for the broker's role check and
    audit. Outside a request (start-up, metrics thread) the web server speaks for itself."""
    if not has_request_context():
        return None
    ident = g.get("identity")
    return None if ident is None else {"user": ident.user, "role": ident.role,
                                       "addr": ident.addr}


def _open_route() -> dict | None:
    """An open route (joining the bus) calls as the web server, but the audit still says
    from where the request came."""
    if not has_request_context():
        return None
    from flask import request
    return {"user": "open-route", "role": "admin", "addr": request.remote_addr or ""}
