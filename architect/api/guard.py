"""Safe by default against drive-by requests: what a web page open in the user's browser, or
another user of the machine, may not do to this server (ARCHITECTURE.md §10, docs/API.md
"Requests from browsers").

Before every request, in this order (the Dash routes and /healthz too):

1. Host: 400 bad_host unless the Host header names this server (IP literals, localhost and
   *.localhost, the machine's names when bound beyond loopback, the bound address, and
   ARCHITECT_ALLOWED_HOSTS). Stops DNS rebinding.
2. On a state-changing method (anything but GET, HEAD, OPTIONS, TRACE):
   - 403 cross_origin for `Sec-Fetch-Site: cross-site`, or an `Origin` other than this
     server's own (scheme and Host as sent; `Origin: null` is foreign);
   - 415 unsupported_media_type for a body (Content-Length > 0, chunked, or any Content-Type)
     that is not application/json. A POST with no body and no Content-Type passes.
3. Without a login (auth off, so the server is on loopback): 403 forbidden_user unless the
   client's socket belongs to the server's own uid or to root (peer.py). /healthz is open,
   as it is with a login.

After every request: nosniff, X-Frame-Options DENY, Referrer-Policy same-origin and a
Content-Security-Policy that allows only this server's scripts (plus Dash's inline ones, by
hash).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import threading
import weakref
from urllib.parse import urlsplit

from flask import Flask, current_app, request

from architect.api import peer
from architect.api.errors import BadRequest, Forbidden, UnsupportedMediaType

log = logging.getLogger("architect.api")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
OPEN_TO_ALL_USERS = frozenset({"/healthz"})   # as with a login: nothing there to protect
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
DEFAULT_PORTS = {"http": 80, "https": 443}

_NAME_RE = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")  # labels; one trailing dot
_V6_RE = re.compile(r"\[([0-9a-f:.]+)\](?::(\d{1,5}))?")
_PORT_RE = re.compile(r"\d{1,5}")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


# --- Host ---------------------------------------------------------------------------------
def split_host(value: str | None) -> tuple[str, int | None, bool] | None:
    """A Host header → (host, port, is_ip): host lower-case, without brackets (an IPv6
    address in its short form). None when missing, empty or malformed (userinfo, a path, a
    bad port, odd characters)."""
    if not value:
        return None
    value = value.strip().lower()
    if value.startswith("["):
        m = _V6_RE.fullmatch(value)
        if not m:
            return None
        try:
            ip = ipaddress.IPv6Address(m.group(1))
        except ValueError:
            return None
        port = _port(m.group(2))
        return None if port is False else (str(ip), port, True)
    name, sep, port_text = value.partition(":")
    port = _port(port_text) if sep else None
    if port is False or not name or not _NAME_RE.fullmatch(name):
        return None
    try:
        ipaddress.IPv4Address(name)
        return name, port, True
    except ValueError:
        return name, port, False


def _port(text: str | None):
    """int, None (no port), or False (malformed)."""
    if text is None:
        return None
    if not _PORT_RE.fullmatch(text) or not 0 < int(text) <= 65535:
        return False
    return int(text)


def host_allowed(value: str | None, allowed_hosts=(), local_names=()) -> bool:
    """Whether a Host header names this server. `allowed_hosts`: ARCHITECT_ALLOWED_HOSTS
    entries (exact names; `.example.com` for the domain and its subdomains; `*` for any);
    `local_names`: the bound address and, beyond loopback, the machine's names (a callable
    returning them is called only when needed). Case-insensitive, the port ignored."""
    parsed = split_host(value)
    if parsed is None:
        return False
    name, _, is_ip = parsed
    name = name[:-1] if name.endswith(".") else name  # "localhost." is localhost
    if is_ip or name == "localhost" or name.endswith(".localhost"):
        return True
    for entry in allowed_hosts:
        entry = entry.strip().lower()
        if entry == "*":
            return True
        if entry.startswith("."):
            domain = entry.rstrip(".")
            if len(domain) > 1 and (name == domain[1:] or name.endswith(domain)):
                return True
        elif entry:
            if _strip_port(entry) == name:
                return True
    names = local_names() if callable(local_names) else local_names
    return name in names


def _strip_port(entry: str) -> str:
    """An ARCHITECT_ALLOWED_HOSTS name, written with or without a port."""
    host, sep, port = entry.rpartition(":")
    if sep and entry.count(":") == 1 and _PORT_RE.fullmatch(port):
        entry = host
    return entry.rstrip(".")


def _beyond_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True


class LocalNames:
    """The bound address, plus (bound beyond loopback) the hostname and FQDN: looked up
    once, when a Host header first needs them (getfqdn may ask DNS)."""

    def __init__(self, bound: str):
        self.bound = bound.strip().strip("[]").lower().rstrip(".")
        self.beyond = _beyond_loopback(bound.strip())
        self._names: frozenset | None = None
        self._lock = threading.Lock()

    def __call__(self) -> frozenset:
        if self._names is None:
            with self._lock:
                if self._names is None:
                    names = {self.bound} if self.bound else set()
                    if self.beyond:
                        for lookup in (socket.gethostname, socket.getfqdn):
                            try:
                                names.add(lookup().lower().rstrip("."))
                            except OSError:
                                pass
                    self._names = frozenset(n for n in names if n)
        return self._names


# --- Origin -------------------------------------------------------------------------------
def origin_tuple(origin: str) -> tuple[str, str, int] | None:
    """'http://Host:8080' → ('http', 'host', 8080); None for 'null' or anything that is not
    a bare scheme://host[:port]."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.username is not None \
            or parts.password is not None or parts.path not in ("", "/") or parts.query \
            or parts.fragment:
        return None
    name = parts.hostname.lower()
    if ":" in name:  # IPv6: compare in one form
        try:
            name = str(ipaddress.IPv6Address(name))
        except ValueError:
            return None
    return parts.scheme, name, port or DEFAULT_PORTS[parts.scheme]


