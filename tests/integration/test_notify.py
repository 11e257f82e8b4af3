"""Tier 3: notifications on real processes (issue 14). A node agent killed with SIGKILL goes
offline after its heartbeat timeout and its alert reaches a test HTTP receiver (exactly one
Alertmanager-shaped POST), a local SMTP server (aiosmtpd: one email) and an apprise json://
URL; a silence on another node stops all of them; a dead receiver (a closed port, and one
that accepts and never answers) is retried with backoff and every failed attempt recorded
with its reason, while the broker keeps answering pings; a viewer is refused every write
route and nothing changes. Configuration goes through REST, the CLI and the control bus."""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.helpers import Cluster, free_port_block, wait_for

pytestmark = pytest.mark.slow
ADMIN = ("admin", "admin-pass-1")
VIEWER = ("vic", "viewer-pass-1")
OPERATOR = ("olga", "operator-pass-1")
TOKEN = "tok-S3CRET-42"


class Receiver:
    """A tiny HTTP server on 127.0.0.1 keeping every POST (path, JSON body)."""

    def __init__(self):
        self.posts: list[tuple[str, dict]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.posts.append((self.path, json.loads(body or b"{}")))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path_prefix: str, node: str | None = None) -> list[dict]:
        return [b for p, b in self.posts if p.startswith(path_prefix) and (
            node is None or node in json.dumps(b))]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    def __init__(self):
        from aiosmtpd.controller import Controller
        self.messages: list = []
        owner = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                owner.messages.append(envelope.content.decode("utf-8", "replace"))
                return "250 OK"

        self.port = free_port_block(1)
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def about(self, node: str) -> list[str]:
        return [m for m in self.messages if node in m]

    def close(self):
        self.controller.stop()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("notify")
    c = Cluster(tmp, interval=0.3, timeout=2.0, extra_env={
        "ARCHITECT_USER": ADMIN[0], "ARCHITECT_PASSWORD": ADMIN[1],
        "ARCHITECT_NOTIFY_BACKOFF": "0.2", "ARCHITECT_NOTIFY_TIMEOUT": "1.0",
        "ARCHITECT_NOTIFY_ATTEMPTS": "5"})
    hook, mail = Receiver(), Mailbox()
    hang = socket.socket()          # accepts (the kernel's backlog) and never answers
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    try:
        port = free_port_block(1)
        c.web = f"http://127.0.0.1:{port}"
        c.spawn("server", "server", "--host", "127.0.0.1", "--port", str(port))
        c.wait_http(c.web + "/healthz", c.procs["server"], "server")
        for user, role in ((VIEWER, "viewer"), (OPERATOR, "operator")):
            r = requests.post(f"{c.web}/api/users", auth=ADMIN, timeout=10,
                              json={"name": user[0], "role": role, "password": user[1]})
            assert r.status_code == 201, r.text
        c.hook, c.mail, c.hang_port = hook, mail, hang.getsockname()[1]
        yield c
    finally:
        c.stop_all()
        hook.close()
        mail.close()
        hang.close()


def rest(c, method, path, login=ADMIN, **kw):
    return requests.request(method, c.web + path, auth=login, timeout=10, **kw)


def deliveries(c, **params) -> list[dict]:
    return rest(c, "GET", "/api/notify/deliveries", params=params).json()["deliveries"]


