"""Tier 3: HTTP Basic auth of a real `architect server` (TESTING.md S1, B4; ARCHITECTURE.md §1, §7).

Every route of the Flask url map — the REST routes and Dash's — is asked without and with
wrong credentials. Failed logins count per client address and lock an address out after 10,
so each request that must fail comes from its own loopback source address (127.10.x.y; the
server still listens on 127.0.0.1 only), and the lockout itself is tested on a separate server.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import os
import re
import stat
from urllib.parse import urlparse

import pytest

from tests.helpers import Cluster

pytestmark = pytest.mark.slow

USER, PASSWORD = "admin", "s3cret"
# Open routes. ARCHITECTURE.md §7 and TESTING.md S1 say "every route but /healthz"; §1 has nodes
# that know only the dashboard URL read the bus endpoints from GET /api/bus and ask to join
# the secured bus, so the code opens /api/bus and /api/bus/join too (architect/api/auth.py).
# Pinned here so that no route becomes public without this list changing.
PUBLIC = {"/healthz", "/api/bus", "/api/bus/join"}
CREDS = {"ARCHITECT_USER": USER, "ARCHITECT_PASSWORD": PASSWORD}
SKIP_METHODS = {"HEAD", "OPTIONS"}
PLACEHOLDER = {"int": "1", "path": "x/y", "string": "x", "default": "x", "any": "x", "float": "1.0",
               "nodekey": "x",
               "uuid": "00000000-0000-0000-0000-000000000000"}
_sources = (f"127.10.{i // 250}.{i % 250 + 2}" for i in itertools.count())


def fresh_source() -> str:
    """A loopback source address no request has used yet (a fresh failure counter)."""
    return next(_sources)


def basic(user: str | bytes, password: str | bytes) -> str:
    raw = (user if isinstance(user, bytes) else user.encode()) + b":" + \
        (password if isinstance(password, bytes) else password.encode())
    return "Basic " + base64.b64encode(raw).decode()


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.headers.get('Content-Type')} {self.body[:200]!r}>"


def call(base: str, method: str, path: str, authorization=None, source: str = "127.0.0.1",
         body: bytes | None = None) -> Answer:
    """One request with http.client, so that any header bytes can be sent, from `source`."""
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30, source_address=(source, 0))
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        if authorization is not None:
            conn.putheader("Authorization", authorization)
        if body is not None or method in ("POST", "PUT", "PATCH", "DELETE"):
            body = body or b""
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


def assert_401(answer: Answer, what: str) -> None:
    assert answer.status == 401, (what, answer)
    challenge = answer.headers.get("WWW-Authenticate", "")
    assert challenge.lower().startswith("basic") and "realm=" in challenge, (what, challenge)
    assert b"Traceback" not in answer.body, what
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, (what, body)
    assert body["error"]["code"] == "unauthorized", (what, body)


def every_route_and_method():
    """(method, concrete path) for every rule of the full app (REST + Dash), placeholders in."""
    import tempfile
    from pathlib import Path

    from architect import config as config_mod
    from architect.api import create_app
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_mod.load(env={"ARCHITECT_DATA_DIR": str(Path(tmp) / "data")},
                              config_file=Path(tmp) / "none.json")
        app = create_app(cfg, credentials=(USER, PASSWORD), with_ui=True)
        out = []
        for rule in app.url_map.iter_rules():
            path = re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>",
                          lambda m: PLACEHOLDER[m.group(1) or "default"], rule.rule)
            for method in sorted(rule.methods - SKIP_METHODS):
                out.append((method, path, rule.rule))
        return out


ROUTES = every_route_and_method()
ROUTE_IDS = [f"{m} {r}" for m, _, r in ROUTES]


def test_only_the_known_routes_are_public():
    from architect.api.auth import PUBLIC_PATHS
    assert set(PUBLIC_PATHS) == PUBLIC


def assert_public(answer: Answer, method: str, rule: str) -> None:
    """What an open route answers without (or with wrong) credentials."""
    assert answer.status != 401 and b"Traceback" not in answer.body, (method, rule, answer)
    body = answer.json()
    if rule == "/healthz":
        assert answer.status in (200, 503) and body["broker"] in ("reachable", "unreachable")
    elif rule == "/api/bus":
        assert answer.status == 200
        assert set(body) == {"heartbeat", "work", "control", "events", "server_key"}, body
    elif rule == "/api/bus/join":   # no body: bad input, judged before anything else
        assert answer.status == 400 and set(body) == {"error"}, body
    else:
        raise AssertionError(f"{rule} is not a public route")


def test_the_route_list_has_the_api_and_dash():
    rules = {r for _, _, r in ROUTES}
    assert {"/api/nodes", "/api/tasks", "/healthz", "/metrics", "/api/openapi.json", "/"} <= rules
    assert any(r.startswith("/_dash-") for r in rules), rules   # Dash's routes are included
    assert ("POST", "/_dash-update-component") in {(m, r) for m, _, r in ROUTES}
    assert len(ROUTES) >= 40


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("auth"))
    try:
        yield cluster.start_server(env=CREDS)
    finally:
        cluster.stop_all()


@pytest.mark.parametrize("method,path,rule", ROUTES, ids=ROUTE_IDS)
def test_every_route_needs_credentials(server, method, path, rule):
    answer = call(server, method, path, source=fresh_source())
    if rule in PUBLIC:
        assert_public(answer, method, rule)
        return
    assert_401(answer, f"{method} {path} without credentials")


@pytest.mark.parametrize("method,path,rule", ROUTES, ids=ROUTE_IDS)
def test_every_route_refuses_a_wrong_password(server, method, path, rule):
    answer = call(server, method, path, basic(USER, "wrong"), source=fresh_source())
    if rule in PUBLIC:
        assert_public(answer, method, rule)
        return
    assert_401(answer, f"{method} {path} with a wrong password")


@pytest.mark.parametrize("user,password", [("root", PASSWORD), ("", ""), (USER, ""),
                                           (USER, PASSWORD + "x"), (USER.upper(), PASSWORD),
                                           ("ädmin", PASSWORD), (USER, PASSWORD[:-1])])
def test_wrong_user_or_password_is_401(server, user, password):
    assert_401(call(server, "GET", "/api/nodes", basic(user, password), source=fresh_source()),
               f"{user!r}:{password!r}")


MALFORMED = {
    "basic-alone": "Basic",
    "basic-space": "Basic ",
    "not-base64": "Basic !!!",
    "no-colon": "Basic " + base64.b64encode(b"nocolon").decode(),
    "bearer": "Bearer x",
    "digest": 'Digest username="admin", realm="architect"',
    "no-space": "Basic" + base64.b64encode(b"admin:s3cret").decode(),
    "bad-padding": "Basic YWRtaW46czNjcmV0=x",
    "not-utf8": "Basic " + base64.b64encode(b"admin:\xff\xfe").decode(),
    "non-ascii-bytes": b"Basic \xff\xfe\xfd\xe9",
    "non-ascii-only": "\u00e9\u00e8\u00ea".encode("latin-1"),
    "spaces": "    ",
    "huge-10k": "Basic " + "A" * 10240,
    "huge-10k-password": basic(USER, "x" * 10240),
    "huge-10k-garbage": "x" * 10240,
    "nul-in-credentials": "Basic " + base64.b64encode(b"admin\x00:s3cret").decode(),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_authorization_headers_are_401(server, name):
    for method, path in (("GET", "/api/nodes"), ("POST", "/api/tasks"), ("GET", "/")):
        assert_401(call(server, method, path, MALFORMED[name], source=fresh_source()),
                   f"{name} on {method} {path}")


def test_correct_credentials_open_the_api_and_the_dashboard(server):
    good = basic(USER, PASSWORD)
    nodes = call(server, "GET", "/api/nodes", good)
    assert nodes.status == 200 and nodes.json() == {"nodes": [], "count": 0}
    created = call(server, "POST", "/api/nodes", good,
                   body=json.dumps({"name": "n1", "ip_address": "127.0.0.1"}).encode())
    assert created.status in (200, 201) and created.json()["name"] == "n1"
    page = call(server, "GET", "/", good)
    assert page.status == 200 and "text/html" in page.headers["Content-Type"], page
    assert b"<html" in page.body.lower()
    layout = call(server, "GET", "/_dash-layout", good)
    assert layout.status == 200 and layout.headers["Content-Type"].startswith("application/json")
    spec = call(server, "GET", "/api/openapi.json", good)
    assert spec.status == 200 and "basic" in spec.json()["components"]["securitySchemes"]
    metrics = call(server, "GET", "/metrics", good)
    assert metrics.status == 200 and b"architect_broker_up 1" in metrics.body
    # /healthz stays public
    assert call(server, "GET", "/healthz").status == 200


def test_lockout_after_ten_failures(cluster):
    """On its own server: 10 failures from one address, then 429 + Retry-After for it."""
    base = cluster.start_server(key="lockout-server", env=CREDS)
    good, bad = basic(USER, PASSWORD), basic(USER, "guess")
    src = fresh_source()
    assert call(base, "GET", "/api/nodes", good, source=src).status == 200
    for attempt in range(10):
        assert_401(call(base, "GET", "/api/nodes", bad, source=src), f"failure {attempt + 1}")
    locked = call(base, "GET", "/api/nodes", bad, source=src)
    assert locked.status == 429, locked
    retry = locked.headers.get("Retry-After")
    assert retry is not None and retry.isdigit() and 1 <= int(retry) <= 61, retry
    body = locked.json()
    assert set(body) == {"error"} and body["error"]["code"] == "too_many_requests", body
    # now even the right password is refused from that address, on every route …
    for method, path in (("GET", "/api/nodes"), ("GET", "/"), ("POST", "/api/tasks")):
        answer = call(base, method, path, good, source=src)
        assert answer.status == 429 and answer.headers.get("Retry-After"), (method, path, answer)
    assert call(base, "GET", "/api/nodes", MALFORMED["bearer"], source=src).status == 429
    # … but /healthz stays open, and other addresses are not affected
    assert call(base, "GET", "/healthz", source=src).status == 200
    assert call(base, "GET", "/api/nodes", good, source=fresh_source()).status == 200
    assert call(base, "GET", "/api/nodes", bad, source=fresh_source()).status == 401


def test_missing_credentials_do_not_count_towards_lockout(cluster):
    base = cluster.start_server(key="lockout-server-2", env=CREDS)
    src = fresh_source()
    for _ in range(15):
        assert_401(call(base, "GET", "/api/nodes", source=src), "no credentials")
    assert call(base, "GET", "/api/nodes", basic(USER, PASSWORD), source=src).status == 200


# --- generated password (unit level: nothing binds beyond loopback here) -----------------

def load_config(tmp_path, **env):
    from architect import config as config_mod
    values = {"ARCHITECT_DATA_DIR": str(tmp_path / "data")}
    values.update({f"ARCHITECT_{k.upper()}": v for k, v in env.items()})
    return config_mod.load(env=values, config_file=tmp_path / "none.json")


def test_beyond_loopback_without_credentials_generates_a_password_once(tmp_path):
    from architect.api.auth import resolve_credentials
    cfg = load_config(tmp_path, host="0.0.0.0")
    said = []

    def announce(text, file=None):
        said.append(text)

    first = resolve_credentials(cfg, announce=announce)
    assert first is not None and first[0] == "admin"
    password = first[1]
    assert len(password) >= 16 and password.strip() == password
    path = tmp_path / "data" / "web-password"
    assert path.read_text().strip() == password
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(said) == 1 and password in said[0] and str(path) in said[0]
    second = resolve_credentials(cfg, announce=announce)
    assert second == first and len(said) == 1        # the same password, not announced again
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_set_credentials_win_and_loopback_needs_none(tmp_path):
    from architect.api.auth import resolve_credentials

    def announce(text, file=None):
        raise AssertionError(f"announced: {text}")

    for host in ("127.0.0.1", "localhost", "::1"):
        assert resolve_credentials(load_config(tmp_path, host=host), announce=announce) is None
    assert not (tmp_path / "data" / "web-password").exists()
    cfg = load_config(tmp_path, host="0.0.0.0", user="ops", password="pw")
    assert resolve_credentials(cfg, announce=announce) == ("ops", "pw")
    assert not (tmp_path / "data" / "web-password").exists()
    cfg = load_config(tmp_path, user="ops", password="pw")
    assert resolve_credentials(cfg, announce=announce) == ("ops", "pw")


# --- /api/bus/join checks the web login too: it must obey the same lockout ------------------

def join(base, name, authorization, source):
    import zmq
    public, _ = zmq.curve_keypair()
    body = json.dumps({"name": name, "public_key": public.decode()}).encode()
    return call(base, "POST", "/api/bus/join", authorization, source=source, body=body)


@pytest.fixture
def secured(cluster):
    """A server whose bus is secured (CURVE on; still bound to 127.0.0.1) with a web login."""
    return cluster.start_server(key="secured-server", env={**CREDS, "ARCHITECT_BUS_CURVE": "on"})


def test_bus_join_with_and_without_the_login(secured):
    good, bad = basic(USER, PASSWORD), basic(USER, "guess")
    assert join(secured, "j1", good, fresh_source()).json()["status"] == "authorized"
    pending = join(secured, "j2", None, fresh_source())
    assert pending.status == 202 and pending.json()["status"] == "pending"
    wrong = join(secured, "j3", bad, fresh_source())
    assert wrong.status in (202, 401, 429), wrong
    assert wrong.status != 200


def test_bus_join_obeys_the_lockout(secured):
    src = fresh_source()
    for _ in range(10):
        assert_401(call(secured, "GET", "/api/nodes", basic(USER, "guess"), source=src), "guess")
    assert call(secured, "GET", "/api/nodes", basic(USER, PASSWORD), source=src).status == 429
    answer = join(secured, "locked-out", basic(USER, PASSWORD), src)
    assert answer.status == 429, answer


def test_bus_join_wrong_passwords_count_as_failed_logins(secured):
    src = fresh_source()
    answers = [join(secured, f"guess{i}", basic(USER, f"guess{i}"), src).status for i in range(11)]
    assert 429 in answers, answers
    assert call(secured, "GET", "/api/nodes", basic(USER, PASSWORD), source=src).status == 429