def same_origin(origin: str, scheme: str, host_header: str | None) -> bool:
    """Whether an Origin header is this server's own origin: the request's scheme and Host."""
    theirs = origin_tuple(origin)
    ours = split_host(host_header)
    if theirs is None or ours is None or scheme not in DEFAULT_PORTS:
        return False
    name, port, _ = ours
    return theirs == (scheme, name, port or DEFAULT_PORTS[scheme])


# --- the body -----------------------------------------------------------------------------
def has_body(headers) -> bool:
    length = (headers.get("Content-Length") or "").strip()
    chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
    return bool(headers.get("Content-Type")) or chunked or (bool(length) and length != "0")


def is_json(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == "application/json"


# --- CSP ----------------------------------------------------------------------------------
def content_security_policy(script_hashes=()) -> str:
    # No 'unsafe-eval': the dashboard (Dash renderer, dcc.Graph / plotly.js, dash-cytoscape)
    # runs without it in headless Chromium (tests/browser assert an empty console).
    return "; ".join([
        "default-src 'self'",
        "script-src " + " ".join(["'self'", *script_hashes]),
        "style-src 'self' 'unsafe-inline'",  # Dash and its components set inline styles
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def _csp_for(app: Flask, cache: dict) -> str:
    """The policy, with the hashes of the inline scripts of the Dash app mounted on `app`
    (architect.ui.mount stores it in app.extensions["architect_ui"]); computed once."""
    dash_app = app.extensions.get("architect_ui")
    key = id(dash_app)
    if cache.get("key") != key or "csp" not in cache:
        hashes = ()
        if dash_app is not None:
            try:
                hashes = tuple(dash_app.csp_hashes())
            except Exception:  # never fail a response over this; the page may then not run
                log.exception("cannot compute the Dash CSP hashes")
        cache.update(key=key, csp=content_security_policy(hashes))
    return cache["csp"]


# --- install ------------------------------------------------------------------------------
def install(app: Flask, config) -> None:
    allowed_hosts = tuple(config.allowed_hosts or ())
    local_names = LocalNames(config.host or "")
    own_uids = frozenset({os.getuid(), os.geteuid(), 0})
    csp_cache: dict = {}

    @app.before_request
    def _guard():
        environ = request.environ
        host = environ.get("HTTP_HOST")
        if not host_allowed(host, allowed_hosts, local_names):
            raise BadRequest(f"this server does not answer to the Host {host!r}; add the name "
                             "to ARCHITECT_ALLOWED_HOSTS if it is really this server",
                             code="bad_host")
        if request.method not in SAFE_METHODS:
            _check_write(request, host)
        # no login configured: a connection without credentials must be the owner's; one
        # with credentials is a user logging in (auth.py checks them, or answers 401)
        if not current_app.config.get("ARCHITECT_AUTH") and \
                request.path not in OPEN_TO_ALL_USERS and "HTTP_AUTHORIZATION" not in environ:
            _check_peer(environ, own_uids)
        return None

    @app.after_request
    def _headers(response):
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        response.headers.setdefault("Content-Security-Policy", _csp_for(app, csp_cache))
        return response


def _check_write(req, host: str | None) -> None:
    if (req.headers.get("Sec-Fetch-Site") or "").strip().lower() == "cross-site":
        raise Forbidden("cross-site requests cannot change anything here", code="cross_origin")
    origin = req.headers.get("Origin")
    if origin is not None and not same_origin(origin, req.scheme, host):
        raise Forbidden(f"requests from the origin {origin!r} cannot change anything here",
                        code="cross_origin")
    if has_body(req.headers) and not is_json(req.headers.get("Content-Type")):
        raise UnsupportedMediaType(
            f"{req.method} takes a JSON body (Content-Type: application/json), not "
            f"{req.headers.get('Content-Type') or 'an untyped body'}")


# Reading /proc/net/tcp costs milliseconds here, so the owner is looked up once per
# connection (keep-alive requests reuse it): the key is the server's reader object for that
# connection, held weakly, so it goes with the connection and can never match a new one
# (a reused client port is a new connection, a new reader).
_VOUCHED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _connection(environ: dict):
    """cheroot's per-connection reader under this request's input wrappers, or None."""
    reader = environ.get("wsgi.input")
    for _ in range(4):
        inner = getattr(reader, "rfile", None)
        if inner is None:
            break
        reader = inner
    if reader is None or reader is environ.get("wsgi.input"):
        return None  # not cheroot's wrappers: no connection to remember
    try:
        weakref.ref(reader)
    except TypeError:
        return None
    return reader


def _check_peer(environ: dict, own_uids: frozenset) -> None:
    """No login: answer only the server's own user and root (connections from the same
    machine; the server is on loopback). A request with no REMOTE_PORT at all did not come
    through a socket (the Flask test client, in-process): nobody to check."""
    if "REMOTE_PORT" not in environ:
        return
    conn = _connection(environ)
    if conn is not None and conn in _VOUCHED:
        return  # this connection's owner was checked on its first request
    uid = None
    try:
        client_port, server_port = int(environ["REMOTE_PORT"]), int(environ["SERVER_PORT"])
        uid = peer.socket_owner(environ.get("REMOTE_ADDR") or "", client_port, server_port)
    except (KeyError, ValueError):
        pass
    if uid is None:
        log.debug("no owner found for the connection from %s:%s to port %s; refused",
                  environ.get("REMOTE_ADDR"), environ.get("REMOTE_PORT"),
                  environ.get("SERVER_PORT"))
    if uid is not None and uid in own_uids:
        if conn is not None:
            _VOUCHED[conn] = True
        return
    if uid is None or uid not in own_uids:
        me = os.geteuid()
        raise Forbidden(
            "this server has no login, so it answers only its own user's processes (uid "
            f"{me}) and root; run the command as that user, or start the server with a login "
            "(ARCHITECT_USER / ARCHITECT_PASSWORD) and log in", code="forbidden_user")
