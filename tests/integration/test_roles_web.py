"""S7 (TESTING.md; ARCHITECTURE.md §7, §10): web users and API tokens with roles, on a real
`architect server` (CURVE-secured bus, web login on).

Every state-changing route of the Flask url map is tried as a viewer (password and token):
403 `forbidden`, and the database, read-only, shows nothing changed. An operator runs tasks
but is refused users, tokens, keys, SSH and node removal. Revoked, expired, wrong and
malformed tokens are 401 on every route, never 500. Passwords are stored as argon2id
hashes and never reach the audit.

/api/bus/join is left out of the viewer sweep: it is open by design (a node with only the
dashboard URL asks to join there; it is only *approved* with an admin's login, which is
checked here too).
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import time
from urllib.parse import urlparse

import pytest
import requests
import zmq

from tests.helpers import Cluster, db_rows, wait_for

pytestmark = pytest.mark.slow

ADMIN = ("admin", "s3cret-admin")
VIEWER = ("vera", "viewer-password-1")
OPERATOR = ("otto", "operator-password-1")
CREDS = {"ARCHITECT_USER": ADMIN[0], "ARCHITECT_PASSWORD": ADMIN[1]}
NODE = "wn-1"
OPEN_BY_DESIGN = {("POST", "/api/bus/join")}
PUBLIC = {"/healthz", "/api/bus", "/api/bus/join"}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
_sources = (f"127.11.{i // 250}.{i % 250 + 2}" for i in itertools.count())


def url_map() -> list[tuple[str, str]]:
    """(method, rule) for every rule of the full app (REST + Dash), built only to be read."""
    import tempfile
    from pathlib import Path

    from architect import config as config_mod
    from architect.api import create_app
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_mod.load(env={"ARCHITECT_DATA_DIR": str(Path(tmp) / "data")},
                              config_file=Path(tmp) / "none.json")
        app = create_app(cfg, credentials=ADMIN, with_ui=True)
        return sorted((m, rule.rule) for rule in app.url_map.iter_rules()
                      for m in rule.methods - {"HEAD", "OPTIONS"})


ROUTES = url_map()
WRITE_ROUTES = [(m, r) for m, r in ROUTES if m in STATE_CHANGING and (m, r) not in OPEN_BY_DESIGN]


# --- the cluster ---------------------------------------------------------------------------
class Web:
    def __init__(self, cluster: Cluster, base: str):
        self.cluster, self.base = cluster, base
        self.db_path = cluster.tmp / "data" / "architect.db"

    def request(self, method, path, auth=None, token=None, body=None, **kw):
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.base + path, auth=auth, headers=headers,
                                json=body, timeout=30, **kw)

    def rows(self, sql: str, params=()) -> list[dict]:
        return db_rows(self.db_path, sql, params)

    def snapshot(self) -> dict:
        """What a refused write must leave as it was (read-only, from the database and the
        key store)."""
        keys = self.cluster.rpc("keys.list")
        return {
            "tasks": self.rows("SELECT id, status, cancel_requested, node FROM tasks ORDER BY id"),
            "nodes": self.rows("SELECT name, hostname, drained, ssh, capabilities FROM nodes "
                               "ORDER BY name"),
            "users": self.rows("SELECT name, role, password_hash FROM users ORDER BY name"),
            "tokens": self.rows("SELECT id, kind, role, revoked_at, uses_left FROM tokens "
                                "ORDER BY id"),
            "alerts": self.rows("SELECT id, status, acknowledged_at FROM alerts ORDER BY id"),
            "ssh_audit": self.rows("SELECT COUNT(*) AS n FROM ssh_audit"),
            "schedules": self.rows("SELECT name, paused, next_due, last_task, spec "
                                   "FROM schedules ORDER BY name"),
            "schedule_runs": self.rows("SELECT COUNT(*) AS n FROM schedule_runs"),
            "queues": self.rows("SELECT * FROM queues ORDER BY name"),
            "node_thresholds": self.rows("SELECT * FROM node_thresholds ORDER BY node"),
            "alert_rules": self.rows("SELECT * FROM alert_rules ORDER BY name"),
            "notify": self.rows("SELECT name, config FROM notify_channels UNION ALL "
                                "SELECT name, channels FROM notify_rules ORDER BY 1"),
            "silences": self.rows("SELECT id, ends_at FROM silences ORDER BY id"),
            "keys": {"authorized": keys["authorized"], "pending": keys["pending"],
                     "roles": keys["roles"]},
        }


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("roles-web")
    cluster = Cluster(tmp, extra_env={"ARCHITECT_BUS_CURVE": "on"})
    try:
        base = cluster.start_server(env=CREDS)
        w = Web(cluster, base)
        cluster.cli("users", "add", VIEWER[0], "--role", "viewer", "--password", VIEWER[1])
        made = w.request("POST", "/api/users", auth=ADMIN,
                         body={"name": OPERATOR[0], "role": "operator", "password": OPERATOR[1]})
        assert made.status_code == 201 and made.json() == {"name": OPERATOR[0],
                                                           "role": "operator"}, made.text
        w.viewer_token = cluster.cli_json("tokens", "create", "--role", "viewer",
                                          "--name", "ro-script")
        w.operator_token = cluster.cli_json("tokens", "create", "--role", "operator")
        # things a write could change: a node (with an alert), a queued task, keys, a token
        cluster.rpc("node.register", {"name": NODE, "hostname": "h1", "ip_address": "127.0.0.1"})
        w.alert = wait_for(lambda: next((a for a in cluster.rpc("alert.list")
                                         if a["node_name"] == NODE), None), 20,
                           what=f"{NODE} offline, an alert open")
        w.task = cluster.rpc("task.submit", {"task_type": "shell",
                                             "payload": {"command": "echo queued"}})["id"]
        w.spare_token = cluster.cli_json("tokens", "create", "--role", "admin")
        cluster.rpc("schedule.add", {"name": "nightly-web", "cron": "0 3 * * *",
                                     "task_type": "shell", "payload": {"command": "backup"}})
        for name, approved in (("wk-pending", False), ("wk-auth", True)):
            public, _ = zmq.curve_keypair()
            answer = requests.post(base + "/api/bus/join", timeout=10,
                                   auth=ADMIN if approved else None,
                                   json={"name": name, "public_key": public.decode()})
            assert answer.json()["status"] == ("authorized" if approved else "pending")
        yield w
    finally:
        cluster.stop_all()


def bodies(w: Web) -> dict:
    """A valid request for every state-changing route (so that what answers is the role
    check, not the input check): (method, rule) → (path, JSON body or None)."""
    cmd = {"task_type": "shell", "payload": {"command": "echo by-a-viewer"}}
    return {
        ("POST", "/api/nodes"): ("/api/nodes", {"name": "wv-new", "hostname": "evil"}),
        ("POST", "/api/nodes/alerts/<int:alert_id>/ack"):
            (f"/api/nodes/alerts/{w.alert['id']}/ack", None),
        ("DELETE", "/api/nodes/<nodekey:key>"): (f"/api/nodes/{NODE}", None),
        ("POST", "/api/nodes/<nodekey:key>/drain"): (f"/api/nodes/{NODE}/drain", None),
        ("POST", "/api/nodes/<nodekey:key>/undrain"): (f"/api/nodes/{NODE}/undrain", None),
        ("POST", "/api/tasks"): ("/api/tasks", cmd),
        ("POST", "/api/tasks/assign-optimal"):
            ("/api/tasks/assign-optimal", {**cmd, "requirements": []}),
        ("POST", "/api/tasks/<int:task_id>/cancel"): (f"/api/tasks/{w.task}/cancel", None),
        ("POST", "/api/tasks/<int:task_id>/retry"): (f"/api/tasks/{w.task}/retry", None),
        ("POST", "/api/tasks/retry"): ("/api/tasks/retry", {"since": 86400}),
        ("PUT", "/api/queues/<name>"): ("/api/queues/reports", {"concurrency": 1}),
        ("POST", "/api/schedules"): ("/api/schedules", {**cmd, "name": "by-a-viewer",
                                                        "every": 1}),
        ("DELETE", "/api/schedules/<name>"): ("/api/schedules/nightly-web", None),
        ("POST", "/api/schedules/<name>/pause"): ("/api/schedules/nightly-web/pause", None),
        ("POST", "/api/schedules/<name>/resume"): ("/api/schedules/nightly-web/resume", None),
        ("POST", "/api/schedules/<name>/run"): ("/api/schedules/nightly-web/run", None),
        ("POST", "/api/ssh/pool/cleanup"): ("/api/ssh/pool/cleanup", None),
        ("POST", "/api/ssh/execute"): ("/api/ssh/execute", {"node_id": NODE, "command": "id"}),
        ("POST", "/api/ssh/broadcast"): ("/api/ssh/broadcast", {"command": "id"}),
        ("POST", "/api/ssh/trust"): ("/api/ssh/trust", {"node_id": NODE}),
        ("POST", "/api/keys/<name>/accept"): ("/api/keys/wk-pending/accept", None),
        ("DELETE", "/api/keys/<name>"): ("/api/keys/wk-auth", None),
        ("POST", "/api/keys/token"): ("/api/keys/token", {"uses": 3}),
        ("POST", "/api/keys/<name>/role"): ("/api/keys/wk-auth/role", {"role": "admin"}),
        ("POST", "/api/users"): ("/api/users", {"name": "wv-evil", "role": "admin",
                                                "password": "evil-password-1"}),
        ("PATCH", "/api/users/<name>"): (f"/api/users/{VIEWER[0]}", {"role": "admin"}),
        ("DELETE", "/api/users/<name>"): (f"/api/users/{OPERATOR[0]}", None),
        ("POST", "/api/tokens"): ("/api/tokens", {"role": "admin", "name": "mine-now"}),
        ("DELETE", "/api/tokens/<int:token_id>"): (f"/api/tokens/{w.spare_token['id']}", None),
        ("PUT", "/api/nodes/<nodekey:key>/thresholds"):
            (f"/api/nodes/{NODE}/thresholds", {"disk": {"warning": 99, "critical": 100}}),
        ("POST", "/api/alert-rules"): ("/api/alert-rules", {"name": "by-a-viewer",
                                                            "expr": "disk_percent > 1"}),
        ("DELETE", "/api/alert-rules/<name>"): ("/api/alert-rules/any-rule", None),
        ("POST", "/api/backup"): ("/api/backup", None),
        ("PUT", "/api/backup/schedule"): ("/api/backup/schedule", {"every": 86400}),
        ("POST", "/api/notify/channels"): ("/api/notify/channels", {
            "name": "by-a-viewer", "kind": "webhook", "url": "http://127.0.0.1:9/"}),
        ("DELETE", "/api/notify/channels/<name>"): ("/api/notify/channels/any-channel", None),
        ("POST", "/api/notify/channels/<name>/test"):
            ("/api/notify/channels/any-channel/test", None),
        ("POST", "/api/notify/rules"): ("/api/notify/rules", {"name": "by-a-viewer",
                                                              "channels": ["any-channel"]}),
        ("DELETE", "/api/notify/rules/<name>"): ("/api/notify/rules/any-rule", None),
        ("POST", "/api/silences"): ("/api/silences", {"node": "*", "comment": "by-a-viewer"}),
        ("DELETE", "/api/silences/<int:silence_id>"): ("/api/silences/1", None),
        ("POST", "/api/nodes/<nodekey:key>/maintenance"):
            (f"/api/nodes/{NODE}/maintenance", {"on": True}),
        # Dash's callback route: a viewer pressing "drain" (answered 200, with the broker's
        # refusal shown; checked in its own test below)
        ("POST", "/_dash-update-component"): ("/_dash-update-component", dash_drain(NODE)),
    }


ADMIN_ROUTES = {("DELETE", "/api/nodes/<nodekey:key>"), ("POST", "/api/ssh/pool/cleanup"),
                ("POST", "/api/ssh/execute"), ("POST", "/api/ssh/broadcast"),
                ("POST", "/api/ssh/trust"), ("POST", "/api/keys/<name>/accept"),
                ("DELETE", "/api/keys/<name>"), ("POST", "/api/keys/token"),
                ("POST", "/api/keys/<name>/role"), ("POST", "/api/users"),
                ("PATCH", "/api/users/<name>"), ("DELETE", "/api/users/<name>"),
                ("POST", "/api/tokens"), ("DELETE", "/api/tokens/<int:token_id>"),
                ("PUT", "/api/nodes/<nodekey:key>/thresholds"), ("POST", "/api/alert-rules"),
                ("DELETE", "/api/alert-rules/<name>"), ("POST", "/api/backup"),
                ("PUT", "/api/backup/schedule"),
                ("POST", "/api/notify/channels"), ("DELETE", "/api/notify/channels/<name>"),
                ("POST", "/api/notify/channels/<name>/test"), ("POST", "/api/notify/rules"),
                ("DELETE", "/api/notify/rules/<name>")}


def dash_drain(node: str, action: str = "drain") -> dict:
    clicks = {"drain": "nodes-drain", "undrain": "nodes-undrain", "remove": "nodes-remove"}
    return {"output": "nodes-msg.children",
            "outputs": {"id": "nodes-msg", "property": "children"},
            "inputs": [{"id": cid, "property": "n_clicks", "value": 1 if a == action else None}
                       for a, cid in clicks.items()],
            "state": [{"id": "nodes-table", "property": "selected_row_ids", "value": [node]}],
            "changedPropIds": [f"{clicks[action]}.n_clicks"]}


def assert_forbidden(answer: requests.Response, what) -> None:
    assert answer.status_code == 403, (what, answer.status_code, answer.text[:300])
    body = answer.json()
    assert set(body) == {"error"} and body["error"]["code"] == "forbidden", (what, body)


def test_every_state_changing_route_is_classified(web):
    """A new write route must get a request here (and a place in the role sweep)."""
    assert set(bodies(web)) == set(WRITE_ROUTES), set(bodies(web)) ^ set(WRITE_ROUTES)
    assert ADMIN_ROUTES < set(WRITE_ROUTES)
    assert len(WRITE_ROUTES) >= 22
    assert OPEN_BY_DESIGN <= set(ROUTES)


# --- a viewer --------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["password", "token"])
def test_a_viewer_gets_403_on_every_write_route_and_nothing_changes(web, how):
    login = {"auth": VIEWER} if how == "password" else {"token": web.viewer_token["token"]}
    who = f"web:{VIEWER[0]}" if how == "password" else "web:token:ro-script"
    before = web.snapshot()
    audit_from = web.rows("SELECT COALESCE(MAX(id), 0) AS n FROM audit")[0]["n"]
    table = bodies(web)
    for method, rule in WRITE_ROUTES:
        if rule == "/_dash-update-component":
            continue
        path, body = table[(method, rule)]
        assert_forbidden(web.request(method, path, body=body, **login), (how, method, rule))
    assert web.snapshot() == before
    assert not web.rows("SELECT id FROM tasks WHERE payload LIKE '%by-a-viewer%'")
    # each refusal is on disk in the audit, as that web user
    refused = web.rows("SELECT * FROM audit WHERE id > ? ORDER BY id", (audit_from,))
    assert len(refused) == len(WRITE_ROUTES) - 1, [r["method"] for r in refused]
    assert all(r["who"] == who and r["role"] == "viewer" and r["outcome"] == "forbidden"
               and r["via"] == "local" and r["addr"] == "127.0.0.1" for r in refused), refused
    assert not any("evil-password-1" in (r["params"] or "") for r in refused)


def test_a_viewer_pressing_drain_in_the_dashboard_changes_nothing(web):
    before = web.snapshot()
    audit_from = web.rows("SELECT COALESCE(MAX(id), 0) AS n FROM audit")[0]["n"]
    for action in ("drain", "remove"):
        answer = web.request("POST", "/_dash-update-component", auth=VIEWER,
                             body=dash_drain(NODE, action))
        assert answer.status_code == 200, answer.text[:300]
        assert "needs the role" in answer.text, answer.text[:300]   # the broker's refusal shown
    assert web.snapshot() == before
    assert web.cluster.node(NODE)["drained"] is False
    refused = web.rows("SELECT who, method, outcome FROM audit WHERE id > ? ORDER BY id",
                       (audit_from,))
    assert refused == [{"who": f"web:{VIEWER[0]}", "method": m, "outcome": "forbidden"}
                       for m in ("node.drain", "node.remove")], refused
    # the same click by an operator drains (and undrains) it: the callback itself works
    assert "drained" in web.request("POST", "/_dash-update-component", auth=OPERATOR,
                                    body=dash_drain(NODE)).text
    assert web.cluster.node(NODE)["drained"] is True
    web.request("POST", "/_dash-update-component", auth=OPERATOR,
                body=dash_drain(NODE, "undrain"))
    assert web.cluster.node(NODE)["drained"] is False


def test_a_viewer_can_read(web):
    for path in ("/api/nodes", "/api/tasks", f"/api/tasks/{web.task}", "/api/nodes/health",
                 "/api/nodes/alerts", "/api/workers", "/api/cluster/stats", "/api/me", "/",
                 "/api/schedules", "/api/schedules/nightly-web"):
        assert web.request("GET", path, auth=VIEWER).status_code == 200, path
    for path in ("/api/users", "/api/tokens", "/api/keys", "/api/audit", "/api/ssh/audit"):
        assert_forbidden(web.request("GET", path, auth=VIEWER), path)


def test_only_an_admin_login_approves_a_join(web):
    for login, status in ((VIEWER, "pending"), (OPERATOR, "pending"), (ADMIN, "authorized")):
        public, _ = zmq.curve_keypair()
        name = f"wj-{login[0]}"
        answer = web.request("POST", "/api/bus/join", auth=login,
                             body={"name": name, "public_key": public.decode()})
        assert answer.json()["status"] == status, (login[0], answer.text)
    keys = web.cluster.rpc("keys.list")
    assert {"wj-vera", "wj-otto"} <= set(keys["pending"]) and "wj-admin" in keys["authorized"]


# --- an operator --------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["password", "token"])
def test_an_operator_runs_tasks_but_not_admin_routes(web, how):
    login = {"auth": OPERATOR} if how == "password" else {"token": web.operator_token["token"]}
    created = web.request("POST", "/api/tasks", body={"task_type": "shell",
                                                       "payload": {"command": f"echo op-{how}"}},
                          **login)
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    assert web.rows("SELECT status FROM tasks WHERE id = ?", (task_id,)) == [{"status": "queued"}]
    cancelled = web.request("POST", f"/api/tasks/{task_id}/cancel", **login)
    assert cancelled.status_code == 200, cancelled.text
    assert web.request("POST", f"/api/nodes/{NODE}/drain", **login).status_code == 200
    assert web.request("POST", f"/api/nodes/{NODE}/undrain", **login).status_code == 200
    # an operator manages schedules (and puts them back as they were)
    name = f"op-{how}"
    made = web.request("POST", "/api/schedules", body={"name": name, "every": "1h",
                                                       "task_type": "shell",
                                                       "payload": {"command": "true"}}, **login)
    assert made.status_code == 201 and made.json()["created_by"] == (
        f"web:{OPERATOR[0]}" if how == "password" else
        f"web:token:{web.operator_token['id']}"), made.text
    assert web.request("POST", f"/api/schedules/{name}/pause", **login).json()["paused"]
    assert web.request("DELETE", f"/api/schedules/{name}", **login).status_code == 200
    before = web.snapshot()
    table = bodies(web)
    for route in sorted(ADMIN_ROUTES):
        path, body = table[route]
        assert_forbidden(web.request(route[0], path, body=body, **login), (how, route))
    assert web.snapshot() == before
    for path in ("/api/users", "/api/tokens", "/api/keys", "/api/audit"):
        assert_forbidden(web.request("GET", path, **login), path)
    who = f"web:{OPERATOR[0]}" if how == "password" else f"web:token:{web.operator_token['id']}"
    audit = web.rows("SELECT method, outcome FROM audit WHERE who = ? ORDER BY id", (who,))
    assert {"method": "task.submit", "outcome": "ok"} in audit
    assert sum(r["outcome"] == "forbidden" for r in audit) >= len(ADMIN_ROUTES)


def test_a_role_change_or_removal_counts_at_once(web):
    temp = ("tilly", "temporary-pass-1")
    web.cluster.cli("users", "add", temp[0], "--role", "operator", "--password", temp[1])
    body = {"task_type": "shell", "payload": {"command": "echo tilly"}}
    assert web.request("POST", "/api/tasks", auth=temp, body=body).status_code == 201
    web.cluster.cli("users", "passwd", temp[0], "--role", "viewer")
    assert_forbidden(web.request("POST", "/api/tasks", auth=temp, body=body), "demoted")
    assert web.request("GET", "/api/me", auth=temp).json()["role"] == "viewer"
    web.cluster.cli("users", "remove", temp[0])
    assert web.request("GET", "/api/me", auth=temp).status_code == 401


def test_api_me_shows_who_and_the_role(web):
    seen = {
        "admin": web.request("GET", "/api/me", auth=ADMIN).json(),
        "viewer": web.request("GET", "/api/me", auth=VIEWER).json(),
        "operator": web.request("GET", "/api/me", auth=OPERATOR).json(),
        "viewer-token": web.request("GET", "/api/me", token=web.viewer_token["token"]).json(),
        "operator-token": web.request("GET", "/api/me", token=web.operator_token["token"]).json(),
    }
    assert seen["admin"] == {"user": "admin", "role": "admin", "how": "password"}
    assert seen["viewer"] == {"user": VIEWER[0], "role": "viewer", "how": "password"}
    assert seen["operator"] == {"user": OPERATOR[0], "role": "operator", "how": "password"}
    assert seen["viewer-token"] == {"user": "token:ro-script", "role": "viewer", "how": "token"}
    assert seen["operator-token"] == {"user": f"token:{web.operator_token['id']}",
                                      "role": "operator", "how": "token"}


# --- tokens that must not work: 401 on every route ----------------------------------------------
def call(base: str, method: str, path: str, authorization, body: bytes | None = None):
    """One request with any header bytes, from a loopback address no request has used (a
    failed login counts per address; ten lock it out)."""
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30,
                                      source_address=(next(_sources), 0))
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        if authorization is not None:
            conn.putheader("Authorization", authorization)
        if body is not None or method in STATE_CHANGING:
            body = body or b""
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def concrete(rule: str) -> str:
    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>",
                  lambda m: "1" if m.group(1) in ("int", "float") else "x", rule)


def assert_401_everywhere(web: Web, authorization, what: str) -> None:
    for method, rule in ROUTES:
        status, body = call(web.base, method, concrete(rule), authorization)
        if rule in PUBLIC:
            assert status != 500 and b"Traceback" not in body, (what, method, rule, status)
            continue
        assert status == 401, (what, method, rule, status, body[:200])
        assert json.loads(body)["error"]["code"] == "unauthorized", (what, method, rule)


def test_a_revoked_token_is_401_on_every_route(web):
    made = web.cluster.cli_json("tokens", "create", "--role", "admin", "--name", "soon-revoked")
    assert web.request("GET", "/api/users", token=made["token"]).status_code == 200
    web.cluster.cli("tokens", "revoke", str(made["id"]))
    assert web.rows("SELECT revoked_at FROM tokens WHERE id = ?", (made["id"],))[0]["revoked_at"]
    before = web.snapshot()
    assert_401_everywhere(web, f"Bearer {made['token']}", "revoked token")
    assert web.snapshot() == before


def test_an_expired_token_is_401(web):
    made = web.cluster.cli_json("tokens", "create", "--role", "operator", "--ttl", "1s")
    wait_for(lambda: time.time() > made["expires_at"] + 0.05, 5, what="the token to expire")
    for method, path in (("GET", "/api/me"), ("GET", "/api/nodes"), ("POST", "/api/tasks"),
                         ("GET", "/")):
        status, _ = call(web.base, method, path, f"Bearer {made['token']}")
        assert status == 401, (method, path, status)


def test_a_join_token_is_not_a_login(web):
    join_token = web.cluster.cli_json("keys", "token", "--uses", "5")["token"]
    assert_401_everywhere(web, f"Bearer {join_token}", "join token as Bearer")


@pytest.mark.parametrize("name,header", [
    ("unknown", "Bearer arch_" + "A" * 43),
    ("bearer-alone", "Bearer"),
    ("bearer-space", "Bearer "),
    ("two-words", "Bearer arch_abc def"),
    ("huge", "Bearer " + "a" * 10_000),
    ("non-ascii", "Bearer arch_\u00e9\u00e8".encode("latin-1")),
    ("bytes", b"Bearer \xff\xfe\xfd"),
    ("nul", "Bearer arch_\x00abc"),
    ("other-scheme", "Token arch_abc"),
    ("basic-and-bearer", "Basic Zm9vOmJhcg==, Bearer arch_abc"),
    ("empty", ""),
])
def test_wrong_or_malformed_bearer_is_401_never_500(web, name, header):
    for method, path in (("GET", "/api/me"), ("GET", "/api/nodes"), ("POST", "/api/tasks"),
                         ("DELETE", f"/api/nodes/{NODE}"), ("GET", "/")):
        try:
            status, body = call(web.base, method, path, header)
        except ValueError:   # http.client refuses to send it at all (e.g. a NUL): nothing to test
            pytest.skip("http.client will not send this header")
        assert status == 401, (name, method, path, status, body[:200])
        assert b"Traceback" not in body


def test_a_valid_token_with_a_lower_case_scheme_works(web):
    status, body = call(web.base, "GET", "/api/me", f"bearer {web.viewer_token['token']}")
    assert status == 200 and json.loads(body)["role"] == "viewer"


# --- secrets at rest ---------------------------------------------------------------------------------
def test_passwords_are_argon2id_hashes_and_never_stored_or_audited(web):
    users = {r["name"]: r for r in web.rows("SELECT * FROM users")}
    assert {VIEWER[0], OPERATOR[0]} <= set(users)
    for name, password in (VIEWER, OPERATOR):
        stored = users[name]["password_hash"]
        assert stored.startswith("$argon2id$"), stored
        assert password not in stored
    assert users[OPERATOR[0]]["created_by"] == "web:admin"
    adds = web.rows("SELECT * FROM audit WHERE method = 'users.add' ORDER BY id")
    assert {json.loads(r["params"])["name"] for r in adds} >= {VIEWER[0], OPERATOR[0]}
    assert all(json.loads(r["params"])["password"] == "[redacted]" for r in adds), adds
    # not in any table, nor anywhere in the database files (WAL included)
    data = b"".join(p.read_bytes() for p in web.db_path.parent.glob("architect.db*"))
    for _, password in (VIEWER, OPERATOR, ("", "evil-password-1")):
        assert password.encode() not in data, password
    # API tokens: only their digests
    assert web.viewer_token["token"].encode() not in data
    listed = web.request("GET", "/api/tokens", auth=ADMIN).json()["tokens"]
    assert listed and not any("token_hash" in t or "token" in t for t in listed)
    users_api = web.request("GET", "/api/users", auth=ADMIN).json()["users"]
    assert users_api and not any("password_hash" in u for u in users_api)


# --- Dash's callback route with a bad body ------------------------------------------------------
@pytest.mark.parametrize("body", [{}, [], {"output": "x"}, "null"])
def test_a_malformed_dash_callback_is_4xx_not_500(web, body):
    answer = web.request("POST", "/_dash-update-component", auth=ADMIN,
                         data=json.dumps(body) if isinstance(body, str) else None,
                         body=None if isinstance(body, str) else body,
                         headers={"Content-Type": "application/json"})
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:200])


@pytest.mark.parametrize("how", ["password", "token", "no login", "foreign site",
                                 "foreign host"])
def test_an_array_of_tasks_is_refused_like_one_task(web, how):
    """POST /api/tasks with a JSON array goes through the same checks as one task: a
    viewer, no login, a foreign Origin or a foreign Host changes nothing."""
    body = [{"task_type": "shell", "payload": {"command": "echo by-a-viewer"}}] * 3
    login = {"password": {"auth": VIEWER}, "token": {"token": web.viewer_token["token"]},
             "no login": {},
             "foreign site": {"auth": OPERATOR, "headers": {"Origin": "http://evil.example"}},
             "foreign host": {"auth": OPERATOR, "headers": {"Host": "evil.example"}}}[how]
    before = web.snapshot()
    answer = web.request("POST", "/api/tasks", body=body, **login)
    expected = {"password": 403, "token": 403, "no login": 401, "foreign site": 403,
                "foreign host": 400}[how]
    assert answer.status_code == expected, (how, answer.status_code, answer.text[:300])
    if how in ("password", "token"):
        assert_forbidden(answer, how)
    assert web.snapshot() == before
    assert not web.rows("SELECT id FROM tasks WHERE payload LIKE '%by-a-viewer%'")


@pytest.mark.parametrize("how", ["no login", "foreign site", "foreign host"])
def test_every_write_route_refuses_no_login_a_foreign_site_or_host_and_nothing_changes(web, how):
    """Every state-changing route (schedules, retry, queues included): a request with no
    login, from a foreign Origin, or to a foreign Host (DNS rebinding) is refused, and the
    database is as it was."""
    login = {"no login": {},
             "foreign site": {"auth": ADMIN, "headers": {"Origin": "http://evil.example"}},
             "foreign host": {"auth": ADMIN, "headers": {"Host": "evil.example"}}}[how]
    expected = {"no login": 401, "foreign site": 403, "foreign host": 400}[how]
    before = web.snapshot()
    table = bodies(web)
    for method, rule in WRITE_ROUTES:
        path, body = table[(method, rule)]
        answer = web.request(method, path, body=body, **login)
        assert answer.status_code == expected, (how, method, rule, answer.status_code,
                                                answer.text[:200])
    assert web.snapshot() == before
    assert not web.rows("SELECT id FROM tasks WHERE payload LIKE '%by-a-viewer%'")