def test_a_killed_agent_notifies_once_by_webhook_email_and_apprise_and_a_silence_stops_it(env):
    c = env
    for body in ({"name": "hook", "kind": "webhook",
                  "url": f"http://127.0.0.1:{c.hook.port}/alertmanager?token={TOKEN}"},
                 {"name": "mail", "kind": "email", "host": "127.0.0.1", "port": c.mail.port,
                  "from": "architect@example.org", "to": ["oncall@example.org"]},
                 {"name": "chat", "kind": "apprise", "url": f"json://127.0.0.1:{c.hook.port}/apprise"}):
        r = rest(c, "POST", "/api/notify/channels", json=body)
        assert r.status_code == 201, r.text
    r = rest(c, "POST", "/api/notify/rules", json={"name": "oncall", "min_level": "critical",
                                                   "channels": ["hook", "mail", "chat"],
                                                   "node": "n-*"})
    assert r.status_code == 201, r.text
    c.cli("silence", "add", "--node", "n-quiet", "--for", "10m", "-m", "known flaky")

    c.start_agent("n-kill")
    c.start_agent("n-quiet")
    wait_for(lambda: all((n := c.node(x)) and n["status"] == "healthy"
                         for x in ("n-kill", "n-quiet")), 15, what="both nodes healthy")
    c.kill("agent-n-kill")
    c.kill("agent-n-quiet")
    wait_for(lambda: c.hook.bodies("/alertmanager") and c.mail.about("n-kill")
             and c.hook.bodies("/apprise", "n-kill"), 15, what="the offline alert delivered")
    wait_for(lambda: len(deliveries(c, outcome="silenced")) == 3, 10,
             what="n-quiet's alert silenced on all three channels")
    time.sleep(1.0)                    # nothing more arrives (no repeat interval)

    (body,) = c.hook.bodies("/alertmanager")
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "hook"
    assert set(body) >= {"groupKey", "groupLabels", "commonLabels", "commonAnnotations",
                         "externalURL", "alerts"}
    (a,) = body["alerts"]
    assert a["status"] == "firing" and a["endsAt"] == "0001-01-01T00:00:00Z"
    assert a["labels"]["alertname"] == "NodeOffline" and a["labels"]["node"] == "n-kill"
    assert a["labels"]["level"] == "offline" and a["annotations"]["summary"]
    assert set(a) >= {"startsAt", "generatorURL", "fingerprint", "annotations"}
    (email,) = c.mail.messages
    assert "Subject: [FIRING] NodeOffline n-kill (offline)" in email and "n-quiet" not in email
    assert len(c.hook.bodies("/apprise")) == 1
    assert not c.hook.bodies("/", "n-quiet")                  # the silence held everywhere
    sent = deliveries(c, outcome="sent")
    assert sorted(r["channel"] for r in sent) == ["chat", "hook", "mail"]
    assert {(r["node"], r["event"], r["attempt"]) for r in sent} == {("n-kill", "firing", 1)}
    silenced = deliveries(c, outcome="silenced")
    assert {r["node"] for r in silenced} == {"n-quiet"} and "known flaky" in silenced[0]["error"]

    # the CLI lists them; maintenance is one command each way
    listed = c.cli_json("notify", "deliveries")
    assert len(listed) == 6
    assert [s["node"] for s in c.cli_json("silence", "list")] == ["n-quiet"]
    out = c.cli("maintenance", "n-kill", "on", "-m", "replace the PSU").stdout
    assert "in maintenance" in out and c.node("n-kill")["drained"]
    kinds = {s["kind"]: s for s in c.cli_json("silence", "list")}
    assert kinds["maintenance"]["node"] == "n-kill" and kinds["maintenance"]["ends_at"] is None
    c.cli("nodes", "maintenance", "n-kill", "off")
    assert not c.node("n-kill")["drained"]
    assert [s["node"] for s in c.cli_json("silence", "list")] == ["n-quiet"]


def test_dead_receivers_are_retried_and_recorded_while_the_broker_answers(env):
    c = env
    closed = free_port_block(1)
    for name, url in (("dead-closed", f"http://127.0.0.1:{closed}/x"),
                      ("dead-hang", f"http://127.0.0.1:{c.hang_port}/x")):
        c.rpc("notify.channel.add", {"name": name, "kind": "webhook", "url": url})
    tests = {name: c.rpc("notify.channel.test", {"name": name})["delivery"]
             for name in ("dead-closed", "dead-hang")}
    rtts, deadline = [], time.monotonic() + 30
    while time.monotonic() < deadline:           # pings all along the retries
        t = time.perf_counter()
        assert c.rpc("ping", timeout=3.0)["pong"] is True
        rtts.append(time.perf_counter() - t)
        if all(len(c.rpc("notify.deliveries", {"delivery": d})) == 5 for d in tests.values()):
            break
        time.sleep(0.02)
    rows = {name: c.rpc("notify.deliveries", {"delivery": d}) for name, d in tests.items()}
    for name, attempts in rows.items():
        attempts = sorted(attempts, key=lambda r: r["attempt"])
        assert [r["attempt"] for r in attempts] == [1, 2, 3, 4, 5], (name, attempts)
        assert {r["outcome"] for r in attempts} == {"failed"}
        assert all(r["retry_at"] for r in attempts[:4]) and attempts[4]["retry_at"] is None
        gaps = [b["at"] - a["at"] for a, b in zip(attempts, attempts[1:])]
        assert all(g >= 0.19 for g in gaps), gaps                 # backoff between attempts
    assert all("refused" in r["error"].lower() for r in rows["dead-closed"]), rows["dead-closed"]
    assert all("timed out" in r["error"] for r in rows["dead-hang"]), rows["dead-hang"]
    rtts.sort()
    p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
    print(f"\nbroker ping during retries: n={len(rtts)} p50={statistics.median(rtts) * 1000:.1f} ms"
          f" p99={p99 * 1000:.1f} ms max={rtts[-1] * 1000:.1f} ms")
    assert len(rtts) >= 20
    status = c.rpc("notify.status")
    assert status["retrying"] == 0 and status["in_flight"] == 0


def test_a_viewer_is_refused_every_write_and_sees_no_secret(env):
    c = env
    before = {p: rest(c, "GET", p).json() for p in ("/api/notify/channels", "/api/notify/rules",
                                                    "/api/silences")}
    writes = [("POST", "/api/notify/channels", {"name": "evil", "kind": "webhook",
                                                "url": "http://127.0.0.1:9/"}),
              ("DELETE", "/api/notify/channels/hook", None),
              ("POST", "/api/notify/channels/hook/test", None),
              ("POST", "/api/notify/rules", {"name": "evil", "channels": ["hook"]}),
              ("DELETE", "/api/notify/rules/oncall", None),
              ("POST", "/api/silences", {"node": "*", "comment": "mute it all"}),
              ("DELETE", "/api/silences/1", None),
              ("POST", "/api/nodes/n-kill/maintenance", {"on": True})]
    for method, path, body in writes:
        r = rest(c, method, path, VIEWER, json=body if body is not None else {})
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "forbidden"
    for method, path, body in writes[:5]:          # channels and rules: admins only
        r = rest(c, method, path, OPERATOR, json=body if body is not None else {})
        assert r.status_code == 403, (method, path, r.status_code, r.text)
    after = {p: rest(c, "GET", p).json() for p in before}
    assert after == before
    seen = rest(c, "GET", "/api/notify/channels", VIEWER).json()["channels"]
    assert TOKEN not in json.dumps(seen) and all(ch["redacted"] for ch in seen)
    assert TOKEN in json.dumps(rest(c, "GET", "/api/notify/channels").json())
    audit = rest(c, "GET", "/api/audit", params={"limit": 10000}).json()["audit"]
    assert any(a["method"] == "notify.channel.add" for a in audit)
    assert TOKEN not in json.dumps(audit)
    # an operator silences and ends a silence; bad input is a 400 naming the field
    r = rest(c, "POST", "/api/silences", OPERATOR, json={"match": {"alertname": "Node*"},
                                                         "duration": "5m", "comment": "drill"})
    assert r.status_code == 201 and r.json()["created_by"] == "web:olga"
    assert rest(c, "DELETE", f"/api/silences/{r.json()['id']}", OPERATOR).status_code == 200
    r = rest(c, "POST", "/api/silences", OPERATOR, json={"node": "x", "comment": "c",
                                                         "duration": "forever"})
    assert r.status_code == 400 and "duration" in r.json()["error"]["message"]
